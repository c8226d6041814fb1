//! OpenAI's chat format → Anthropic's Messages format, as pure functions: the `anthropic`
//! provider sends OpenAI requests as Anthropic ones ([`request`]), and the `/v1/messages`
//! endpoint answers in Anthropic's format, whole ([`response`]) or streamed ([`stream`]).
//! The other direction is [`super::anthropic_to_openai`].
//!
//! Decisions a client may notice:
//! - `max_tokens` is required by Anthropic; a request without a cap gets [`DEFAULT_MAX_TOKENS`].
//! - OpenAI's temperature runs to 2, Anthropic's to 1: higher values are sent as 1.
//! - `cache_control` on text parts and tools crosses in both directions (the convention OpenRouter
//!   and LiteLLM use), so prompt caching works through the OpenAI surface; strict OpenAI servers
//!   may refuse the unknown key.
//! - Thinking blocks become `reasoning_content` (and back); their signatures do not survive.
//! - `cache_creation_input_tokens` travels as `usage.prompt_tokens_details.cache_creation_tokens`.
//! - `reasoning_effort` becomes extended thinking (`thinking: {type: enabled, budget_tokens}`,
//!   the budget from [`super::thinking_budget`]); `none` sends no thinking. Anthropic counts the
//!   budget inside `max_tokens` and wants it below: without a client cap, `max_tokens` is
//!   [`DEFAULT_MAX_TOKENS`] plus the budget; with one, the budget is cut to fit, and a cap too
//!   small for Anthropic's least budget (1,024) sends no thinking. Thinking takes no temperature
//!   or `top_k` and a `top_p` of at least 0.95, so those are then not sent; and it takes no
//!   forced tool, so a request that forces one (`tool_choice` `required` or a function) is sent
//!   without thinking.
//! - `response_format` `json_schema` becomes Anthropic's structured output
//!   (`output_config: {format: {type: json_schema, schema}}`): the answer is the JSON as text.
//! - OpenAI fields without an Anthropic counterpart (`seed`, `response_format` `json_object`,
//!   `logprobs`, penalties) are not sent; `n` above 1 is refused.

pub mod stream;

use serde_json::{Map, Value, json};

use crate::formats::anthropic::{
    self, Content, ContentBlock, Message, MessagesRequest, MessagesResponse, Source, SourceBlock, StopReason,
    TextBlock, ThinkingBlock, ToolResultBlock, ToolUseBlock,
};
use crate::formats::openai::{
    self, ChatCompletion, ChatMessage, ChatRequest, CompletionUsage, ContentPart, FilePart, Role, Tool, ToolChoice,
    Untranslatable,
};

/// `max_tokens` sent to Anthropic when the client set no cap: Anthropic requires one, and 4096 is
/// what every current Claude model can produce.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The `cache_control` key carried between the two formats.
const CACHE_CONTROL: &str = "cache_control";

/// The least thinking budget Anthropic takes.
pub const MIN_THINKING_BUDGET: u32 = 1024;

// ---------------------------------------------------------------------------------------------
// OpenAI → Anthropic

