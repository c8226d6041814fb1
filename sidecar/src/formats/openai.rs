//! OpenAI Chat Completions, typed, and the sidecar's internal format: requests (chat and
//! embeddings), answers (whole and chunked), content parts, tools and tool calls, as the
//! endpoints, the translating providers and the `/v1/messages` endpoint read and write them.
//! Only the fields a translation acts on are typed; the rest ride along in `rest`.

mod chunks;
mod content;
mod request;
pub mod splice;
#[cfg(test)]
mod tests;
pub mod usage;

use http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sluice_crds::Tokens;

use crate::wire::{Usage, is_client_fault};

pub use self::{
    chunks::{completion_as_stream, completion_header, push_usage_chunk},
    content::*,
    request::{ChatMessage, ChatRequest, CompletionsRequest, EmbeddingInput, EmbeddingsRequest, Role, StreamOptions},
};

/// A request that one wire format cannot express in another, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Untranslatable(pub String);

/// OpenAI's error `type` for an upstream's error status: the client's fault, a rate limit, or
/// the upstream's.
pub fn error_type_for(status: StatusCode) -> &'static str {
    if is_client_fault(status) {
        "invalid_request_error"
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        "rate_limit_error"
    } else {
        "upstream_error"
    }
}

/// A `chat.completion` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// The answer's id.
    pub id: String,
    /// Always `chat.completion`.
    #[serde(default = "completion_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// One choice per requested completion.
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<Choice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<CompletionUsage>,
    /// Every other field (`system_fingerprint`, `service_tier`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

fn completion_object() -> String {
    "chat.completion".into()
}

/// One choice of a `chat.completion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Its position.
    #[serde(default)]
    pub index: u32,
    /// The model's message.
    pub message: AssistantMessage,
    /// Log probabilities; the translating providers have none (`null`).
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// Why generation stopped: `stop`, `length`, `tool_calls`, `content_filter`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The assistant's message in an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    #[serde(default = "assistant_role")]
    pub role: String,
    /// The text; `null` when the answer is only tool calls.
    #[serde(default, deserialize_with = "text_content")]
    pub content: Option<String>,
    /// Reasoning text, as DeepSeek and others name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls the model asks for.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub tool_calls: Vec<ToolCall>,
    /// Every other field (`refusal`, `annotations`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

fn assistant_role() -> String {
    "assistant".into()
}

/// One tool call of an assistant message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The id a tool message answers with.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// What to call.
    pub function: FunctionCall,
    /// Every other field (Gemini's `extra_content` with its thought signature).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

pub(super) fn function_kind() -> String {
    "function".into()
}

/// A function name and its arguments as a JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function.
    pub name: String,
    /// Its arguments, a JSON object as text.
    #[serde(default)]
    pub arguments: String,
}

/// OpenAI's `usage` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionUsage {
    /// Prompt tokens, cached ones included.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Completion tokens, reasoning included.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: u64,
    /// The prompt's cached part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// The completion's reasoning part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// Every other field.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from the provider's cache.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's cache (Anthropic bills them apart); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_tokens: Option<u64>,
    /// Every other field.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    /// Completion tokens spent on reasoning.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Every other field.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl CompletionUsage {
    /// Counts with `total_tokens` as their sum and cached tokens when there are any.
    pub fn new(prompt: u64, completion: u64, cached: u64) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: cached,
                ..PromptTokensDetails::default()
            }),
            ..Self::default()
        }
    }

    /// The sidecar's counts in this shape, cache writes as `cache_creation_tokens` when any.
    pub fn of(usage: &Usage) -> Self {
        let mut out = Self::new(usage.input.0, usage.output.0, usage.cached_input.0);
        if let Some(details) = out.prompt_tokens_details.as_mut() {
            details.cache_creation_tokens = (usage.cache_write_input.0 > 0).then_some(usage.cache_write_input.0);
        }
        out
    }

    /// Prompt tokens read from the cache.
    pub fn cached(&self) -> u64 {
        self.prompt_tokens_details.as_ref().map_or(0, |d| d.cached_tokens)
    }

    /// Prompt tokens written to the cache.
    pub fn cache_creation(&self) -> u64 {
        self.prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cache_creation_tokens)
            .unwrap_or(0)
    }

    /// As the sidecar accounts it.
    pub fn to_usage(&self) -> Usage {
        Usage {
            input: Tokens(self.prompt_tokens),
            cached_input: Tokens(self.cached()),
            cache_write_input: Tokens(self.cache_creation()),
            output: Tokens(self.completion_tokens),
            estimated: false,
        }
    }
}

