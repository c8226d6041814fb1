//! Anthropic's Messages format → OpenAI's chat format, as pure functions: the `anthropic`
//! provider reads Anthropic answers back, whole ([`response`]), streamed ([`stream`]) or refused
//! ([`error`]), and the `/v1/messages` endpoint serves Anthropic requests through the pipeline
//! ([`request`]). The decisions a client may notice are listed in [`super::openai_to_anthropic`].

pub mod stream;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value};

use crate::formats::anthropic::{
    self, Content, ContentBlock, MessagesRequest, MessagesResponse, Source, SourceBlock, StopReason, TextBlock,
    ToolUseBlock,
};
use crate::formats::openai::{
    self, AssistantMessage, ChatCompletion, ChatMessage, ChatRequest, Choice, CompletionUsage, ContentPart, FilePart,
    FunctionCall, FunctionDefinition, ImageUrl, PromptTokensDetails, Role, StreamOptions, Tool, ToolCall, ToolChoice,
    Untranslatable, splice::RawBody,
};
use crate::wire::{self, ProviderError};

use super::openai_to_anthropic::only_cache_control;

// ---------------------------------------------------------------------------------------------
// Anthropic → OpenAI (the `anthropic` provider's answers)

/// An Anthropic message as an OpenAI `chat.completion` made at `created`.
pub fn response(response: MessagesResponse, created: u64) -> ChatCompletion {
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in response.content {
        match block {
            ContentBlock::Text(t) => text.get_or_insert_with(String::new).push_str(&t.text),
            ContentBlock::Thinking(t) => reasoning.get_or_insert_with(String::new).push_str(&t.thinking),
            ContentBlock::ToolUse(call) => tool_calls.push(tool_call(call)),
            // Encrypted reasoning and server-side blocks have no OpenAI counterpart.
            _ => {}
        }
    }
    if text.is_none() && tool_calls.is_empty() {
        text = Some(String::new());
    }
    ChatCompletion {
        id: openai_id(&response.id),
        object: "chat.completion".into(),
        created,
        model: response.model,
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".into(),
                content: text,
                reasoning_content: reasoning,
                tool_calls,
                rest: Map::new(),
            },
            logprobs: None,
            finish_reason: Some(finish_reason(response.stop_reason).into()),
            rest: Map::new(),
        }],
        usage: Some(usage(&response.usage)),
        rest: Map::new(),
    }
}

/// A `tool_use` block as an OpenAI tool call.
fn tool_call(call: ToolUseBlock) -> ToolCall {
    ToolCall {
        id: call.id,
        kind: "function".into(),
        function: FunctionCall {
            name: call.name,
            arguments: arguments_text(&call.input),
        },
        rest: Map::new(),
    }
}

/// A tool call's input as OpenAI's argument text.
pub fn arguments_text(input: &Value) -> String {
    match input {
        Value::Null => "{}".into(),
        other => other.to_string(),
    }
}

/// The OpenAI id of an Anthropic message.
pub fn openai_id(anthropic_id: &str) -> String {
    format!("chatcmpl-{anthropic_id}")
}

/// OpenAI's `finish_reason` for an Anthropic stop reason.
pub fn finish_reason(stop: Option<StopReason>) -> &'static str {
    match stop {
        Some(StopReason::MaxTokens | StopReason::ModelContextWindowExceeded) => "length",
        Some(StopReason::ToolUse) => "tool_calls",
        Some(StopReason::Refusal) => "content_filter",
        Some(StopReason::EndTurn | StopReason::StopSequence | StopReason::PauseTurn | StopReason::Other) | None => {
            "stop"
        }
    }
}

/// Anthropic usage as OpenAI's: prompt tokens include both cached parts.
pub fn usage(usage: &anthropic::Usage) -> CompletionUsage {
    let read = usage.cache_read_input_tokens.unwrap_or(0);
    let write = usage.cache_creation_input_tokens.unwrap_or(0);
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
        completion_tokens_details: None,
        rest: Map::new(),
    }
}

/// An Anthropic error (its status, `type` and message) as the sidecar's, the body in OpenAI's
/// shape so that a client of the OpenAI surface cannot tell which provider refused: the message
/// stays, Anthropic's error type becomes the `code`.
pub fn error(status: u16, kind: &str, message: &str) -> ProviderError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    ProviderError::Status {
        status,
        retry_after: None,
        body: error_body(status, kind, message),
    }
}

