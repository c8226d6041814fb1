//! Serving a stored answer in the form the client asked for: a stored stream can answer a
//! plain request (its chunks assembled) and a stored document a streamed one (split into
//! chunks), since the cache key ignores `stream`.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{Entry, Stored};
use crate::{
    formats::openai,
    providers,
    wire::{ChunkStream, Usage},
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
        Stored::Chunks(chunks) => {
            let mut chunks = chunks.clone();
            if let Some(usage) = entry.usage.filter(|_| wants_usage) {
                openai::push_usage_chunk(&mut chunks, usage.to_openai());
            }
            chunks
        }
        Stored::Complete(body) => openai::completion_as_stream(body, wants_usage, entry.usage)?,
    };
    Some(providers::replayed_stream(chunks, entry.usage))
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
    let mut doc = openai::completion_header(parsed.first()?, "chat.completion");
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
        doc.insert("usage".into(), u.to_openai());
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