/// An OpenAI chat request as an Anthropic Messages request for `model`.
pub fn request(request: &ChatRequest, model: &str) -> Result<MessagesRequest, Untranslatable> {
    if request.rest.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(Untranslatable(
            "anthropic backends answer one choice: n must be 1".into(),
        ));
    }
    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    for message in &request.messages {
        match message.role {
            Role::System | Role::Developer => {
                for part in openai::content_parts(&message.content)? {
                    match part {
                        ContentPart::Text { text, rest } => system.push(text_block(text, &rest)),
                        _ => return Err(Untranslatable("system messages may only hold text".into())),
                    }
                }
            }
            Role::User => {
                let content = match &message.content {
                    Value::String(text) => Content::Text(text.clone()),
                    other => Content::Blocks(user_blocks(other)?),
                };
                push_turn(&mut messages, anthropic::Role::User, content);
            }
            Role::Assistant => push_turn(&mut messages, anthropic::Role::Assistant, assistant_content(message)?),
            Role::Tool => {
                let tool_use_id = openai::tool_call_id(message)
                    .ok_or_else(|| Untranslatable("a tool message lacks its tool_call_id".into()))?;
                let content = match &message.content {
                    Value::String(text) => Content::Text(text.clone()),
                    other => Content::Blocks(
                        openai::content_parts(other)?
                            .into_iter()
                            .map(|part| match part {
                                ContentPart::Text { text, rest } => Ok(text_block(text, &rest)),
                                _ => Err(Untranslatable("tool messages may only hold text".into())),
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                };
                let result = ContentBlock::ToolResult(ToolResultBlock {
                    tool_use_id: tool_use_id.to_owned(),
                    content: Some(content),
                    is_error: None,
                    rest: Map::new(),
                });
                push_turn(&mut messages, anthropic::Role::User, Content::Blocks(vec![result]));
            }
            Role::Function => {
                return Err(Untranslatable(
                    "legacy function messages cannot be sent to an anthropic backend; use tool messages".into(),
                ));
            }
        }
    }
    let tools = openai::tools(&request.rest)?;
    let parallel = request.rest.get("parallel_tool_calls").and_then(Value::as_bool);
    let tool_choice = match request.rest.get("tool_choice") {
        Some(choice) if !choice.is_null() => Some(ToolChoice::parse(choice)?),
        _ => None,
    };
    let rest_f64 = |key: &str| request.rest.get(key).and_then(Value::as_f64);
    let forced_tool = matches!(tool_choice, Some(ToolChoice::Required | ToolChoice::Function(_)));
    let mut sampling = Sampling {
        max_tokens: request.completion_cap().unwrap_or(DEFAULT_MAX_TOKENS),
        temperature: rest_f64("temperature").map(|t| t.min(1.0)),
        top_p: rest_f64("top_p"),
        top_k: request
            .rest
            .get("top_k")
            .and_then(Value::as_u64)
            .and_then(|k| u32::try_from(k).ok()),
    };
    let mut rest = Map::new();
    if let Some(thinking) = thinking(request, forced_tool, &mut sampling)? {
        rest.insert("thinking".into(), thinking);
    }
    if let Some(format) = output_format(request)? {
        rest.insert("output_config".into(), json!({"format": format}));
    }
    Ok(MessagesRequest {
        model: model.to_owned(),
        messages,
        max_tokens: sampling.max_tokens,
        system: system_content(system),
        stop_sequences: openai::stop_sequences(&request.rest).filter(|s| !s.is_empty()),
        stream: request.is_stream().then_some(true),
        temperature: sampling.temperature,
        top_p: sampling.top_p,
        top_k: sampling.top_k,
        tools: (!tools.is_empty()).then(|| tools.iter().map(tool_to_anthropic).collect()),
        tool_choice: anthropic_tool_choice(tool_choice, parallel),
        metadata: request.user.as_ref().map(|user| anthropic::Metadata {
            user_id: Some(user.clone()),
            rest: Map::new(),
        }),
        rest,
    })
}

/// The cap and sampling settings of a request, which thinking constrains.
struct Sampling {
    max_tokens: u32,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u32>,
}

/// Anthropic's `thinking` for the request's reasoning effort, fitting `sampling` to it; `None`
/// when it asks none, forces a tool, or caps the answer below the least budget.
fn thinking(
    request: &ChatRequest,
    forced_tool: bool,
    sampling: &mut Sampling,
) -> Result<Option<Value>, Untranslatable> {
    let Some(budget) = super::thinking_budget(request)?.filter(|b| *b > 0) else {
        return Ok(None);
    };
    if forced_tool {
        return Ok(None);
    }
    let budget = match request.completion_cap() {
        None => {
            sampling.max_tokens = DEFAULT_MAX_TOKENS.saturating_add(budget);
            budget
        }
        Some(cap) => budget.min(cap.saturating_sub(1)),
    };
    if budget < MIN_THINKING_BUDGET {
        return Ok(None);
    }
    sampling.temperature = None;
    sampling.top_k = None;
    sampling.top_p = sampling.top_p.filter(|p| *p >= 0.95);
    Ok(Some(json!({"type": "enabled", "budget_tokens": budget})))
}

/// Anthropic's structured output format for a `response_format` of `json_schema`.
fn output_format(request: &ChatRequest) -> Result<Option<Value>, Untranslatable> {
    let Some(format) = request.rest.get("response_format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => {
            let schema = format
                .pointer("/json_schema/schema")
                .cloned()
                .ok_or_else(|| Untranslatable("response_format json_schema needs json_schema.schema".into()))?;
            Ok(Some(json!({"type": "json_schema", "schema": schema})))
        }
        Some("json_object" | "text") | None => Ok(None),
        Some(other) => Err(Untranslatable(format!(
            "response_format {other:?} is not one of text, json_object, json_schema"
        ))),
    }
}

/// System blocks as Anthropic takes them: one plain text as a string, otherwise blocks.
fn system_content(mut blocks: Vec<ContentBlock>) -> Option<Content> {
    match blocks.as_mut_slice() {
        [] => None,
        [ContentBlock::Text(TextBlock { text, rest })] if rest.is_empty() => Some(Content::Text(std::mem::take(text))),
        _ => Some(Content::Blocks(blocks)),
    }
}

/// Appends a turn, merging it into the previous one of the same role: Anthropic wants every tool
/// result of a step in the one user turn that follows the tool calls.
fn push_turn(messages: &mut Vec<Message>, role: anthropic::Role, content: Content) {
    match messages.last_mut() {
        Some(last) if last.role == role => {
            let previous = std::mem::replace(&mut last.content, Content::Blocks(Vec::new()));
            let mut blocks = previous.into_blocks();
            blocks.extend(content.into_blocks());
            last.content = Content::Blocks(blocks);
        }
        _ => messages.push(Message { role, content }),
    }
}

/// A text block keeping only the `cache_control` of an OpenAI text part.
fn text_block(text: String, rest: &Map<String, Value>) -> ContentBlock {
    ContentBlock::Text(TextBlock {
        text,
        rest: only_cache_control(rest),
    })
}

pub(super) fn only_cache_control(rest: &Map<String, Value>) -> Map<String, Value> {
    rest.get(CACHE_CONTROL)
        .map(|c| Map::from_iter([(CACHE_CONTROL.to_owned(), c.clone())]))
        .unwrap_or_default()
}

fn user_blocks(content: &Value) -> Result<Vec<ContentBlock>, Untranslatable> {
    openai::content_parts(content)?
        .into_iter()
        .map(|part| match part {
            ContentPart::Text { text, rest } => Ok(text_block(text, &rest)),
            ContentPart::ImageUrl { image_url } => Ok(ContentBlock::Image(SourceBlock {
                source: image_source(&image_url.url)?,
                rest: Map::new(),
            })),
            ContentPart::File { file } => file_block(&file),
            ContentPart::InputAudio { .. } => Err(Untranslatable("anthropic backends do not accept audio".into())),
            ContentPart::Unknown => Err(Untranslatable(
                "a content part type anthropic backends do not accept (use text, image_url or file)".into(),
            )),
        })
        .collect()
}

/// An image URL as an Anthropic image source: `data:` URLs inline, `http(s)` URLs by reference.
fn image_source(url: &str) -> Result<Source, Untranslatable> {
    if let Some((media_type, data)) = openai::parse_data_url(url) {
        return Ok(Source::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Source::Url { url: url.to_owned() });
    }
    Err(Untranslatable(
        "an image_url must be an http(s) URL or a base64 data: URL".into(),
    ))
}

fn file_block(file: &FilePart) -> Result<ContentBlock, Untranslatable> {
    let (media_type, data) = file
        .file_data
        .as_deref()
        .and_then(openai::parse_data_url)
        .ok_or_else(|| Untranslatable("anthropic backends take files as base64 data: URLs in file_data".into()))?;
    let mut rest = Map::new();
    if let Some(name) = &file.filename {
        rest.insert("title".into(), Value::from(name.clone()));
    }
    Ok(ContentBlock::Document(SourceBlock {
        source: Source::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        },
        rest,
    }))
}

