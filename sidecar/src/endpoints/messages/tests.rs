//! The `/v1/messages` answer path: OpenAI chunks as Anthropic events (against fixtures in both
//! real formats), whole answers as events, and errors in Anthropic's shape.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_crds::Tokens;

use super::{
    anthropic_error,
    stream::{self, MessagesSseBody, encode},
};
use crate::{
    error::ApiError,
    formats::anthropic::MessagesResponse,
    sse::SseDecoder,
    translate::openai_to_anthropic::stream::{Translator, message_events},
    wire::{ChunkStream, ProviderError, StreamEvent, Usage},
};

/// `(event name, data)` of every event of an SSE text.
fn events_of(text: &[u8]) -> Vec<(String, Value)> {
    let mut decoder = SseDecoder::new(1 << 20);
    decoder.push(bytes::Bytes::copy_from_slice(text));
    std::iter::from_fn(|| decoder.next_event())
        .map(|e| {
            let e = e.unwrap();
            (e.event.unwrap_or_default(), serde_json::from_str(&e.data).unwrap())
        })
        .collect()
}

fn chunk_stream(items: Vec<Result<StreamEvent, ProviderError>>) -> ChunkStream {
    Box::pin(futures::stream::iter(items))
}

async fn body_text(body: MessagesSseBody) -> Vec<u8> {
    body.boxed().collect().await.unwrap().to_bytes().to_vec()
}

fn fixture_chunks() -> Vec<Result<StreamEvent, ProviderError>> {
    include_str!("../../providers/fixtures/anthropic/inbound_chunks.jsonl")
        .lines()
        .map(|line| Ok(StreamEvent::Data(Bytes::from(line.to_owned()))))
        .collect()
}

#[tokio::test]
async fn openai_chunks_become_anthropic_events_with_text_and_tool_blocks_then_usage() {
    let body = stream::body(chunk_stream(fixture_chunks()));

    let got = events_of(&body_text(body).await);

    let expected = events_of(include_bytes!("../../providers/fixtures/anthropic/inbound_events.sse"));
    assert_eq!(got, expected);
    assert!(
        got.iter().all(|(name, data)| data["type"] == name.as_str()),
        "event names repeat the type"
    );
}

#[tokio::test]
async fn an_upstream_break_mid_stream_ends_with_an_error_event() {
    let mut items: Vec<_> = fixture_chunks().into_iter().take(3).collect();
    items.push(Err(ProviderError::Interrupted("connection reset".into())));

    let got = events_of(&body_text(stream::body(chunk_stream(items))).await);

    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "error"
        ]
    );
    let (_, error) = got.last().unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "api_error");
    assert!(error["error"]["message"].as_str().unwrap().contains("connection reset"));
}

#[tokio::test]
async fn an_overloaded_upstream_mid_stream_reports_overloaded_error() {
    let mut items: Vec<_> = fixture_chunks().into_iter().take(2).collect();
    items.push(Err(ProviderError::Status {
        status: StatusCode::from_u16(529).unwrap(),
        retry_after: None,
        body: Bytes::from_static(br#"{"error":{"message":"Overloaded"}}"#),
    }));

    let got = events_of(&body_text(stream::body(chunk_stream(items))).await);

    assert_eq!(got.last().unwrap().1["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn without_a_usage_chunk_the_metered_usage_is_reported() {
    let chunks: Vec<_> = fixture_chunks().into_iter().take(8).collect();
    let mut items = chunks;
    items.push(Ok(StreamEvent::Usage(Usage {
        input: Tokens(30),
        cached_input: Tokens(5),
        cache_write_input: Tokens(3),
        output: Tokens(9),
        estimated: false,
    })));

    let got = events_of(&body_text(stream::body(chunk_stream(items))).await);

    let (name, delta) = &got[got.len() - 2];
    assert_eq!(name, "message_delta");
    assert_eq!(
        delta["usage"],
        json!({"output_tokens": 9, "input_tokens": 22, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 5})
    );
}

#[test]
fn a_chunk_that_is_not_json_is_an_error() {
    let mut translator = Translator::default();
    assert!(matches!(
        translator.chunk(b"{not json"),
        Err(ProviderError::InvalidResponse(_))
    ));
}

#[test]
fn a_tool_call_continued_after_another_block_is_an_error_not_a_delta_to_a_closed_block() {
    let mut translator = Translator::default();
    let tool = |args: &str| {
        json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": args}}]}}]})
        .to_string()
    };
    let text = json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}}]}).to_string();
    translator.chunk(tool("{\"a\":").as_bytes()).unwrap();
    translator.chunk(text.as_bytes()).unwrap();
    assert!(matches!(
        translator.chunk(tool("1}").as_bytes()),
        Err(ProviderError::InvalidResponse(m)) if m.contains("tool call 0")
    ));
}

#[test]
fn a_whole_message_streams_as_the_events_that_rebuild_it() {
    let message: MessagesResponse =
        serde_json::from_str(include_str!("../../providers/fixtures/anthropic/inbound_message.json")).unwrap();

    let events = events_of(&encode(&message_events(&message)));

    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[2].1["delta"],
        json!({"type": "text_delta", "text": "Checking the forecast."})
    );
    assert_eq!(
        events[5].1["delta"],
        json!({"type": "input_json_delta", "partial_json": "{\"city\":\"Oslo\",\"day\":\"tomorrow\"}"})
    );
    assert_eq!(events[7].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(events[7].1["usage"]["output_tokens"], 46);
}

#[test]
fn encoded_events_name_their_type() {
    let encoded = encode(&[crate::formats::anthropic::Event::MessageStop]);
    assert_eq!(
        &encoded[..],
        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );
}

#[tokio::test]
async fn errors_keep_status_and_headers_in_anthropic_shape() {
    let mut refused = ApiError::bad_request("max_tokens must be at least 1", Some("max_tokens")).into_response();
    refused
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("3"));

    let resp = anthropic_error(refused).await;

    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens must be at least 1"}})
    );
}

#[tokio::test]
async fn each_status_gets_anthropics_error_type() {
    for (error, kind) in [
        (ApiError::NotReady, "overloaded_error"),
        (ApiError::BodyTooLarge { limit: 10 }, "request_too_large"),
        (
            ApiError::ModelNotFound {
                model: "x".into(),
                available: vec![],
            },
            "not_found_error",
        ),
        (
            ApiError::Upstream(ProviderError::Timeout(crate::wire::TimeoutPhase::Total)),
            "timeout_error",
        ),
        (ApiError::Upstream(ProviderError::Interrupted("x".into())), "api_error"),
    ] {
        let resp = anthropic_error(error.into_response()).await;
        let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["error"]["type"], kind);
    }
}

#[tokio::test]
async fn the_body_ends_after_the_error_event() {
    let items = vec![Err(ProviderError::Timeout(crate::wire::TimeoutPhase::Total))];
    let mut body = stream::body(chunk_stream(items)).boxed();
    let mut frames = Vec::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap()
    {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    let events = events_of(&frames.concat());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1["error"]["type"], "timeout_error");
}
