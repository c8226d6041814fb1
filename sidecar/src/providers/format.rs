//! The internal format, typed: OpenAI Chat Completions answers (whole and chunked), content
//! parts, tools and tool calls, as the translating providers and the `/v1/messages` endpoint read
//! and write them. Only the fields a translation acts on are typed; the rest ride along in `rest`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sluice_crds::Tokens;

use crate::{request::ChatMessage, wire::Usage};

/// A request that one wire format cannot express in another, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Untranslatable(pub String);

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

fn function_kind() -> String {
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

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// Every other field (`cache_control`, which Anthropic backends honour).
        #[serde(flatten)]
        rest: Map<String, Value>,
    },
    /// An image by URL: `https://…` or a `data:` URL.
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
    /// Audio as base64.
    InputAudio {
        /// The audio.
        input_audio: InputAudio,
    },
    /// A file (a PDF, say) as a `data:` URL or an uploaded file's id.
    File {
        /// The file.
        file: FilePart,
    },
    /// A part type no translation knows.
    #[serde(other)]
    Unknown,
}

/// `image_url` of an image part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// `https://…` or `data:<mime>;base64,<data>`.
    pub url: String,
    /// `low`, `high` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `input_audio` of an audio part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputAudio {
    /// Base64 audio.
    pub data: String,
    /// `wav`, `mp3`, …
    pub format: String,
}

/// `file` of a file part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePart {
    /// `data:<mime>;base64,<data>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    /// An id from OpenAI's Files API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// The file's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// A tool definition of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// The function.
    pub function: FunctionDefinition,
    /// Every other field (`cache_control`, which Anthropic backends honour).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its arguments as a JSON Schema object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Every other field (`strict`).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `tool_choice` of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// `"auto"`: the model decides.
    Auto,
    /// `"none"`: no tool calls.
    None,
    /// `"required"`: at least one tool call.
    Required,
    /// `{"type": "function", "function": {"name": …}}`: this function.
    Function(String),
}

impl ToolChoice {
    /// Reads `tool_choice`.
    pub fn parse(value: &Value) -> Result<Self, Untranslatable> {
        match value {
            Value::String(mode) => match mode.as_str() {
                "auto" => Ok(Self::Auto),
                "none" => Ok(Self::None),
                "required" => Ok(Self::Required),
                other => Err(Untranslatable(format!(
                    "tool_choice {other:?} is not one of auto, none, required"
                ))),
            },
            _ => value
                .pointer("/function/name")
                .and_then(Value::as_str)
                .map(|name| Self::Function(name.to_owned()))
                .ok_or_else(|| {
                    Untranslatable(
                        "tool_choice must be a mode or {\"type\": \"function\", \"function\": {\"name\": …}}".into(),
                    )
                }),
        }
    }

    /// As OpenAI writes it.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Auto => Value::from("auto"),
            Self::None => Value::from("none"),
            Self::Required => Value::from("required"),
            Self::Function(name) => serde_json::json!({"type": "function", "function": {"name": name}}),
        }
    }
}

/// The content of a message as parts: a string is one text part, `null` none.
pub fn content_parts(content: &Value) -> Result<Vec<ContentPart>, Untranslatable> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(vec![ContentPart::Text {
            text: text.clone(),
            rest: Map::new(),
        }]),
        Value::Array(_) => serde_json::from_value(content.clone())
            .map_err(|e| Untranslatable(format!("a message's content parts are malformed: {e}"))),
        _ => Err(Untranslatable(
            "a message's content must be a string or an array of parts".into(),
        )),
    }
}

/// The text of a content that may only hold text (system, tool and assistant messages).
pub fn content_text(content: &Value) -> Result<String, Untranslatable> {
    let mut text = String::new();
    for part in content_parts(content)? {
        match part {
            ContentPart::Text { text: t, .. } => text.push_str(&t),
            _ => {
                return Err(Untranslatable(
                    "only text parts are allowed in system, developer, assistant and tool messages".into(),
                ));
            }
        }
    }
    Ok(text)
}

/// The tool calls of an assistant message.
pub fn tool_calls(message: &ChatMessage) -> Result<Vec<ToolCall>, Untranslatable> {
    match message.rest.get("tool_calls") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(calls) => serde_json::from_value(calls.clone())
            .map_err(|e| Untranslatable(format!("an assistant message's tool_calls are malformed: {e}"))),
    }
}

/// The `tool_call_id` of a tool message.
pub fn tool_call_id(message: &ChatMessage) -> Option<&str> {
    message.rest.get("tool_call_id").and_then(Value::as_str)
}

/// The `tools` of a request.
pub fn tools(rest: &Map<String, Value>) -> Result<Vec<Tool>, Untranslatable> {
    match rest.get("tools") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(tools) => {
            serde_json::from_value(tools.clone()).map_err(|e| Untranslatable(format!("tools are malformed: {e}")))
        }
    }
}

/// The `stop` of a request: a string or an array of them.
pub fn stop_sequences(rest: &Map<String, Value>) -> Option<Vec<String>> {
    match rest.get("stop")? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => Some(items.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
        _ => None,
    }
}

/// A `data:<mime>;base64,<data>` URL split into its media type and data.
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
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

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `id`, `created`, `model`, `system_fingerprint` and `service_tier` of a completion or chunk,
/// under a new `object`.
pub fn completion_header(v: &Value, object: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for field in ["id", "created", "model", "system_fingerprint", "service_tier"] {
        if let Some(x) = v.get(field) {
            out.insert(field.into(), x.clone());
        }
    }
    out.insert("object".into(), Value::String(object.into()));
    out
}