/// A `chat.completion.chunk` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    /// The answer's id, the same on every chunk.
    pub id: String,
    /// Always `chat.completion.chunk`.
    #[serde(default = "chunk_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// The model that answers.
    #[serde(default)]
    pub model: String,
    /// Deltas, one per choice; empty on the final usage chunk.
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<ChunkChoice>,
    /// Usage: absent unless the client asked, then `null` on every chunk but the last.
    #[serde(default, skip_serializing_if = "UsageSlot::is_absent")]
    pub usage: UsageSlot,
    /// Every other field.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

fn chunk_object() -> String {
    "chat.completion.chunk".into()
}

/// The `usage` key of a chunk, which OpenAI either leaves out, sets to `null` or fills.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum UsageSlot {
    /// No `usage` key: the client did not ask for usage.
    #[default]
    Absent,
    /// `"usage": null`, on every chunk but the last when the client asked.
    Null,
    /// The final counts.
    Counts(Box<CompletionUsage>),
}

impl UsageSlot {
    fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }

    /// The counts, if this slot holds them.
    pub fn counts(&self) -> Option<&CompletionUsage> {
        match self {
            Self::Counts(u) => Some(u.as_ref()),
            Self::Absent | Self::Null => None,
        }
    }
}

impl Serialize for UsageSlot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Counts(u) => u.serialize(s),
            Self::Absent | Self::Null => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for UsageSlot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<CompletionUsage>::deserialize(d)?.map_or(Self::Null, |u| Self::Counts(Box::new(u))))
    }
}

/// One choice's delta in a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Which choice.
    #[serde(default)]
    pub index: u32,
    /// What is new.
    #[serde(default)]
    pub delta: Delta,
    /// Log probabilities (`null` here).
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// Set on the choice's last chunk.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// What a chunk adds to a choice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// `assistant`, on the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// More text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// More reasoning text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// New tool calls and more of their arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub tool_calls: Vec<ToolCallDelta>,
    /// Every other field (`refusal`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl Delta {
    /// A choice's first delta: the assistant's role, and empty text.
    pub fn role() -> Self {
        Self {
            role: Some("assistant".into()),
            content: Some(String::new()),
            ..Self::default()
        }
    }

    /// More answer text.
    pub fn text(text: String) -> Self {
        Self {
            content: Some(text),
            ..Self::default()
        }
    }

    /// More reasoning text.
    pub fn reasoning(text: String) -> Self {
        Self {
            reasoning_content: Some(text),
            ..Self::default()
        }
    }

    /// A tool call's start or more of its arguments.
    pub fn tool_call(call: ToolCallDelta) -> Self {
        Self {
            tool_calls: vec![call],
            ..Self::default()
        }
    }
}

/// A tool call's first appearance (with id and name) or more of its arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which tool call of the message.
    #[serde(default)]
    pub index: u32,
    /// Its id, on its first delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, on its first delta.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name (first delta) and argument text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDelta>,
    /// Every other field.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A piece of a function call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionDelta {
    /// The function, on the first delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// More argument text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

impl ChatChunk {
    /// A chunk with one delta for choice `index`.
    pub fn delta(id: &str, created: u64, model: &str, index: u32, delta: Delta, finish: Option<String>) -> Self {
        Self {
            id: id.to_owned(),
            object: chunk_object(),
            created,
            model: model.to_owned(),
            choices: vec![ChunkChoice {
                index,
                delta,
                logprobs: None,
                finish_reason: finish,
                rest: Map::new(),
            }],
            usage: UsageSlot::Absent,
            rest: Map::new(),
        }
    }

    /// The final chunk: no choices, the usage.
    pub fn usage(id: &str, created: u64, model: &str, usage: CompletionUsage) -> Self {
        Self {
            id: id.to_owned(),
            object: chunk_object(),
            created,
            model: model.to_owned(),
            choices: Vec::new(),
            usage: UsageSlot::Counts(Box::new(usage)),
            rest: Map::new(),
        }
    }

    /// The chunk as JSON text; with `wants_usage`, a chunk without counts says `"usage": null`
    /// as OpenAI's do once a client asked for usage.
    pub fn to_json(mut self, wants_usage: bool) -> String {
        if wants_usage && self.usage.is_absent() {
            self.usage = UsageSlot::Null;
        }
        // Plain data always serializes.
        serde_json::to_string(&self).unwrap_or_default()
    }
}

/// Reads a list that some servers send as `null`.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads an answer's content: text, `null`, or (from some servers) text parts to join.
fn text_content<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Parts(Vec<Part>),
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(default)]
        text: String,
    }
    Ok(Option::<Content>::deserialize(d)?.map(|c| match c {
        Content::Text(t) => t,
        Content::Parts(parts) => parts.into_iter().map(|p| p.text).collect(),
    }))
}