fn assistant_content(message: &ChatMessage) -> Result<Content, Untranslatable> {
    let calls = openai::tool_calls(message)?;
    if let (Value::String(text), true) = (&message.content, calls.is_empty()) {
        return Ok(Content::Text(text.clone()));
    }
    let mut blocks = Vec::new();
    let text = openai::content_text(&message.content)?;
    if !text.is_empty() {
        blocks.push(ContentBlock::text(text));
    }
    for call in calls {
        let input = if call.function.arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&call.function.arguments)
                .map_err(|e| Untranslatable(format!("the arguments of tool call {} are not JSON: {e}", call.id)))?
        };
        blocks.push(ContentBlock::ToolUse(ToolUseBlock {
            id: call.id,
            name: call.function.name,
            input,
            rest: Map::new(),
        }));
    }
    Ok(Content::Blocks(blocks))
}

fn tool_to_anthropic(tool: &Tool) -> anthropic::Tool {
    anthropic::Tool {
        name: tool.function.name.clone(),
        description: tool.function.description.clone(),
        // Anthropic requires a schema; a function without parameters takes an empty object.
        input_schema: Some(
            tool.function
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        ),
        rest: only_cache_control(&tool.rest),
    }
}

fn anthropic_tool_choice(choice: Option<ToolChoice>, parallel: Option<bool>) -> Option<anthropic::ToolChoice> {
    let disable_parallel_tool_use = (parallel == Some(false)).then_some(true);
    match choice {
        None if disable_parallel_tool_use.is_some() => Some(anthropic::ToolChoice::Auto {
            disable_parallel_tool_use,
        }),
        None => None,
        Some(ToolChoice::Auto) => Some(anthropic::ToolChoice::Auto {
            disable_parallel_tool_use,
        }),
        Some(ToolChoice::Required) => Some(anthropic::ToolChoice::Any {
            disable_parallel_tool_use,
        }),
        Some(ToolChoice::Function(name)) => Some(anthropic::ToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        }),
        Some(ToolChoice::None) => Some(anthropic::ToolChoice::None),
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI → Anthropic (the `/v1/messages` endpoint's answers)

/// An OpenAI `chat.completion` (its first choice) as an Anthropic message.
pub fn response(completion: ChatCompletion) -> MessagesResponse {
    let mut content = Vec::new();
    let mut stop = None;
    if let Some(choice) = completion.choices.into_iter().next() {
        let message = choice.message;
        if let Some(thinking) = message.reasoning_content.filter(|t| !t.is_empty()) {
            content.push(ContentBlock::Thinking(ThinkingBlock {
                thinking,
                signature: String::new(),
            }));
        }
        if let Some(text) = message.content.filter(|t| !t.is_empty()) {
            content.push(ContentBlock::text(text));
        }
        for call in message.tool_calls {
            content.push(ContentBlock::ToolUse(ToolUseBlock {
                id: call.id,
                name: call.function.name,
                input: tool_input(&call.function.arguments),
                rest: Map::new(),
            }));
        }
        stop = choice.finish_reason.as_deref().map(stop_reason);
    }
    MessagesResponse {
        id: anthropic_id(&completion.id),
        kind: "message".into(),
        role: "assistant".into(),
        model: completion.model,
        content,
        stop_reason: Some(stop.unwrap_or(StopReason::EndTurn)),
        stop_sequence: None,
        usage: completion.usage.as_ref().map(usage).unwrap_or_else(zero_usage),
        rest: Map::new(),
    }
}

/// A tool call's argument text as Anthropic's `input` object; text that is not a JSON object
/// (a model's malformed output) becomes an empty input rather than an invalid message.
pub fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => json!({}),
    }
}

