//! OpenAI's Responses API (`/v1/responses`), typed: the request with its input items and tools,
//! the Response object with its output items and usage, and the events of a streamed answer
//! ([`stream`]). Only the fields a translation acts on are typed; the rest ride along in `rest`.

pub mod stream;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A `POST /v1/responses` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponsesRequest {
    /// The model name as the client sent it.
    pub model: String,
    /// A text (one user message) or input items.
    pub input: Input,
    /// A system (developer) message put before the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// `auto`, `none`, `required`, or `{"type": "function", "name": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Completion token cap, reasoning included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Whether to answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Whether the client asks OpenAI to keep the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// A stored response to continue from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// The output format: `{"format": {"type": "text" | "json_object" | "json_schema", …}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    /// `{"effort": "low" | "medium" | "high" | …, "summary": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoning>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Whether the model may call several tools at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// The end user, for attribution and per-user limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Key-value pairs the client attaches; echoed in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Every other field (`include`, `truncation`, `service_tier`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl ResponsesRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }
}

/// The input of a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One user message.
    Text(String),
    /// Messages, tool calls and their outputs, in order.
    Items(Vec<InputItem>),
}

/// One input item. A message may leave out its `type`, as the SDKs' "easy" messages do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", try_from = "Value")]
pub enum InputItem {
    /// A message from the user, the developer, or (earlier) the assistant.
    Message(InputMessage),
    /// A call the model made earlier.
    FunctionCall(FunctionCallItem),
    /// The output of a call, for the model to read.
    FunctionCallOutput(FunctionCallOutput),
    /// Reasoning the model did earlier.
    Reasoning(ReasoningItem),
    /// Any other item type (`item_reference`, `web_search_call`, …), by its type, for the refusal.
    #[serde(skip_serializing)]
    Other(String),
}

/// The item types this module reads, as they arrive.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum KnownItem {
    Message(InputMessage),
    FunctionCall(FunctionCallItem),
    FunctionCallOutput(FunctionCallOutput),
    Reasoning(ReasoningItem),
}

impl TryFrom<Value> for InputItem {
    type Error = String;

    fn try_from(mut value: Value) -> Result<Self, String> {
        let Some(object) = value.as_object_mut() else {
            return Err("an input item must be an object".into());
        };
        let kind = match object.get("type") {
            None if object.contains_key("role") => {
                object.insert("type".into(), Value::from("message"));
                "message".to_owned()
            }
            None => return Err("an input item needs a type (or a role, for a message)".into()),
            Some(Value::String(kind)) => kind.clone(),
            Some(_) => return Err("an input item's type must be a string".into()),
        };
        if !matches!(
            kind.as_str(),
            "message" | "function_call" | "function_call_output" | "reasoning"
        ) {
            return Ok(Self::Other(kind));
        }
        let known: KnownItem = serde_json::from_value(value).map_err(|e| format!("{kind} item: {e}"))?;
        Ok(match known {
            KnownItem::Message(m) => Self::Message(m),
            KnownItem::FunctionCall(c) => Self::FunctionCall(c),
            KnownItem::FunctionCallOutput(o) => Self::FunctionCallOutput(o),
            KnownItem::Reasoning(r) => Self::Reasoning(r),
        })
    }
}

/// A message item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputMessage {
    /// `user`, `system`, `developer` or `assistant`.
    pub role: String,
    /// A text, or content parts.
    pub content: MessageContent,
    /// Every other field (`id`, `status`, `phase`).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A message's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Parts.
    Parts(Vec<ContentPart>),
}

/// One part of a message's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text from the user or developer.
    InputText {
        /// The text.
        text: String,
    },
    /// Text the assistant wrote earlier.
    OutputText {
        /// The text.
        text: String,
        /// Every other field (`annotations`, `logprobs`).
        #[serde(flatten)]
        rest: Map<String, Value>,
    },
    /// A refusal the assistant wrote earlier.
    Refusal {
        /// What it said.
        refusal: String,
    },
    /// An image by URL or `data:` URL (or an uploaded file's id).
    InputImage {
        /// `https://…` or `data:<mime>;base64,…`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_url: Option<String>,
        /// An id from OpenAI's Files API.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_id: Option<String>,
        /// `low`, `high` or `auto`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A file (a PDF, say) as a `data:` URL or an uploaded file's id.
    InputFile {
        /// `data:<mime>;base64,…`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_data: Option<String>,
        /// An id from OpenAI's Files API.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_id: Option<String>,
        /// The file's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
        /// A URL to fetch it from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_url: Option<String>,
    },
    /// Any other part type, kept for the refusal.
    #[serde(untagged)]
    Other(Value),
}

/// A function call item (in the input, or as output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallItem {
    /// The item's id (`fc_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The id its output answers with.
    pub call_id: String,
    /// The function.
    pub name: String,
    /// The namespace of the function, when it was declared in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its arguments, a JSON object as text.
    #[serde(default)]
    pub arguments: String,
    /// `in_progress`, `completed` or `incomplete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Every other field: a translated call's `extra_content` (Gemini's thought signature),
    /// which must come back with the call in the next turn.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A function call's output item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionCallOutput {
    /// The call it answers.
    pub call_id: String,
    /// A text, or content parts.
    pub output: MessageContent,
    /// Every other field (`id`, `status`).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A reasoning item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasoningItem {
    /// Its id (`rs_…`).
    #[serde(default)]
    pub id: String,
    /// Summary parts (`summary_text`).
    #[serde(default)]
    pub summary: Vec<Value>,
    /// The reasoning itself, where the model shows it (`reasoning_text` parts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<ReasoningText>>,
    /// Every other field (`encrypted_content`, `status`).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A `reasoning_text` part of a reasoning item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasoningText {
    /// Always `reasoning_text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    pub text: String,
}

