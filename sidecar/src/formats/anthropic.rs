//! Anthropic's Messages API, typed: the request, the message it answers with, the stream's events
//! and the error body. Shared by the `anthropic` provider and the `/v1/messages` endpoint, which
//! read and write the same shapes in opposite directions. Fields no translation acts on are kept
//! in `rest`, and block or event types this version does not know parse as `Unsupported`/`Unknown`.

mod stream;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use self::stream::{BlockDelta, DeltaUsage, Event, MessageDelta};

/// `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// The model.
    pub model: String,
    /// The conversation, user and assistant turns.
    pub messages: Vec<Message>,
    /// The completion cap; required by Anthropic.
    pub max_tokens: u32,
    /// Instructions: a string or text blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
    /// Texts that end generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Whether to answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Sampling temperature, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Tools the model may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model must use tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// `user_id` for abuse detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Every other field (`thinking`, `service_tier`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A `/v1/messages/count_tokens` request: a Messages request without the completion settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountTokensRequest {
    /// The model.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Instructions: a string or text blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
    /// Tools the model may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model must use tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Every other field (`thinking`, `mcp_servers`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The answer to a count_tokens request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCount {
    /// Prompt tokens the request would use.
    pub input_tokens: u64,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// A string or content blocks.
    pub content: Content,
}

/// The speaker of a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The end user (and tool results).
    User,
    /// The model.
    Assistant,
}

/// Content as a string or as blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Blocks.
    Blocks(Vec<ContentBlock>),
}

impl Content {
    /// The content as blocks; a string is one text block.
    pub fn into_blocks(self) -> Vec<ContentBlock> {
        match self {
            Self::Text(text) => vec![ContentBlock::text(text)],
            Self::Blocks(blocks) => blocks,
        }
    }
}

/// A block of content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text.
    Text(TextBlock),
    /// An image.
    Image(SourceBlock),
    /// A document (PDF or plain text).
    Document(SourceBlock),
    /// A tool call by the model.
    ToolUse(ToolUseBlock),
    /// A tool's answer, in a user turn.
    ToolResult(ToolResultBlock),
    /// The model's visible reasoning.
    Thinking(ThinkingBlock),
    /// The model's reasoning, encrypted.
    RedactedThinking(RedactedThinkingBlock),
    /// A block type no translation here knows (server tools and the like).
    #[serde(other)]
    Unsupported,
}

impl ContentBlock {
    /// A plain text block.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(TextBlock {
            text: text.into(),
            rest: Map::new(),
        })
    }
}

/// `{"type": "text"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextBlock {
    /// The text.
    pub text: String,
    /// Every other field (`cache_control`, `citations`).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `{"type": "image"}` or `{"type": "document"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceBlock {
    /// Where the bytes are.
    pub source: Source,
    /// Every other field (`cache_control`, `title`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Where an image's or document's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// Inline, base64.
    Base64 {
        /// `image/png`, `application/pdf`, …
        media_type: String,
        /// The bytes in base64.
        data: String,
    },
    /// At a URL Anthropic fetches.
    Url {
        /// The URL.
        url: String,
    },
    /// Plain text (documents).
    Text {
        /// `text/plain`.
        media_type: String,
        /// The text.
        data: String,
    },
    /// A source type no translation here knows (uploaded files, …).
    #[serde(other)]
    Unsupported,
}

/// `{"type": "tool_use"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUseBlock {
    /// The id its result refers to.
    pub id: String,
    /// The tool.
    pub name: String,
    /// Its input, a JSON object.
    #[serde(default)]
    pub input: Value,
    /// Every other field.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `{"type": "tool_result"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResultBlock {
    /// The call it answers.
    pub tool_use_id: String,
    /// What the tool returned: a string or text and image blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Whether the tool failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// Every other field (`cache_control`).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `{"type": "thinking"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThinkingBlock {
    /// The reasoning text.
    pub thinking: String,
    /// Anthropic's signature over it.
    #[serde(default)]
    pub signature: String,
}

/// `{"type": "redacted_thinking"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedactedThinkingBlock {
    /// The encrypted reasoning.
    pub data: String,
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its input as a JSON Schema object; absent for Anthropic's server tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// Every other field (`cache_control`, `type` of server tools).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// How the model must use tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto {
        /// At most one tool call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// At least one tool call.
    Any {
        /// At most one tool call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// This tool.
    Tool {
        /// The tool.
        name: String,
        /// At most one tool call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// No tool calls.
    None,
}

/// `metadata` of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// An opaque id of the end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The message a request is answered with (also the skeleton in `message_start`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    /// `msg_…`.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type", default = "message_kind")]
    pub kind: String,
    /// Always `assistant`.
    #[serde(default = "assistant")]
    pub role: String,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// What the model said.
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    /// Why it stopped; `null` in `message_start`.
    #[serde(default)]
    pub stop_reason: Option<StopReason>,
    /// Which stop sequence matched.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Token counts.
    #[serde(default)]
    pub usage: Usage,
    /// Every other field (`container`, `stop_details`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

fn message_kind() -> String {
    "message".into()
}

fn assistant() -> String {
    "assistant".into()
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A natural end.
    EndTurn,
    /// `max_tokens` reached.
    MaxTokens,
    /// A stop sequence matched.
    StopSequence,
    /// The model called tools.
    ToolUse,
    /// A long turn paused.
    PauseTurn,
    /// The model refused.
    Refusal,
    /// The context window is full.
    ModelContextWindowExceeded,
    /// A reason this version does not know.
    #[serde(other)]
    Other,
}

/// Token counts of a message. Anthropic's `input_tokens` excludes the cached parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Uncached input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    /// Every other field (`service_tier`, `server_tool_use`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `{"type": "error", "error": {...}}`: every error body, and the `error` event's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Always `error`.
    #[serde(rename = "type", default = "error_kind")]
    pub kind: String,
    /// What failed.
    pub error: ErrorObject,
}

fn error_kind() -> String {
    "error".into()
}

/// The inner error object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// `invalid_request_error`, `overloaded_error`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// What happened.
    #[serde(default)]
    pub message: String,
}

/// Anthropic's error type for an HTTP status.
pub fn error_type_for(status: u16) -> &'static str {
    match status {
        400 | 405 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// The HTTP status Anthropic uses for an error type, for errors that arrive inside a stream.
pub fn status_for(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}
