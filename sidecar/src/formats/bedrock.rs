//! Amazon Bedrock's Converse API, typed: the `converse` request and answer, each event of
//! `converse-stream` (the payload of one event-stream message, named by its `:event-type`), and
//! the error body. Bedrock's unions (content blocks, deltas, tool choice) are objects with exactly
//! one member set; they are typed as structs of optional members so that an unknown member rides
//! along in `rest`. Field names are camelCase on the wire.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /model/{modelId}/converse` (and `converse-stream`, which takes the same body).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest {
    /// The conversation, alternating `user` and `assistant` turns.
    pub messages: Vec<Message>,
    /// Instructions, apart from the conversation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<SystemBlock>,
    /// Length and sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<InferenceConfig>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
}

/// One turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `user` or `assistant`.
    pub role: String,
    /// Its blocks.
    #[serde(default)]
    pub content: Vec<ContentBlock>,
}

/// A system prompt block (text only here).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemBlock {
    /// The text.
    pub text: String,
}

/// One content block: exactly one member is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlock {
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageBlock>,
    /// A tool call by the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use: Option<ToolUseBlock>,
    /// A tool's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_result: Option<ToolResultBlock>,
    /// The model's reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<ReasoningContent>,
    /// Members no translation acts on (`document`, `guardContent`, `cachePoint`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl ContentBlock {
    /// A text block.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            ..Self::default()
        }
    }
}

/// `image`: its format and bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageBlock {
    /// `png`, `jpeg`, `gif` or `webp`.
    pub format: String,
    /// Where the image is.
    pub source: ImageSource,
}

/// `image.source`: the bytes, base64 in JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageSource {
    /// The image's bytes, base64.
    pub bytes: String,
}

/// `toolUse`: a call the model makes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlock {
    /// The id its result answers with.
    pub tool_use_id: String,
    /// The tool.
    pub name: String,
    /// The arguments, a JSON object.
    #[serde(default)]
    pub input: Value,
}

/// `toolResult`: a tool's answer to a call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultBlock {
    /// The call it answers.
    pub tool_use_id: String,
    /// What the tool returned.
    pub content: Vec<ToolResultContent>,
    /// `success` or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// One part of a tool's answer: text or a JSON document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolResultContent {
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A JSON document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
}

/// `reasoningContent`: the model's reasoning, readable or redacted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningContent {
    /// Readable reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_text: Option<ReasoningText>,
    /// Encrypted reasoning, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_content: Option<String>,
}

/// `reasoningText`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReasoningText {
    /// The text.
    #[serde(default)]
    pub text: String,
    /// The signature that must come back with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// `inferenceConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig {
    /// The answer's token cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Texts that end the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
}

/// `toolConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    /// The tools.
    pub tools: Vec<Tool>,
    /// How the model must use them; omitted, it decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
}

/// One tool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    /// Its specification.
    pub tool_spec: ToolSpec,
}

/// `toolSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec {
    /// The tool's name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its parameters.
    pub input_schema: InputSchema,
}

/// `inputSchema`: a JSON Schema.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputSchema {
    /// The schema.
    pub json: Value,
}

/// `toolChoice`: exactly one member is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolChoice {
    /// The model decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<Map<String, Value>>,
    /// The model calls some tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Map<String, Value>>,
    /// The model calls this tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<SpecificTool>,
}

/// `toolChoice.tool`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecificTool {
    /// The tool's name.
    pub name: String,
}

/// The `converse` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    /// The model's turn.
    #[serde(default)]
    pub output: Output,
    /// Why it stopped: `end_turn`, `tool_use`, `max_tokens`, `stop_sequence`,
    /// `guardrail_intervened`, `content_filtered`.
    #[serde(default)]
    pub stop_reason: String,
    /// Token counts.
    #[serde(default)]
    pub usage: TokenUsage,
    /// Everything else (`metrics`, `trace`, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `output`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// The assistant's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
}

/// `usage`: input tokens exclude the cached ones, which are counted apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    /// Uncached input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Their sum with the cached ones.
    #[serde(default)]
    pub total_tokens: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write_input_tokens: u64,
}

/// One event of `converse-stream`, keyed by its `:event-type` as the SDKs' union is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamEvent {
    /// The answer begins.
    MessageStart(MessageStart),
    /// A block begins (only tool calls say so).
    ContentBlockStart(ContentBlockStart),
    /// More of a block.
    ContentBlockDelta(ContentBlockDelta),
    /// A block ends.
    ContentBlockStop(ContentBlockStop),
    /// The answer ends.
    MessageStop(MessageStop),
    /// Usage and metrics, after `messageStop`.
    Metadata(Metadata),
}

/// `messageStart`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageStart {
    /// `assistant`.
    #[serde(default)]
    pub role: String,
}

/// `contentBlockStart`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStart {
    /// Which block.
    #[serde(default)]
    pub content_block_index: u32,
    /// What begins.
    #[serde(default)]
    pub start: BlockStart,
}

/// `contentBlockStart.start`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStart {
    /// A tool call: its id and name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use: Option<ToolUseStart>,
}

/// `start.toolUse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseStart {
    /// The call's id.
    pub tool_use_id: String,
    /// The tool.
    pub name: String,
}

/// `contentBlockDelta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockDelta {
    /// Which block.
    #[serde(default)]
    pub content_block_index: u32,
    /// What is new.
    #[serde(default)]
    pub delta: BlockDelta,
}

/// `contentBlockDelta.delta`: exactly one member is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDelta {
    /// More text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// More of a tool call's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use: Option<ToolUseDelta>,
    /// More reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<ReasoningDelta>,
}

/// `delta.toolUse`: a piece of the arguments' JSON text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolUseDelta {
    /// The piece.
    #[serde(default)]
    pub input: String,
}

/// `delta.reasoningContent`: text, its signature, or redacted reasoning.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningDelta {
    /// More reasoning text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The reasoning's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Redacted reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_content: Option<String>,
}

/// `contentBlockStop`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStop {
    /// Which block.
    #[serde(default)]
    pub content_block_index: u32,
}

/// `messageStop`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStop {
    /// Why the answer stopped.
    #[serde(default)]
    pub stop_reason: String,
}

/// `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Token counts.
    #[serde(default)]
    pub usage: TokenUsage,
}

/// The body of a Bedrock error (its type is in the `x-amzn-errortype` header, or the
/// `:exception-type` of a stream's exception message).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    #[serde(default, alias = "Message")]
    pub message: String,
}
