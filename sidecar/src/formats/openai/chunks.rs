//! A whole answer as the chunks of a stream, and the usage chunk that ends one.

use serde_json::{Map, Value};

use crate::wire::Usage;

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
