//! What a request carries: content parts, tools and tool choice, and the helpers that read them
//! from a parsed request.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ChatMessage, ToolCall, Untranslatable, function_kind};

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
