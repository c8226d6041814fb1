//! Client requests, parsed once: only the fields the sidecar acts on are typed, the rest pass through.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::error::ApiError;

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

    /// The completion cap, whichever name the client used.
    pub fn completion_cap(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Characters of text in the conversation (string contents and text parts).
    pub fn prompt_chars(&self) -> usize {
        self.messages.iter().map(|m| text_chars(&m.content)).sum()
    }

    fn check(&self) -> Result<(), ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_request(
                "messages must contain at least one message",
                Some("messages"),
            ));
        }
        for (field, value) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if value == Some(0) {
                return Err(ApiError::bad_request(
                    format!("{field} must be at least 1"),
                    Some(field),
                ));
            }
        }
        Ok(())
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

impl EmbeddingsRequest {
    fn check(&self) -> Result<(), ApiError> {
        let empty = match &self.input {
            EmbeddingInput::One(_) => false,
            EmbeddingInput::Many(v) => v.is_empty(),
            EmbeddingInput::Tokens(v) => !v.is_array() || v.as_array().is_some_and(Vec::is_empty),
        };
        if empty {
            return Err(ApiError::bad_request(
                "input must be a string, a non-empty array of strings, or token arrays",
                Some("input"),
            ));
        }
        Ok(())
    }
}

/// Parses and checks a chat request body.
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let request: ChatRequest = parse_json(body)?;
    request.check()?;
    Ok(request)
}

/// Parses and checks an embeddings request body.
pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingsRequest, ApiError> {
    let request: EmbeddingsRequest = parse_json(body)?;
    request.check()?;
    Ok(request)
}

/// Parses JSON into `T`, naming the field at fault in the error.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Tracking the path costs about as much as the parse itself and only serves an error
    // message: a body is parsed without it, and parsed again with it only when it fails.
    let mut de = serde_json::Deserializer::from_slice(body);
    match T::deserialize(&mut de) {
        Ok(parsed) => {
            de.end()
                .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}"), None))?;
            Ok(parsed)
        }
        Err(_) => parse_json_tracked(body),
    }
}

/// [`parse_json`] tracking the path of each value, so that an error names the field at fault.
fn parse_json_tracked<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        // serde_json reports some type errors (a number where an enum belongs) as syntax errors:
        // only a body that does not parse as JSON at all is "not valid JSON".
        if (inner.is_syntax() || inner.is_eof()) && !is_json(body) {
            return ApiError::bad_request(format!("the body is not valid JSON: {inner}"), None);
        }
        let path = e.path().to_string();
        let (message, param) = match missing_field(&inner.to_string()) {
            Some(field) => (format!("missing required field {field:?}"), Some(field.to_owned())),
            None if path == "." => (format!("invalid request: {inner}"), None),
            None => (format!("invalid value at {path}: {inner}"), Some(path)),
        };
        ApiError::BadRequest { message, param }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}"), None))?;
    Ok(parsed)
}

/// Whether `body` is one well-formed JSON value (skipping strings does not check UTF-8: do it first).
fn is_json(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_ok() && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// Extracts `x` from serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(body: &str) -> (String, Option<String>) {
        match parse_chat(body.as_bytes()) {
            Err(ApiError::BadRequest { message, param }) => (message, param),
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn keeps_unknown_fields_for_the_upstream() {
        let r = parse_chat(
            br#"{"model":"m","messages":[{"role":"user","content":"hi","x":1}],"temperature":0.5,"seed":3}"#,
        )
        .unwrap();
        assert_eq!(r.rest.get("temperature"), Some(&serde_json::json!(0.5)));
        assert_eq!(r.messages[0].rest.get("x"), Some(&serde_json::json!(1)));
        let out = serde_json::to_value(&r).unwrap();
        assert_eq!(out["seed"], 3);
    }

    #[test]
    fn names_the_missing_field() {
        let (message, param) = param_of(r#"{"model":"m"}"#);
        assert_eq!(param.as_deref(), Some("messages"));
        assert!(message.contains("messages"), "{message}");
    }

    #[test]
    fn names_the_field_with_a_wrong_type() {
        assert_eq!(
            param_of(r#"{"model":"m","messages":"hi"}"#).1.as_deref(),
            Some("messages")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":"x"}"#)
                .1
                .as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"robot"}]}"#).1.as_deref(),
            Some("messages[0].role")
        );
    }

    #[test]
    fn a_number_as_role_is_a_wrong_type_at_its_path_not_invalid_json() {
        let (message, param) = param_of(r#"{"model":"m","messages":[{"role":7,"content":"hi"}]}"#);
        assert_eq!(param.as_deref(), Some("messages[0].role"));
        assert!(!message.contains("not valid JSON"), "{message}");
    }

    #[test]
    fn invalid_utf8_is_invalid_json() {
        let body = b"{\"model\":\"m\xC0\xAF\",\"messages\":[{\"role\":\"user\",\"content\":\"\xFF\"}]}";
        match parse_chat(body) {
            Err(ApiError::BadRequest { message, param }) => {
                assert!(message.contains("not valid JSON"), "{message}");
                assert_eq!(param, None);
            }
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn deep_nesting_is_refused_as_invalid_json_without_overflowing_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(param_of(&deep).1, None);
        let inside = format!(r#"{{"model":"m","messages":[{{"role":"user","content":{deep}}}]}}"#);
        let (message, _) = param_of(&inside);
        assert!(message.contains("recursion limit"), "{message}");
    }

    #[test]
    fn refuses_malformed_json_and_trailing_garbage() {
        assert!(param_of(r#"{"model":"m","#).0.contains("not valid JSON"));
        assert!(
            param_of(r#"{"model":"m","messages":[{"role":"user"}]} x"#)
                .0
                .contains("not valid JSON")
        );
    }

    #[test]
    fn refuses_empty_messages_and_zero_max_tokens() {
        assert_eq!(
            param_of(r#"{"model":"m","messages":[]}"#).1.as_deref(),
            Some("messages")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":0}"#)
                .1
                .as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":-5}"#)
                .1
                .as_deref(),
            Some("max_tokens")
        );
    }
}
