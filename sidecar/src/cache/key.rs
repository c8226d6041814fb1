//! Which requests are cached, and under which key.

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use sluice_crds::ObjectKey;

use crate::formats::openai::ChatRequest;

/// Fields that change how an answer is delivered or attributed, not what it says.
const IGNORED_FIELDS: [&str; 3] = ["stream", "stream_options", "user"];

/// A SHA-256 of the route and the normalized request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

/// Whether a request asks for a repeatable answer: `temperature: 0`, or a `seed`.
pub fn is_deterministic(request: &ChatRequest) -> bool {
    let zero_temperature = request
        .rest
        .get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| t == 0.0);
    let seeded = request.rest.get("seed").is_some_and(|s| !s.is_null());
    zero_temperature || seeded
}

/// The key of `request` on `route`: the body without `stream`, `stream_options` and `user`,
/// with object keys sorted and integral numbers written as integers, so requests that differ
/// only in field order or in `0` versus `0.0` share an answer.
pub fn key(route: &ObjectKey, request: &ChatRequest) -> Key {
    let mut body = serde_json::to_value(request).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut body {
        for field in IGNORED_FIELDS {
            map.remove(field);
        }
    }
    let mut canonical = Vec::with_capacity(256);
    write_canonical(&body, &mut canonical);
    let mut hasher = Sha256::new();
    hasher.update(route.namespace.as_bytes());
    hasher.update([0]);
    hasher.update(route.name.as_bytes());
    hasher.update([0]);
    hasher.update(&canonical);
    Key(hasher.finalize().into())
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Number(n) => out.extend_from_slice(canonical_number(n).as_bytes()),
        // Strings, booleans and null have one JSON form already.
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut fields: Vec<(&String, &Value)> = map.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (name, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(Value::String(name.clone()).to_string().as_bytes());
        out.push(b':');
        write_canonical(value, out);
    }
    out.push(b'}');
}

fn canonical_number(n: &Number) -> String {
    match n.as_f64() {
        Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_chat;

    fn route(name: &str) -> ObjectKey {
        ObjectKey {
            namespace: "team-a".into(),
            name: name.into(),
        }
    }

    fn key_of(body: &str) -> Key {
        key(&route("chat"), &parse_chat(body.as_bytes()).unwrap())
    }

    #[test]
    fn ignores_stream_user_and_field_order() {
        let a = key_of(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"user":"alice"}"#);
        let b = key_of(
            r#"{"temperature":0.0,"stream":true,"stream_options":{"include_usage":true},"messages":[{"content":"hi","role":"user"}],"model":"m","user":"bob"}"#,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn differs_by_route_content_and_parameters() {
        let base = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#;
        let a = key_of(base);
        assert_ne!(a, key(&route("other"), &parse_chat(base.as_bytes()).unwrap()));
        assert_ne!(
            a,
            key_of(r#"{"model":"m","messages":[{"role":"user","content":"hi!"}],"temperature":0}"#)
        );
        assert_ne!(
            a,
            key_of(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":5}"#)
        );
        assert_ne!(
            a,
            key_of(r#"{"model":"m2","messages":[{"role":"user","content":"hi"}],"temperature":0}"#)
        );
    }

    #[test]
    fn only_zero_temperature_or_a_seed_is_deterministic() {
        let det = |b: &str| is_deterministic(&parse_chat(b.as_bytes()).unwrap());
        assert!(det(r#"{"model":"m","messages":[{"role":"user"}],"temperature":0}"#));
        assert!(det(r#"{"model":"m","messages":[{"role":"user"}],"temperature":0.0}"#));
        assert!(det(
            r#"{"model":"m","messages":[{"role":"user"}],"temperature":0.7,"seed":42}"#
        ));
        assert!(!det(r#"{"model":"m","messages":[{"role":"user"}],"temperature":0.7}"#));
        assert!(!det(r#"{"model":"m","messages":[{"role":"user"}]}"#));
        assert!(!det(r#"{"model":"m","messages":[{"role":"user"}],"seed":null}"#));
    }
}
