//! The OpenAI format's types and helpers, against exact values.

use base64::{Engine, engine::general_purpose::STANDARD};

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
    assert_eq!(STANDARD.encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(STANDARD.encode(b"fo"), "Zm8=");
    assert_eq!(STANDARD.encode(1.0f32.to_le_bytes()), "AACAPw==");
}