/// The OpenAI-shaped body of an Anthropic error of type `kind` answered with `status`.
pub fn error_body(status: StatusCode, kind: &str, message: &str) -> Bytes {
    wire::error_body(message, openai::error_type_for(status), Some(kind), None)
}

// ---------------------------------------------------------------------------------------------
// Anthropic → OpenAI (the `/v1/messages` endpoint)

/// An Anthropic Messages request as the OpenAI chat request the pipeline serves.
///
/// Fields without an OpenAI counterpart (`thinking`, `service_tier`, …) are dropped; a block
/// that cannot be expressed (a document by URL, a server tool) is refused.
pub fn request(request: MessagesRequest) -> Result<ChatRequest, Untranslatable> {
    if request.messages.is_empty() {
        return Err(Untranslatable("messages must contain at least one message".into()));
    }
    if request.max_tokens == 0 {
        return Err(Untranslatable("max_tokens must be at least 1".into()));
    }
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = request.system {
        messages.push(chat_message(Role::System, system_to_openai(system)?, Map::new()));
    }
    for message in request.messages {
        match message.role {
            anthropic::Role::User => user_to_openai(message.content, &mut messages)?,
            anthropic::Role::Assistant => messages.push(assistant_to_openai(message.content)?),
        }
    }
    // Messages whose content is an empty block list translate to nothing: a request left with no
    // message beyond the system prompt is refused here, as the chat endpoint refuses it.
    if messages.iter().all(|m| m.role == Role::System) {
        return Err(Untranslatable(
            "messages must contain at least one message with content".into(),
        ));
    }
    let mut rest = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            rest.insert(key.to_owned(), v);
        }
    };
    put("temperature", request.temperature.map(Value::from));
    put("top_p", request.top_p.map(Value::from));
    put("top_k", request.top_k.map(Value::from));
    put("stop", request.stop_sequences.map(Value::from));
    if let Some(tools) = request.tools {
        let tools: Vec<Tool> = tools.into_iter().map(tool_to_openai).collect::<Result<_, _>>()?;
        put("tools", Some(serde_json::to_value(tools).unwrap_or_default()));
    }
    if let Some(choice) = request.tool_choice {
        let (choice, parallel) = openai_tool_choice(choice);
        put("tool_choice", Some(choice.to_value()));
        put("parallel_tool_calls", parallel.map(Value::from));
    }
    let stream = request.stream == Some(true);
    Ok(ChatRequest {
        model: request.model,
        messages,
        stream: stream.then_some(true),
        // The endpoint reports usage in `message_delta`, so it always asks for it.
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            rest: Map::new(),
        }),
        max_tokens: None,
        // OpenAI's reasoning models refuse `max_tokens`; `max_completion_tokens` works everywhere it matters.
        max_completion_tokens: Some(request.max_tokens),
        user: request.metadata.and_then(|m| m.user_id),
        rest,
        raw: RawBody::default(),
    })
}

fn chat_message(role: Role, content: Value, rest: Map<String, Value>) -> ChatMessage {
    ChatMessage { role, content, rest }
}

