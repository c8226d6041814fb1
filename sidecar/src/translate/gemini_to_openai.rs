//! Gemini's answers (whole, streamed in [`stream`], embeddings, errors) → OpenAI's format, as
//! pure functions, for the `gemini` provider. The decisions a client may notice are listed in
//! [`super::openai_to_gemini`].

pub mod stream;

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::formats::gemini::{Candidate, ContentEmbedding, ErrorObject, GenerateContentResponse, Part, UsageMetadata};
use crate::{
    formats::openai::{self, ChatCompletion, CompletionTokensDetails, CompletionUsage, ToolCall},
    wire::{ProviderError, error_body},
};

// ---------------------------------------------------------------------------------------------
// Answers

/// A Gemini answer as an OpenAI `chat.completion` made at `created`; `model` names the backend's
/// model when the answer does not, `fallback_id` identifies it when it carries no `responseId`.
pub fn response(
    response: GenerateContentResponse,
    model: &str,
    created: u64,
    fallback_id: &str,
) -> Result<ChatCompletion, ProviderError> {
    check_prompt(&response)?;
    if response.candidates.is_empty() {
        return Err(ProviderError::InvalidResponse(
            "the gemini answer has no candidates".into(),
        ));
    }
    let key = response.response_id.as_deref().unwrap_or(fallback_id);
    let mut calls_made = 0;
    let choices = response
        .candidates
        .into_iter()
        .map(|candidate| {
            let index = candidate.index;
            let finish = candidate.finish_reason.clone();
            let (text, reasoning, tool_calls) = candidate_parts(candidate, key, &mut calls_made);
            let finish = finish_reason(finish.as_deref(), !tool_calls.is_empty());
            super::answer_choice(index, text, reasoning, tool_calls, finish)
        })
        .collect();
    Ok(ChatCompletion {
        id: openai_id(key),
        object: "chat.completion".into(),
        created,
        model: response.model_version.unwrap_or_else(|| model.to_owned()),
        choices,
        usage: response.usage_metadata.as_ref().map(usage),
        rest: Map::new(),
    })
}

/// The OpenAI id of a Gemini answer.
pub fn openai_id(key: &str) -> String {
    format!("chatcmpl-{key}")
}

/// A candidate's answer text, reasoning text and tool calls; `calls_made` numbers the calls.
fn candidate_parts(candidate: Candidate, key: &str, calls_made: &mut u32) -> (String, String, Vec<ToolCall>) {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
        match self::part(part, key, calls_made) {
            Some(Translated::Text(t)) => text.push_str(&t),
            Some(Translated::Reasoning(t)) => reasoning.push_str(&t),
            Some(Translated::Call(call)) => calls.push(call),
            None => {}
        }
    }
    (text, reasoning, calls)
}

/// What one answer part becomes on the OpenAI side.
#[derive(Debug)]
pub enum Translated {
    /// Answer text.
    Text(String),
    /// Reasoning text.
    Reasoning(String),
    /// A tool call.
    Call(ToolCall),
}

/// One answer part on the OpenAI side; `None` for parts without a counterpart.
pub fn part(part: Part, key: &str, calls_made: &mut u32) -> Option<Translated> {
    if let Some(call) = part.function_call {
        let id = call.id.unwrap_or_else(|| format!("call_{key}_{calls_made}"));
        *calls_made += 1;
        let mut rest = Map::new();
        if let Some(signature) = part.thought_signature {
            rest.insert(
                "extra_content".into(),
                json!({"google": {"thought_signature": signature}}),
            );
        }
        let arguments = match call.args {
            Value::Null => "{}".to_owned(),
            args => args.to_string(),
        };
        return Some(Translated::Call(ToolCall {
            id,
            kind: "function".into(),
            function: openai::FunctionCall {
                name: call.name,
                arguments,
            },
            rest,
        }));
    }
    let text = part.text.filter(|t| !t.is_empty())?;
    Some(if part.thought == Some(true) {
        Translated::Reasoning(text)
    } else {
        Translated::Text(text)
    })
}

/// OpenAI's `finish_reason` for a Gemini finish reason.
pub fn finish_reason(reason: Option<&str>, made_calls: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION",
        ) => "content_filter",
        _ if made_calls => "tool_calls",
        _ => "stop",
    }
}

/// Gemini usage as OpenAI's: reasoning counts as completion, tool prompts as prompt, the cached
/// part as `cached_tokens`. Gemini reports no cache writes (its implicit caching bills none; an
/// explicit cache's storage is billed by the hour, outside any answer), so none are carried.
pub fn usage(usage: &UsageMetadata) -> CompletionUsage {
    let prompt = usage
        .prompt_token_count
        .saturating_add(usage.tool_use_prompt_token_count);
    let completion = usage.candidates_token_count.saturating_add(usage.thoughts_token_count);
    let mut out = CompletionUsage::new(prompt, completion, usage.cached_content_token_count);
    if usage.thoughts_token_count > 0 {
        out.completion_tokens_details = Some(CompletionTokensDetails {
            reasoning_tokens: usage.thoughts_token_count,
            rest: Map::new(),
        });
    }
    out
}

/// The error for an answer (whole, or one stream event) whose prompt Gemini blocked.
fn check_prompt(response: &GenerateContentResponse) -> Result<(), ProviderError> {
    match response
        .prompt_feedback
        .as_ref()
        .and_then(|f| f.block_reason.as_deref())
    {
        Some(reason) => Err(prompt_blocked(reason)),
        None => Ok(()),
    }
}

/// A prompt Gemini refused to answer: the client's to change, so a 400 and never retried.
fn prompt_blocked(reason: &str) -> ProviderError {
    let message = format!("the gemini backend blocked the prompt (blockReason {reason}); rephrase the prompt");
    ProviderError::Status {
        status: StatusCode::BAD_REQUEST,
        retry_after: None,
        body: error_body(&message, "invalid_request_error", Some("content_filter"), None),
    }
}

/// A Google error as the sidecar's: the status from its `code`, the body in OpenAI's shape
/// (Google's status name, lower-cased, as the `code`), a `RetryInfo` delay as `Retry-After`
/// unless the response gave one (`retry_after`).
pub fn error(error: &ErrorObject, retry_after: Option<Duration>) -> ProviderError {
    let status = StatusCode::from_u16(error.code)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let code = (!error.status.is_empty()).then(|| error.status.to_ascii_lowercase());
    ProviderError::Status {
        status,
        retry_after: retry_after.or_else(|| retry_delay(&error.details)),
        body: error_body(&error.message, openai::error_type_for(status), code.as_deref(), None),
    }
}

/// `retryDelay` of a `google.rpc.RetryInfo` detail (`"30s"`, `"1.5s"`).
fn retry_delay(details: &[Value]) -> Option<Duration> {
    details
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| d.get("retryDelay")?.as_str()?.strip_suffix('s')?.parse::<f64>().ok())
        // A delay no Duration holds ("1e300s") is no delay: `from_secs_f64` would panic on it.
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/// Gemini's vectors as OpenAI's embeddings `list`, floats or (`base64`) little-endian `f32` bytes.
pub fn embeddings_response(vectors: Vec<ContentEmbedding>, model: &str, base64: bool, prompt_tokens: u64) -> Bytes {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(&bytes))
            } else {
                json!(vector.values)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    Bytes::from(body.to_string())
}