/// A tool of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tool {
    /// A function the client runs.
    Function {
        /// Its name.
        name: String,
        /// What it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Its arguments' JSON schema.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parameters: Option<Value>,
        /// Whether arguments must follow the schema exactly.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
    /// Function tools grouped under a name (Codex declares its sub-agent tools so); a call to
    /// one names the namespace beside the function.
    Namespace {
        /// The namespace.
        name: String,
        /// What its tools are for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Its tools.
        #[serde(default)]
        tools: Vec<Tool>,
    },
    /// A tool OpenAI runs itself (`web_search`, `file_search`, …).
    #[serde(untagged)]
    Other(Value),
}

/// `text` of a request and a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    /// The output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
    /// Every other field (`verbosity`).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The output format of `text.format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    /// Plain text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON following a schema.
    JsonSchema {
        /// The schema's name.
        name: String,
        /// The schema.
        schema: Value,
        /// What the output is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Whether the output must follow the schema exactly.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// `reasoning` of a request and a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reasoning {
    /// How hard to think: `minimal`, `low`, `medium`, `high`, …
    #[serde(default)]
    pub effort: Option<String>,
    /// Whether to summarize the reasoning.
    #[serde(default)]
    pub summary: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A Response object: the answer, whole or as the stream's snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Its id (`resp_…`).
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Unix seconds.
    pub created_at: u64,
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    pub status: Status,
    /// Why it failed, when it did.
    pub error: Option<ResponseError>,
    /// Why it is incomplete, when it is.
    pub incomplete_details: Option<IncompleteDetails>,
    /// The request's instructions.
    pub instructions: Option<String>,
    /// The request's completion cap.
    pub max_output_tokens: Option<u32>,
    /// The model that answered.
    pub model: String,
    /// What the model produced, in order.
    pub output: Vec<OutputItem>,
    /// The request's setting (default `true`).
    pub parallel_tool_calls: bool,
    /// Always `null` here: nothing is stored to continue from.
    pub previous_response_id: Option<String>,
    /// The request's reasoning settings.
    pub reasoning: Reasoning,
    /// Whether the response was stored: never, by a translating gateway.
    pub store: bool,
    /// The request's temperature.
    pub temperature: Option<f64>,
    /// The request's output format.
    pub text: TextConfig,
    /// The request's tool choice.
    pub tool_choice: Value,
    /// The request's tools.
    pub tools: Vec<Tool>,
    /// The request's nucleus sampling.
    pub top_p: Option<f64>,
    /// Always `disabled`.
    pub truncation: String,
    /// Token counts, once known.
    pub usage: Option<ResponseUsage>,
    /// The request's user.
    pub user: Option<String>,
    /// The request's metadata.
    pub metadata: Map<String, Value>,
}

/// A Response's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Still streaming.
    InProgress,
    /// Whole.
    Completed,
    /// Stopped early: a length limit or a content filter.
    Incomplete,
    /// Broke off.
    Failed,
}

/// `error` of a failed Response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseError {
    /// A machine-readable code (`server_error`, `budget_exceeded`, …).
    pub code: String,
    /// What happened.
    pub message: String,
}

/// `incomplete_details` of an incomplete Response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    pub reason: String,
}

/// One output item of a Response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// The assistant's message.
    Message(OutputMessage),
    /// A call for the client to make.
    FunctionCall(FunctionCallItem),
    /// The model's reasoning.
    Reasoning(ReasoningItem),
}

/// A message output item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputMessage {
    /// Its id (`msg_…`).
    pub id: String,
    /// `in_progress`, `completed` or `incomplete`.
    pub status: String,
    /// Always `assistant`.
    pub role: String,
    /// Its parts.
    pub content: Vec<OutputText>,
}

/// An `output_text` part of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputText {
    /// Always `output_text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    pub text: String,
    /// Citations (none from a translated answer).
    pub annotations: Vec<Value>,
    /// Log probabilities (none from a translated answer).
    pub logprobs: Vec<Value>,
}

impl OutputText {
    /// A text part.
    pub fn new(text: String) -> Self {
        Self {
            kind: "output_text".into(),
            text,
            annotations: Vec::new(),
            logprobs: Vec::new(),
        }
    }
}

/// `usage` of a Response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseUsage {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// The prompt's cached part.
    pub input_tokens_details: InputTokensDetails,
    /// Completion tokens, reasoning included.
    pub output_tokens: u64,
    /// The completion's reasoning part.
    pub output_tokens_details: OutputTokensDetails,
    /// Their sum.
    pub total_tokens: u64,
}

/// `usage.input_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputTokensDetails {
    /// Read from the provider's cache.
    pub cached_tokens: u64,
    /// Written to the provider's cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    /// Spent on reasoning.
    pub reasoning_tokens: u64,
}