fn system_to_openai(system: Content) -> Result<Value, Untranslatable> {
    match system {
        Content::Text(text) => Ok(Value::String(text)),
        Content::Blocks(blocks) => {
            let parts = blocks
                .into_iter()
                .map(|block| match block {
                    ContentBlock::Text(t) => Ok(text_part(t)),
                    _ => Err(Untranslatable("system blocks must be text".into())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(serde_json::to_value(parts).unwrap_or_default())
        }
    }
}

/// A text part keeping only the `cache_control` of an Anthropic text block.
fn text_part(block: TextBlock) -> ContentPart {
    ContentPart::Text {
        rest: only_cache_control(&block.rest),
        text: block.text,
    }
}

/// A user turn: its tool results become tool messages (OpenAI wants them right after the
/// assistant's calls), the rest one user message after them.
fn user_to_openai(content: Content, out: &mut Vec<ChatMessage>) -> Result<(), Untranslatable> {
    let blocks = match content {
        Content::Text(text) => {
            out.push(chat_message(Role::User, Value::String(text), Map::new()));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::ToolResult(result) => {
                let mut text_parts = Vec::new();
                let content = match result.content {
                    None => Value::String(String::new()),
                    Some(Content::Text(text)) => Value::String(text),
                    Some(Content::Blocks(inner)) => {
                        for block in inner {
                            match block {
                                ContentBlock::Text(t) => text_parts.push(text_part(t)),
                                // OpenAI tool messages hold text only: images go to the user message.
                                other => parts.push(part_to_openai(other)?),
                            }
                        }
                        serde_json::to_value(&text_parts).unwrap_or_default()
                    }
                };
                let rest = Map::from_iter([("tool_call_id".to_owned(), Value::from(result.tool_use_id))]);
                out.push(chat_message(Role::Tool, content, rest));
            }
            other => parts.push(part_to_openai(other)?),
        }
    }
    if !parts.is_empty() {
        out.push(chat_message(
            Role::User,
            serde_json::to_value(parts).unwrap_or_default(),
            Map::new(),
        ));
    }
    Ok(())
}

fn part_to_openai(block: ContentBlock) -> Result<ContentPart, Untranslatable> {
    match block {
        ContentBlock::Text(t) => Ok(text_part(t)),
        ContentBlock::Image(SourceBlock { source, .. }) => {
            let url = match source {
                Source::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
                Source::Url { url } => url,
                Source::Text { .. } | Source::Unsupported => {
                    return Err(Untranslatable("images must have a base64 or url source".into()));
                }
            };
            Ok(ContentPart::ImageUrl {
                image_url: ImageUrl { url, detail: None },
            })
        }
        ContentBlock::Document(SourceBlock { source, rest }) => match source {
            Source::Base64 { media_type, data } => Ok(ContentPart::File {
                file: FilePart {
                    file_data: Some(format!("data:{media_type};base64,{data}")),
                    file_id: None,
                    filename: rest.get("title").and_then(Value::as_str).map(str::to_owned),
                },
            }),
            Source::Text { data, .. } => Ok(ContentPart::Text {
                text: data,
                rest: Map::new(),
            }),
            Source::Url { .. } | Source::Unsupported => Err(Untranslatable(
                "documents must be sent inline (base64 or text source) through this gateway".into(),
            )),
        },
        ContentBlock::ToolUse(_) => Err(Untranslatable("tool_use blocks belong in assistant turns".into())),
        ContentBlock::ToolResult(_) => Err(Untranslatable("tool results cannot be nested".into())),
        ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_) => {
            Err(Untranslatable("thinking blocks belong in assistant turns".into()))
        }
        ContentBlock::Unsupported => Err(Untranslatable(
            "a content block type this gateway cannot translate (use text, image, document, tool_use, tool_result)"
                .into(),
        )),
    }
}

fn assistant_to_openai(content: Content) -> Result<ChatMessage, Untranslatable> {
    let blocks = match content {
        Content::Text(text) => return Ok(chat_message(Role::Assistant, Value::String(text), Map::new())),
        Content::Blocks(blocks) => blocks,
    };
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::Text(t) => text.get_or_insert_with(String::new).push_str(&t.text),
            ContentBlock::ToolUse(call) => calls.push(tool_call(call)),
            // Earlier reasoning is not part of an OpenAI conversation.
            ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_) => {}
            _ => {
                return Err(Untranslatable(
                    "assistant turns may hold text, tool_use and thinking blocks".into(),
                ));
            }
        }
    }
    let mut rest = Map::new();
    if !calls.is_empty() {
        rest.insert("tool_calls".into(), serde_json::to_value(calls).unwrap_or_default());
    }
    Ok(chat_message(
        Role::Assistant,
        text.map_or(Value::Null, Value::String),
        rest,
    ))
}

fn tool_to_openai(tool: anthropic::Tool) -> Result<Tool, Untranslatable> {
    let Some(parameters) = tool.input_schema else {
        return Err(Untranslatable(format!(
            "tool {:?} has no input_schema: Anthropic server tools cannot be served through this gateway",
            tool.name
        )));
    };
    Ok(Tool {
        kind: "function".into(),
        function: FunctionDefinition {
            name: tool.name,
            description: tool.description,
            parameters: Some(parameters),
            rest: Map::new(),
        },
        rest: only_cache_control(&tool.rest),
    })
}

fn openai_tool_choice(choice: anthropic::ToolChoice) -> (ToolChoice, Option<bool>) {
    let parallel = |disable: Option<bool>| disable.filter(|d| *d).map(|_| false);
    match choice {
        anthropic::ToolChoice::Auto {
            disable_parallel_tool_use,
        } => (ToolChoice::Auto, parallel(disable_parallel_tool_use)),
        anthropic::ToolChoice::Any {
            disable_parallel_tool_use,
        } => (ToolChoice::Required, parallel(disable_parallel_tool_use)),
        anthropic::ToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        } => (ToolChoice::Function(name), parallel(disable_parallel_tool_use)),
        anthropic::ToolChoice::None => (ToolChoice::None, None),
    }
}
