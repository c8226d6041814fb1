//! The `/v1/responses` answer path end to end inside the sidecar: chat chunks framed as the
//! Responses SSE body (event names repeating each type), a whole answer streamed as events, and
//! the honest 404 for stored responses.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{
    stored,
    stream::{self, ResponsesSseBody},
};
use crate::{
    formats::responses::ResponsesRequest,
    sse::SseDecoder,
    wire::{ChunkStream, ProviderError, StreamEvent, Usage},
};

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

fn request() -> ResponsesRequest {
    serde_json::from_value(json!({"model": "m", "input": "hi", "stream": true})).unwrap()
}

fn chunks(items: Vec<Result<StreamEvent, ProviderError>>) -> ChunkStream {
    Box::pin(futures::stream::iter(items))
}

fn data(v: Value) -> Result<StreamEvent, ProviderError> {
    Ok(StreamEvent::Data(Bytes::from(v.to_string())))
}

async fn body_text(body: ResponsesSseBody) -> Vec<u8> {
    body.boxed().collect().await.unwrap().to_bytes().to_vec()
}

#[tokio::test]
async fn a_tool_call_stream_is_framed_with_event_names_and_ends_with_the_metered_usage() {
    let items = vec![
        data(
            json!({"id": "chatcmpl-t", "created": 1, "model": "m", "choices": [{"index": 0,
            "delta": {"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                      "function": {"name": "lookup", "arguments": "{\"q\":"}}]}}]}),
        ),
        data(
            json!({"id": "chatcmpl-t", "created": 1, "model": "m", "choices": [{"index": 0,
            "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "finish_reason": "tool_calls"}]}),
        ),
        Ok(StreamEvent::Usage(Usage {
            input: sluice_crds::Tokens(11),
            output: sluice_crds::Tokens(4),
            ..Usage::default()
        })),
    ];
    let got = events_of(&body_text(stream::body(chunks(items), request())).await);
    assert!(got.iter().all(|(name, data)| data["type"] == name.as_str()));
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(
        got[5].1,
        json!({"type": "response.function_call_arguments.done", "item_id": "fc_t_0", "output_index": 0,
               "name": "lookup", "arguments": "{\"q\":1}", "sequence_number": 5})
    );
    let usage = &got[7].1["response"]["usage"];
    assert_eq!(
        (usage["input_tokens"].as_u64(), usage["output_tokens"].as_u64()),
        (Some(11), Some(4))
    );
}

#[tokio::test]
async fn an_upstream_timeout_mid_stream_is_the_last_event_response_failed() {
    let items = vec![
        data(json!({"id": "chatcmpl-t", "created": 1, "model": "m",
                    "choices": [{"index": 0, "delta": {"content": "Hi"}}]})),
        Err(ProviderError::Timeout(crate::wire::TimeoutPhase::Total)),
    ];
    let got = events_of(&body_text(stream::body(chunks(items), request())).await);
    let (name, last) = got.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(last["response"]["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn asking_for_a_stored_response_is_a_404_that_says_nothing_is_stored() {
    let resp = stored("resp_123");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"].as_str().unwrap().contains("resp_123"));
}

#[tokio::test]
async fn a_passed_through_stream_that_breaks_ends_with_an_error_event_numbered_after_the_last() {
    use super::passthrough::PassedThroughSseBody;
    let items = vec![
        data(json!({"type": "response.created", "sequence_number": 0, "response": {}})),
        data(json!({"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hi"})),
        Err(ProviderError::Interrupted("connection reset".into())),
    ];
    let text = PassedThroughSseBody::new(chunks(items))
        .boxed()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let got = events_of(&text);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["response.created", "response.output_text.delta", "error"]);
    assert_eq!(got[1].1["delta"], "Hi", "passed as it came");
    assert_eq!(got[2].1["sequence_number"], 2);
    assert_eq!(got[2].1["code"], "server_error");
}

#[tokio::test]
async fn a_passed_through_stream_cut_by_the_budget_ends_with_response_failed_holding_the_output_so_far() {
    use super::passthrough::PassedThroughSseBody;
    let message =
        json!({"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []});
    let items = vec![
        data(json!({"type": "response.created", "sequence_number": 0,
                    "response": {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}})),
        data(json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": message})),
        data(
            json!({"type": "response.content_part.added", "sequence_number": 2, "output_index": 0,
                    "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
        data(
            json!({"type": "response.output_text.delta", "sequence_number": 3, "output_index": 0,
                    "content_index": 0, "delta": "Hel"}),
        ),
        data(
            json!({"type": "response.output_text.delta", "sequence_number": 4, "output_index": 0,
                    "content_index": 0, "delta": "lo"}),
        ),
        Err(ProviderError::BudgetSpent("budget b has no money left".into())),
    ];
    let text = PassedThroughSseBody::new(chunks(items))
        .boxed()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let got = events_of(&text);
    let (name, last) = got.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(last["sequence_number"], 5);
    let response = &last["response"];
    assert_eq!(response["id"], "resp_1");
    assert_eq!(response["status"], "failed");
    assert_eq!(response["error"]["code"], "budget_exceeded");
    assert_eq!(response["output"][0]["status"], "incomplete");
    assert_eq!(response["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(response["usage"], Value::Null);
}
