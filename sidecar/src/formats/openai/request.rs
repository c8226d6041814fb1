//! The requests a client sends: Chat Completions and embeddings. Only the fields the sidecar acts
//! on are typed; the rest pass through untouched. Parsing and checking a body is `crate::request`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::splice::RawBody;

/// An OpenAI Chat Completions request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model name as the client sent it; rewritten to the backend's model upstream.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Whether to answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options; `include_usage` asks for a final usage chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Completion token cap (older name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Completion token cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// The end user, for attribution and per-user limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field, passed through untouched.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
    /// The bytes it was parsed from, to send on with only `model` changed; whoever changes
    /// the request must empty this.
    #[serde(skip)]
    pub raw: RawBody,
}

/// One message of a conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: Role,
    /// Text or content parts; absent for assistant tool calls.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub content: Value,
    /// Every other field (`name`, `tool_calls`, `tool_call_id`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The speaker of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions from the application.
    System,
    /// Instructions from the developer (newer name for system).
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
    /// A function result (legacy).
    Function,
}

/// `stream_options` of a chat request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Ask for a final chunk carrying usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Every other option, passed through.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl ChatRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether the client asked for the final usage chunk.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true)
    }

    /// How many choices the client asked for (`n`, 1 when absent or not a positive number):
    /// each is a completion of its own, paid for.
    pub fn choices(&self) -> u64 {
        self.rest.get("n").and_then(Value::as_u64).unwrap_or(1).max(1)
    }

    /// The completion cap, whichever name the client used.
    pub fn completion_cap(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Characters of text in the conversation (string contents and text parts).
    pub fn prompt_chars(&self) -> usize {
        self.messages.iter().map(|m| text_chars(&m.content)).sum()
    }
}

/// Characters of text in a message content: a string, or the `text` of its parts.
fn text_chars(content: &Value) -> usize {
    match content {
        Value::String(s) => s.chars().count(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(|t| t.chars().count())
            .sum(),
        _ => 0,
    }
}

/// An OpenAI embeddings request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    /// The model name as the client sent it.
    pub model: String,
    /// A string, an array of strings, or token arrays.
    pub input: EmbeddingInput,
    /// The end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field, passed through.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
    /// The bytes it was parsed from (see [`ChatRequest::raw`]).
    #[serde(skip)]
    pub raw: RawBody,
}

/// What to embed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
    /// Pre-tokenized input (one or several token arrays).
    Tokens(Value),
}

impl EmbeddingInput {
    /// The texts to embed; token arrays are rendered as their numbers.
    pub fn texts(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
            Self::Tokens(Value::Array(items)) if items.iter().all(Value::is_array) => {
                items.iter().map(Value::to_string).collect()
            }
            Self::Tokens(v) => vec![v.to_string()],
        }
    }
}

/// A legacy OpenAI Completions request (`/v1/completions`): a prompt, not a conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletionsRequest {
    /// The model name as the client sent it; rewritten to the backend's model upstream.
    pub model: String,
    /// A string, an array of strings, or token arrays.
    pub prompt: Value,
    /// Whether to answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options; `include_usage` asks for a final usage chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Completion token cap (OpenAI's default is 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The end user, for attribution and per-user limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field (`suffix` for fill-in-the-middle, `echo`, `n`, …), passed through.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
    /// The bytes it was parsed from (see [`ChatRequest::raw`]).
    #[serde(skip)]
    pub raw: RawBody,
}

impl CompletionsRequest {
    /// OpenAI's completion cap when the request sets none.
    pub const DEFAULT_MAX_TOKENS: u32 = 16;

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether the client asked for the final usage chunk.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true)
    }

    /// How many completions the upstream generates and bills: for each prompt (a list of
    /// texts or of token arrays is several), `best_of` when it is larger than `n` (the upstream
    /// generates that many and returns `n`), else `n`; 1 when absent.
    pub fn choices(&self) -> u64 {
        let field = |name: &str| self.rest.get(name).and_then(Value::as_u64).unwrap_or(1);
        let prompts = match &self.prompt {
            Value::Array(items) if !items.is_empty() && items.iter().all(|i| i.is_string() || i.is_array()) => {
                u64::try_from(items.len()).unwrap_or(u64::MAX)
            }
            _ => 1,
        };
        field("n").max(field("best_of")).max(1).saturating_mul(prompts)
    }

    /// The completion cap, OpenAI's default when unset.
    pub fn completion_cap(&self) -> u32 {
        self.max_tokens.unwrap_or(Self::DEFAULT_MAX_TOKENS)
    }

    /// The prompt's texts (and the suffix's); token arrays are rendered as their numbers.
    pub fn texts(&self) -> Vec<String> {
        let mut out = match &self.prompt {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) if items.iter().all(Value::is_string) => {
                items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
            }
            Value::Array(items) if items.iter().all(Value::is_array) => items.iter().map(Value::to_string).collect(),
            other => vec![other.to_string()],
        };
        if let Some(suffix) = self.rest.get("suffix").and_then(Value::as_str) {
            out.push(suffix.to_owned());
        }
        out
    }
}