/// A whole `chat.completion` as the chunks of the stream a client asked for: per choice, its
/// whole message as one delta, then its finish; then, when `wants_usage`, the usage chunk with
/// the completion's own `usage` (or `metered` when it has none). `None` when `body` is not a
/// completion.
pub fn completion_as_stream(body: &[u8], wants_usage: bool, metered: Option<Usage>) -> Option<Vec<bytes::Bytes>> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    let base = completion_header(&doc, "chat.completion.chunk");
    let mut out = Vec::new();
    for (i, choice) in doc.get("choices")?.as_array()?.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or(Value::from(i));
        let mut delta = choice
            .get("message")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
            for (n, call) in calls.iter_mut().enumerate() {
                if let Value::Object(call) = call {
                    call.insert("index".into(), Value::from(n));
                }
            }
        }
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        for (delta, finish) in [(Value::Object(delta), Value::Null), (Value::Object(Map::new()), finish)] {
            let mut chunk = base.clone();
            chunk.insert(
                "choices".into(),
                serde_json::json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}]),
            );
            out.push(bytes::Bytes::from(Value::Object(chunk).to_string()));
        }
    }
    let stated = doc.get("usage").filter(|u| u.is_object()).cloned();
    if wants_usage && let Some(usage) = stated.or_else(|| metered.map(|u| u.to_openai())) {
        push_usage_chunk(&mut out, usage);
    }
    Some(out)
}

/// Appends the chunk that ends an OpenAI stream under `include_usage`: no choices, `usage`, and
/// the id, model and times of the first chunk.
pub fn push_usage_chunk(chunks: &mut Vec<bytes::Bytes>, usage: Value) {
    let first = chunks.first().and_then(|c| serde_json::from_slice::<Value>(c).ok());
    let mut last = completion_header(first.as_ref().unwrap_or(&Value::Null), "chat.completion.chunk");
    last.insert("choices".into(), Value::Array(Vec::new()));
    last.insert("usage".into(), usage);
    chunks.push(bytes::Bytes::from(Value::Object(last).to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_completion_streams_as_its_deltas_then_the_usage_it_states_or_the_metered_one() {
        let usage = serde_json::json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "x": 1});
        let body = serde_json::json!({"id": "c1", "object": "chat.completion", "created": 7, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": usage});
        let parse = |chunks: Vec<bytes::Bytes>| -> Vec<Value> {
            chunks.iter().map(|c| serde_json::from_slice(c).unwrap()).collect()
        };
        let metered = Usage {
            input: Tokens(10),
            output: Tokens(20),
            ..Usage::default()
        };

        let chunks = parse(completion_as_stream(body.to_string().as_bytes(), true, Some(metered)).unwrap());
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "hi");
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            (&chunks[2]["choices"], &chunks[2]["usage"]),
            (&serde_json::json!([]), &usage)
        );
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "c1")
        );

        let mut without = body.clone();
        without.as_object_mut().unwrap().remove("usage");
        let chunks = parse(completion_as_stream(without.to_string().as_bytes(), true, Some(metered)).unwrap());
        assert_eq!(chunks[2]["usage"]["completion_tokens"], 20);
        assert_eq!(
            parse(completion_as_stream(body.to_string().as_bytes(), false, None).unwrap()).len(),
            2
        );
        assert!(completion_as_stream(b"[1, 2]", true, None).is_none());
    }
    use serde_json::json;

    #[test]
    fn chunks_say_usage_null_only_when_the_client_asked() {
        let chunk = ChatChunk::delta("c", 1, "m", 0, Delta::default(), None);
        let with: Value = serde_json::from_str(&chunk.clone().to_json(true)).unwrap();
        let without: Value = serde_json::from_str(&chunk.to_json(false)).unwrap();
        assert_eq!(with["usage"], Value::Null);
        assert!(with.as_object().unwrap().contains_key("usage"));
        assert!(!without.as_object().unwrap().contains_key("usage"));
    }

    #[test]
    fn reads_chunks_with_null_usage_and_null_tool_calls() {
        let chunk: ChatChunk = serde_json::from_value(json!({"id": "c", "object": "chat.completion.chunk",
            "created": 1, "model": "m", "usage": null,
            "choices": [{"index": 0, "delta": {"content": "hi", "tool_calls": null}, "finish_reason": null}]}))
        .unwrap();
        assert_eq!(chunk.usage, UsageSlot::Null);
        assert_eq!(chunk.choices[0].delta.content.as_deref(), Some("hi"));
    }

    #[test]
    fn text_parts_keep_cache_control_and_unknown_parts_are_marked() {
        let parts = content_parts(&json!([
            {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
            {"type": "video", "video": {}}
        ]))
        .unwrap();
        assert_eq!(
            parts[0],
            ContentPart::Text {
                text: "a".into(),
                rest: json!({"cache_control": {"type": "ephemeral"}})
                    .as_object()
                    .unwrap()
                    .clone()
            }
        );
        assert_eq!(parts[1], ContentPart::Unknown);
        assert_eq!(
            serde_json::to_value(&parts[0]).unwrap(),
            json!({"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}})
        );
    }

    #[test]
    fn splits_data_urls() {
        assert_eq!(
            parse_data_url("data:image/png;base64,AAAA"),
            Some(("image/png", "AAAA"))
        );
        assert_eq!(parse_data_url("https://x/y.png"), None);
        assert_eq!(parse_data_url("data:text/plain,hello"), None);
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(&1.0f32.to_le_bytes()), "AACAPw==");
    }
}
