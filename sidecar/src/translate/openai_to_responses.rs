//! OpenAI's chat format → its Responses format, for the `/v1/responses` endpoint: the pipeline's
//! chat answer as a Response object ([`response`]) or, streamed, as the Responses events
//! ([`stream`]). The request's settings are echoed into the Response as OpenAI echoes them.
//!
//! Decisions a client may notice:
//! - Ids derive from the chat answer's id: `resp_<id>`, `msg_<id>`, `rs_<id>`, `fc_<id>_<n>`;
//!   a call's `call_id` is the chat tool call's id.
//! - Output order: reasoning (when the backend shows it), then the message, then the calls.
//! - `finish_reason: length` makes the Response `incomplete` for `max_output_tokens`,
//!   `content_filter` for `content_filter`.
//! - A call's extra members from the chat answer (`extra_content` with Gemini's thought
//!   signature) ride on its `function_call` item; clients that send items back return them.
//! - `store` is always `false` and `previous_response_id` `null`: nothing is kept.

pub mod stream;

use serde_json::Map;

use super::responses_to_openai::NAMESPACE_SEPARATOR;

use crate::formats::{
    openai::{ChatCompletion, CompletionUsage},
    responses::{
        FunctionCallItem, IncompleteDetails, InputTokensDetails, OutputItem, OutputMessage, OutputText,
        OutputTokensDetails, ReasoningItem, ReasoningText, ResponsesRequest, Status, TextConfig, TextFormat, Tool,
    },
    responses::{Response, ResponseUsage},
};

/// The part of a chat answer's id after its `chatcmpl-` prefix.
pub fn base_id(chat_id: &str) -> &str {
    chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id)
}

/// The Response in progress, with no output: what the stream opens with, and what an answer
/// fills in.
pub fn shell(request: &ResponsesRequest, chat_id: &str, model: &str, created_at: u64) -> Response {
    Response {
        id: format!("resp_{}", base_id(chat_id)),
        object: "response".into(),
        created_at,
        status: Status::InProgress,
        error: None,
        incomplete_details: None,
        instructions: request.instructions.clone(),
        max_output_tokens: request.max_output_tokens,
        model: model.to_owned(),
        output: Vec::new(),
        parallel_tool_calls: request.parallel_tool_calls.unwrap_or(true),
        previous_response_id: None,
        reasoning: request.reasoning.clone().unwrap_or_default(),
        store: false,
        temperature: request.temperature,
        text: request.text.clone().unwrap_or(TextConfig {
            format: Some(TextFormat::Text),
            rest: Map::new(),
        }),
        tool_choice: request.tool_choice.clone().unwrap_or_else(|| "auto".into()),
        tools: request.tools.clone(),
        top_p: request.top_p,
        truncation: "disabled".into(),
        usage: None,
        user: request.user.clone(),
        metadata: request.metadata.clone().unwrap_or_default(),
    }
}

/// A whole chat answer as the Response to `request`.
pub fn response(completion: ChatCompletion, request: &ResponsesRequest) -> Response {
    let mut out = shell(request, &completion.id, &completion.model, completion.created);
    let base = base_id(&completion.id).to_owned();
    let mut finish = None;
    // The Responses API answers one choice.
    if let Some(choice) = completion.choices.into_iter().find(|c| c.index == 0) {
        let message = choice.message;
        if let Some(reasoning) = message.reasoning_content.filter(|r| !r.is_empty()) {
            out.output.push(OutputItem::Reasoning(reasoning_item(&base, reasoning)));
        }
        let text = message.content.filter(|t| !t.is_empty());
        if text.is_some() || message.tool_calls.is_empty() {
            out.output.push(OutputItem::Message(OutputMessage {
                id: format!("msg_{base}"),
                status: "completed".into(),
                role: "assistant".into(),
                content: vec![OutputText::new(text.unwrap_or_default())],
            }));
        }
        for (n, call) in message.tool_calls.into_iter().enumerate() {
            let (namespace, name) = call_name(request, &call.function.name);
            out.output.push(OutputItem::FunctionCall(FunctionCallItem {
                id: Some(call_item_id(&base, n)),
                call_id: call.id,
                name,
                namespace,
                arguments: call.function.arguments,
                status: Some("completed".into()),
                // Gemini's thought signature rides here and must come back with the call.
                rest: call.rest,
            }));
        }
        finish = choice.finish_reason;
    }
    (out.status, out.incomplete_details) = ending(finish.as_deref());
    out.usage = completion.usage.as_ref().map(usage);
    out
}

/// A chat call's function name as the Responses call names it: `<namespace>__<name>` back to
/// its namespace and name when the request declared that namespace with that function.
pub fn call_name(request: &ResponsesRequest, chat_name: &str) -> (Option<String>, String) {
    for tool in &request.tools {
        let Tool::Namespace { name: ns, tools, .. } = tool else {
            continue;
        };
        let Some(name) = chat_name
            .strip_prefix(ns.as_str())
            .and_then(|rest| rest.strip_prefix(NAMESPACE_SEPARATOR))
        else {
            continue;
        };
        if tools
            .iter()
            .any(|t| matches!(t, Tool::Function { name: f, .. } if f == name))
        {
            return (Some(ns.clone()), name.to_owned());
        }
    }
    (None, chat_name.to_owned())
}

/// The id of a message's `n`th function call item.
pub fn call_item_id(base: &str, n: usize) -> String {
    format!("fc_{base}_{n}")
}

/// A reasoning item holding the backend's reasoning text.
pub fn reasoning_item(base: &str, text: String) -> ReasoningItem {
    ReasoningItem {
        id: format!("rs_{base}"),
        summary: Vec::new(),
        content: Some(vec![ReasoningText {
            kind: "reasoning_text".into(),
            text,
        }]),
        rest: Map::new(),
    }
}

/// The Response's status for a chat finish reason.
pub fn ending(finish: Option<&str>) -> (Status, Option<IncompleteDetails>) {
    let reason = match finish {
        Some("length") => "max_output_tokens",
        Some("content_filter") => "content_filter",
        _ => return (Status::Completed, None),
    };
    (Status::Incomplete, Some(IncompleteDetails { reason: reason.into() }))
}

/// Chat usage as a Response's.
pub fn usage(usage: &CompletionUsage) -> ResponseUsage {
    ResponseUsage {
        input_tokens: usage.prompt_tokens,
        input_tokens_details: InputTokensDetails {
            cached_tokens: usage.cached(),
            cache_write_tokens: usage.cache_creation(),
        },
        output_tokens: usage.completion_tokens,
        output_tokens_details: OutputTokensDetails {
            reasoning_tokens: usage
                .completion_tokens_details
                .as_ref()
                .map_or(0, |d| d.reasoning_tokens),
        },
        total_tokens: usage.prompt_tokens.saturating_add(usage.completion_tokens),
    }
}

#[cfg(test)]
mod tests;
