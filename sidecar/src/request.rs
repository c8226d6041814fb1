//! A client's request body, parsed once into the OpenAI request types (`formats::openai`) and
//! checked: a refusal names the field at fault, as the 400 the client gets.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    error::ApiError,
    formats::openai::{ChatRequest, CompletionsRequest, EmbeddingInput, EmbeddingsRequest, splice::RawBody},
};

/// Parses and checks a chat request body (a copy of it is kept beside the request).
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, ApiError> {
    parse_chat_body(Bytes::copy_from_slice(body))
}

/// Parses and checks a chat request body, kept beside the request to be sent on as it came.
pub fn parse_chat_body(body: Bytes) -> Result<ChatRequest, ApiError> {
    let mut request: ChatRequest = parse_json(&body)?;
    check_chat(&request)?;
    request.raw = RawBody::new(body);
    Ok(request)
}

/// Parses and checks an embeddings request body (a copy of it is kept beside the request).
pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingsRequest, ApiError> {
    parse_embeddings_body(Bytes::copy_from_slice(body))
}

/// Parses and checks an embeddings request body, kept beside the request.
pub fn parse_embeddings_body(body: Bytes) -> Result<EmbeddingsRequest, ApiError> {
    let mut request: EmbeddingsRequest = parse_json(&body)?;
    check_embeddings(&request)?;
    request.raw = RawBody::new(body);
    Ok(request)
}

/// Parses and checks a legacy completions request body (a copy of it is kept beside the request).
pub fn parse_completions(body: &[u8]) -> Result<CompletionsRequest, ApiError> {
    parse_completions_body(Bytes::copy_from_slice(body))
}

/// Parses and checks a legacy completions request body, kept beside the request.
pub fn parse_completions_body(body: Bytes) -> Result<CompletionsRequest, ApiError> {
    let mut request: CompletionsRequest = parse_json(&body)?;
    let empty = match &request.prompt {
        Value::String(_) => false,
        Value::Array(items) => items.is_empty(),
        _ => true,
    };
    if empty {
        return Err(ApiError::bad_request(
            "prompt must be a string, a non-empty array of strings, or token arrays",
            Some("prompt"),
        ));
    }
    if request.max_tokens == Some(0) {
        return Err(ApiError::bad_request(
            "max_tokens must be at least 1",
            Some("max_tokens"),
        ));
    }
    request.raw = RawBody::new(body);
    Ok(request)
}

/// Refuses a chat request the upstreams would refuse less clearly: no messages, a zero cap.
fn check_chat(request: &ChatRequest) -> Result<(), ApiError> {
    if request.messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages must contain at least one message",
            Some("messages"),
        ));
    }
    for (field, value) in [
        ("max_tokens", request.max_tokens),
        ("max_completion_tokens", request.max_completion_tokens),
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

/// Refuses an embeddings request with nothing to embed.
fn check_embeddings(request: &EmbeddingsRequest) -> Result<(), ApiError> {
    let empty = match &request.input {
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
    fn a_legacy_completion_is_paid_for_every_prompt_times_the_larger_of_n_and_best_of() {
        let choices = |body: &str| parse_completions(body.as_bytes()).unwrap().choices();
        assert_eq!(choices(r#"{"model":"m","prompt":"a"}"#), 1);
        assert_eq!(choices(r#"{"model":"m","prompt":"a","n":2}"#), 2);
        assert_eq!(choices(r#"{"model":"m","prompt":"a","n":2,"best_of":5}"#), 5);
        assert_eq!(choices(r#"{"model":"m","prompt":["a","b","c"],"n":2}"#), 6);
        assert_eq!(choices(r#"{"model":"m","prompt":[[1,2],[3]]}"#), 2);
        // A single prompt given as one token array is one prompt.
        assert_eq!(choices(r#"{"model":"m","prompt":[1,2,3]}"#), 1);
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
    fn a_completions_prompt_must_be_text_or_a_non_empty_list() {
        let param = |body: &str| match parse_completions(body.as_bytes()) {
            Err(ApiError::BadRequest { param, .. }) => param,
            other => panic!("expected a bad request, got {other:?}"),
        };
        assert_eq!(param(r#"{"model":"m","prompt":[]}"#).as_deref(), Some("prompt"));
        assert_eq!(param(r#"{"model":"m","prompt":7}"#).as_deref(), Some("prompt"));
        assert_eq!(param(r#"{"model":"m"}"#).as_deref(), Some("prompt"));
        assert_eq!(
            param(r#"{"model":"m","prompt":"x","max_tokens":0}"#).as_deref(),
            Some("max_tokens")
        );
        let ok = parse_completions(br#"{"model":"m","prompt":"def f(","suffix":"return 1","echo":false}"#).unwrap();
        assert_eq!(ok.texts(), vec!["def f(".to_owned(), "return 1".to_owned()]);
        assert_eq!(ok.rest.get("echo"), Some(&serde_json::json!(false)));
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