/// The Anthropic id of an OpenAI answer: `msg_…`, undoing [`super::anthropic_to_openai::openai_id`].
pub fn anthropic_id(openai_id: &str) -> String {
    let id = openai_id.strip_prefix("chatcmpl-").unwrap_or(openai_id);
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{id}")
    }
}

/// Anthropic's stop reason for an OpenAI `finish_reason`.
pub fn stop_reason(finish: &str) -> StopReason {
    match finish {
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::Refusal,
        _ => StopReason::EndTurn,
    }
}

/// OpenAI usage as Anthropic's: input tokens exclude both cached parts.
pub fn usage(usage: &CompletionUsage) -> anthropic::Usage {
    let read = usage.cached();
    let write = usage.cache_creation();
    anthropic::Usage {
        input_tokens: usage.prompt_tokens.saturating_sub(read.saturating_add(write)),
        output_tokens: usage.completion_tokens,
        cache_creation_input_tokens: Some(write),
        cache_read_input_tokens: Some(read),
        rest: Map::new(),
    }
}

/// Usage when the answer reported none.
pub fn zero_usage() -> anthropic::Usage {
    anthropic::Usage {
        cache_creation_input_tokens: Some(0),
        cache_read_input_tokens: Some(0),
        ..anthropic::Usage::default()
    }
}
