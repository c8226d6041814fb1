//! Serving a stored answer in the form the client asked for: a stored stream can answer a
//! plain request (its chunks assembled) and a stored document a streamed one (split into
//! chunks), since the cache key ignores `stream`.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{Entry, Stored};
use crate::{
    accounting::Usage,
    providers::{ChunkStream, StreamEvent},
};

/// The answer as one `chat.completion` document; `None` if the stored form cannot be read.
pub fn complete(entry: &Entry) -> Option<Bytes> {
    match &entry.answer {
        Stored::Complete(body) => Some(body.clone()),
        Stored::Chunks(chunks) => assemble(chunks, entry.usage).map(|v| Bytes::from(v.to_string())),
    }
}

/// The answer as a stream of chunks, ending with a usage chunk when the client asked for one.
pub fn stream(entry: &Entry, wants_usage: bool) -> Option<ChunkStream> {
    let chunks = match &entry.answer {
        Stored::Chunks(chunks) => chunks.clone(),
        Stored::Complete(body) => split(body)?,
    };
    let mut events: Vec<_> = chunks.into_iter().map(|c| Ok(StreamEvent::Data(c))).collect();
    if let Some(usage) = entry.usage {
        events.push(Ok(StreamEvent::Usage(usage)));
        if wants_usage {
            let first = events.first().and_then(|e| match e {
                Ok(StreamEvent::Data(d)) => serde_json::from_slice::<Value>(d).ok(),
                _ => None,
            });
            let mut last = header_of(first.as_ref().unwrap_or(&Value::Null), "chat.completion.chunk");
            last.insert("choices".into(), json!([]));
            last.insert("usage".into(), openai_usage(&usage));
            events.push(Ok(StreamEvent::Data(Bytes::from(Value::Object(last).to_string()))));
        }
    }
    Some(Box::pin(futures::stream::iter(events)))
}

/// OpenAI's `usage` object.
fn openai_usage(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input.0,
        "completion_tokens": u.output.0,
        "total_tokens": (u.input + u.output).0,
        "prompt_tokens_details": {"cached_tokens": u.cached_input.0},
    })
}

/// `id`, `object`, `created`, `model` and `system_fingerprint` of a document or chunk.
fn header_of(v: &Value, object: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for field in ["id", "created", "model", "system_fingerprint", "service_tier"] {
        if let Some(x) = v.get(field) {
            out.insert(field.into(), x.clone());
        }
    }
    out.insert("object".into(), Value::String(object.into()));
    out
}

/// A document's choices as chunks: per choice, its whole message as one delta, then its finish.
fn split(body: &Bytes) -> Option<Vec<Bytes>> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    let base = header_of(&doc, "chat.completion.chunk");
    let mut out = Vec::new();
    for (i, choice) in doc.get("choices")?.as_array()?.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or(json!(i));
        let mut delta = choice
            .get("message")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
            for (n, call) in calls.iter_mut().enumerate() {
                if let Value::Object(call) = call {
                    call.insert("index".into(), json!(n));
                }
            }
        }
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        for (delta, finish) in [(Value::Object(delta), Value::Null), (json!({}), finish)] {
            let mut chunk = base.clone();
            chunk.insert(
                "choices".into(),
                json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}]),
            );
            out.push(Bytes::from(Value::Object(chunk).to_string()));
        }
    }
    Some(out)
}

#[derive(Default)]
struct Choice {
    role: Option<Value>,
    content: Option<String>,
    refusal: Option<String>,
    tool_calls: BTreeMap<u64, Map<String, Value>>,
    finish_reason: Value,
}

/// Chunks back into one document: contents and tool-call arguments concatenated per choice.
fn assemble(chunks: &[Bytes], usage: Option<Usage>) -> Option<Value> {
    let parsed: Vec<Value> = chunks
        .iter()
        .map(|c| serde_json::from_slice(c).ok())
        .collect::<Option<_>>()?;
    let mut doc = header_of(parsed.first()?, "chat.completion");
    let mut choices: BTreeMap<u64, Choice> = BTreeMap::new();
    for chunk in &parsed {
        for c in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
            let choice = choices
                .entry(c.get("index").and_then(Value::as_u64).unwrap_or(0))
                .or_default();
            if let Some(finish) = c.get("finish_reason").filter(|f| !f.is_null()) {
                choice.finish_reason = finish.clone();
            }
            let Some(delta) = c.get("delta") else { continue };
            if let Some(role) = delta.get("role").filter(|r| !r.is_null()) {
                choice.role = Some(role.clone());
            }
            for (field, acc) in [("content", &mut choice.content), ("refusal", &mut choice.refusal)] {
                if let Some(text) = delta.get(field).and_then(Value::as_str) {
                    acc.get_or_insert_default().push_str(text);
                }
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                merge_tool_call(&mut choice.tool_calls, call);
            }
        }
    }
    let choices: Vec<Value> = choices.into_iter().map(|(index, c)| finish_choice(index, c)).collect();
    doc.insert("choices".into(), Value::Array(choices));
    if let Some(u) = usage {
        doc.insert("usage".into(), openai_usage(&u));
    }
    Some(Value::Object(doc))
}

fn merge_tool_call(calls: &mut BTreeMap<u64, Map<String, Value>>, delta: &Value) {
    let index = delta.get("index").and_then(Value::as_u64).unwrap_or(0);
    let call = calls.entry(index).or_default();
    for field in ["id", "type"] {
        if let Some(v) = delta.get(field).filter(|v| !v.is_null()) {
            call.insert(field.into(), v.clone());
        }
    }
    let Some(function) = delta.get("function") else { return };
    let target = call
        .entry("function")
        .or_insert_with(|| json!({"name": "", "arguments": ""}));
    for field in ["name", "arguments"] {
        if let Some(text) = function.get(field).and_then(Value::as_str) {
            let joined = format!(
                "{}{text}",
                target.get(field).and_then(Value::as_str).unwrap_or_default()
            );
            target[field] = Value::String(joined);
        }
    }
}

fn finish_choice(index: u64, c: Choice) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), c.role.unwrap_or_else(|| json!("assistant")));
    message.insert("content".into(), c.content.map_or(Value::Null, Value::String));
    if let Some(refusal) = c.refusal {
        message.insert("refusal".into(), Value::String(refusal));
    }
    if !c.tool_calls.is_empty() {
        message.insert(
            "tool_calls".into(),
            Value::Array(c.tool_calls.into_values().map(Value::Object).collect()),
        );
    }
    json!({"index": index, "message": message, "logprobs": null, "finish_reason": c.finish_reason})
}
