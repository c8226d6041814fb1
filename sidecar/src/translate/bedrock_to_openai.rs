//! Bedrock Converse answers (whole, streamed in [`stream`], errors) → OpenAI's format, as pure
//! functions, for the `bedrock` provider. The decisions a client may notice are listed in
//! [`super::openai_to_bedrock`]; on the way back:
//! - stop reasons: `end_turn`/`stop_sequence` → `stop`, `tool_use` → `tool_calls`, `max_tokens` →
//!   `length`, `guardrail_intervened`/`content_filtered` → `content_filter`;
//! - usage as Anthropic's: prompt tokens are the uncached, cache-read and cache-write ones together,
//!   the reads as `cached_tokens`, the writes as `cache_creation_tokens`;
//! - `reasoningContent` text becomes `reasoning_content`;
//! - errors keep their HTTP status; the exception's name (`ThrottlingException`) becomes the
//!   `code`, in snake case (`throttling_exception`).

pub mod stream;

use std::time::Duration;

use http::StatusCode;
use serde_json::Map;

use crate::{
    formats::{
        bedrock::{ConverseResponse, TokenUsage},
        openai::{self, ChatCompletion, CompletionUsage, PromptTokensDetails, ToolCall},
    },
    wire::{ProviderError, error_body},
};

/// A Converse answer as an OpenAI `chat.completion` with id `id`, made at `created` by `model`.
pub fn response(response: ConverseResponse, model: &str, created: u64, id: &str) -> ChatCompletion {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in response.output.message.map(|m| m.content).unwrap_or_default() {
        if let Some(t) = block.text {
            text.push_str(&t);
        } else if let Some(call) = block.tool_use {
            tool_calls.push(ToolCall {
                id: call.tool_use_id,
                kind: "function".into(),
                function: openai::FunctionCall {
                    name: call.name,
                    arguments: match call.input {
                        serde_json::Value::Null => "{}".to_owned(),
                        input => input.to_string(),
                    },
                },
                rest: Map::new(),
            });
        } else if let Some(r) = block.reasoning_content.and_then(|r| r.reasoning_text) {
            reasoning.push_str(&r.text);
        }
    }
    let finish = finish_reason(&response.stop_reason);
    ChatCompletion {
        id: id.to_owned(),
        object: "chat.completion".into(),
        created,
        model: model.to_owned(),
        choices: vec![super::answer_choice(0, text, reasoning, tool_calls, finish)],
        usage: Some(usage(&response.usage)),
        rest: Map::new(),
    }
}

/// OpenAI's `finish_reason` for a Converse `stopReason`.
pub fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "tool_use" => "tool_calls",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Converse usage as OpenAI's: the prompt counts every input token, cached or not.
pub fn usage(usage: &TokenUsage) -> CompletionUsage {
    let read = usage.cache_read_input_tokens;
    let write = usage.cache_write_input_tokens;
    let prompt = usage.input_tokens.saturating_add(read).saturating_add(write);
    CompletionUsage {
        prompt_tokens: prompt,
        completion_tokens: usage.output_tokens,
        total_tokens: prompt.saturating_add(usage.output_tokens),
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: read,
            cache_creation_tokens: (write > 0).then_some(write),
            rest: Map::new(),
        }),
        ..CompletionUsage::default()
    }
}

/// A Bedrock error (`kind` from `x-amzn-errortype` or a stream's `:exception-type`, such as
/// `ThrottlingException` or `throttlingException`) as the sidecar's, in OpenAI's shape. `status`
/// is the HTTP status when there was one; a stream's exception has its status from its kind.
pub fn error(status: Option<StatusCode>, kind: &str, message: &str, retry_after: Option<Duration>) -> ProviderError {
    let status = status.unwrap_or_else(|| status_of(kind));
    let code = snake_case(kind);
    ProviderError::Status {
        status,
        retry_after,
        body: error_body(
            message,
            openai::error_type_for(status),
            (!code.is_empty()).then_some(code.as_str()),
            None,
        ),
    }
}

/// The status Bedrock gives an exception, for one that arrives inside a stream.
fn status_of(kind: &str) -> StatusCode {
    match kind.to_ascii_lowercase().as_str() {
        "throttlingexception" => StatusCode::TOO_MANY_REQUESTS,
        "validationexception" => StatusCode::BAD_REQUEST,
        "accessdeniedexception" => StatusCode::FORBIDDEN,
        "resourcenotfoundexception" => StatusCode::NOT_FOUND,
        "modeltimeoutexception" => StatusCode::REQUEST_TIMEOUT,
        "serviceunavailableexception" | "modelnotreadyexception" => StatusCode::SERVICE_UNAVAILABLE,
        // internalServerException, modelStreamErrorException and whatever Bedrock adds.
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// `ThrottlingException` → `throttling_exception`; a header's `:http://…` suffix is dropped.
fn snake_case(kind: &str) -> String {
    let kind = kind.split(':').next().unwrap_or(kind);
    let mut out = String::with_capacity(kind.len() + 4);
    for (i, c) in kind.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_names_become_snake_case_codes() {
        assert_eq!(snake_case("ThrottlingException"), "throttling_exception");
        assert_eq!(snake_case("modelStreamErrorException"), "model_stream_error_exception");
        assert_eq!(
            snake_case("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            "validation_exception"
        );
    }

    #[test]
    fn stream_exceptions_get_the_status_bedrock_gives_them() {
        assert_eq!(status_of("throttlingException"), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            status_of("serviceUnavailableException"),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status_of("modelStreamErrorException"), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn usage_counts_cached_reads_and_writes_in_the_prompt() {
        let u = usage(&TokenUsage {
            input_tokens: 6,
            output_tokens: 5,
            total_tokens: 17,
            cache_read_input_tokens: 4,
            cache_write_input_tokens: 2,
        });
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (12, 5, 17));
        assert_eq!((u.cached(), u.cache_creation()), (4, 2));
    }
}
