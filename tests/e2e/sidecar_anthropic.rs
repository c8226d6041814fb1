//! The real `sluice-sidecar` binary serving OpenAI clients from an Anthropic backend (the
//! in-test Anthropic upstream): plain and streamed answers, tool calls both ways, usage with
//! cache reads and writes, and every failure the upstream can produce.
//!
//! Needs `cargo build -p sluice-sidecar` first (see `tests/support/sidecar.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod provider;

use std::time::Duration;

use provider::{Backend, Harness, assert_openai_error, header, hello, streamed, weather_tool};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::sse::{openai_events, sse_data};
use sluice_tests::upstream::anthropic::{self, CACHE_CREATION_TOKENS, CACHE_READ_TOKENS, INPUT_TOKENS, OUTPUT_TOKENS};
use sluice_tests::upstream::{
    OK_CONTENT, OK_PIECES, RETRY_AFTER_SECS, TOOL_ANSWER_PREFIX, TOOL_NAME, TOOL_PREAMBLE, Wire,
};

/// The API key the routes' Secret holds.
const SECRET: &str = "sk-ant-test-secret-123";
/// Every route's backend.
const CLAUDE: Backend = Backend {
    name: "claude",
    provider: "anthropic",
    wire: Wire::Anthropic,
    key: SECRET,
};

/// Route name (its one model alias) → the upstream model that picks the behaviour.
const ROUTES: &[(&str, &str)] = &[
    ("chat", "mock-ok"),
    ("tool", "mock-tool"),
    ("fails-400", "mock-400"),
    ("fails-401", "mock-401"),
    ("fails-429", "mock-429"),
    ("fails-500", "mock-500"),
    ("fails-529", "mock-529"),
    ("overloaded-early", "mock-overloaded-early"),
    ("cut-stream", "mock-cut-stream"),
    ("error-event", "mock-error-event"),
    ("stall", "mock-stall"),
];

async fn harness() -> Harness {
    Harness::start(&CLAUDE, ROUTES).await
}

#[tokio::test]
async fn chat_is_sent_as_an_anthropic_message_and_answered_as_an_openai_completion() {
    let h = harness().await;

    let response = h.chat(&hello("chat")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend"), Some("claude"));
    assert_eq!(header(&response, "x-sluice-route"), Some("team-a/chat"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["id"], "chatcmpl-msg_mock_1");
    assert_eq!(body["model"], "mock-ok");
    assert_eq!(
        body["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": OK_CONTENT}, "logprobs": null, "finish_reason": "stop"}])
    );
    let prompt = INPUT_TOKENS + CACHE_READ_TOKENS + CACHE_CREATION_TOKENS;
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": prompt, "completion_tokens": OUTPUT_TOKENS, "total_tokens": prompt + OUTPUT_TOKENS,
               "prompt_tokens_details": {"cached_tokens": CACHE_READ_TOKENS, "cache_creation_tokens": CACHE_CREATION_TOKENS}})
    );

    let seen = h.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(seen[0].header("x-api-key"), Some(SECRET));
    assert_eq!(seen[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen[0].header("authorization"), None, "the key goes in x-api-key only");
    assert_eq!(
        seen[0].body,
        json!({"model": "mock-ok", "max_tokens": 4096, "system": "Be brief.",
               "messages": [{"role": "user", "content": "Say hello"}]})
    );
}

#[tokio::test]
async fn streamed_chat_becomes_openai_chunks_ending_with_done() {
    let h = harness().await;

    let response = h.chat(&streamed(hello("chat"))).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-type").is_some_and(|t| t.starts_with("text/event-stream")));
    let (chunks, done) = openai_events(&response.text().await.unwrap()).unwrap();
    assert!(done, "the stream ends with [DONE]");
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let pieces: Vec<&str> = chunks[1..=OK_PIECES.len()]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(pieces, OK_PIECES);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        chunks.len(),
        OK_PIECES.len() + 2,
        "role, pieces, finish: no usage chunk unasked"
    );
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], "chatcmpl-msg_mock_1");
        assert!(chunk.get("usage").is_none(), "{chunk}");
    }
    assert_eq!(h.last_sent()["stream"], true);
}

#[tokio::test]
async fn streamed_chat_with_include_usage_ends_with_the_usage_chunk() {
    let h = harness().await;
    let mut request = streamed(hello("chat"));
    request["stream_options"] = json!({"include_usage": true});

    let (chunks, done) = openai_events(&h.chat(&request).await.text().await.unwrap()).unwrap();

    assert!(done);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"]["prompt_tokens"],
        INPUT_TOKENS + CACHE_READ_TOKENS + CACHE_CREATION_TOKENS
    );
    assert_eq!(last["usage"]["completion_tokens"], OUTPUT_TOKENS);
    assert_eq!(
        last["usage"]["prompt_tokens_details"]["cached_tokens"],
        CACHE_READ_TOKENS
    );
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["usage"].is_null()));
}

#[tokio::test]
async fn a_tool_call_round_trip_reaches_anthropic_as_tool_use_and_tool_result() {
    let h = harness().await;
    let mut request = json!({"model": "tool", "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": weather_tool(), "tool_choice": "auto"});

    let first: Value = h.chat(&request).await.json().await.unwrap();

    assert_eq!(first["choices"][0]["finish_reason"], "tool_calls");
    let message = &first["choices"][0]["message"];
    assert_eq!(message["content"], TOOL_PREAMBLE);
    let call = &message["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], TOOL_NAME);
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    let sent = h.last_sent();
    assert_eq!(sent["tools"][0]["name"], TOOL_NAME);
    assert_eq!(sent["tools"][0]["input_schema"]["required"], json!(["city"]));
    assert_eq!(sent["tool_choice"], json!({"type": "auto"}));

    request["messages"].as_array_mut().unwrap().extend([
        message.clone(),
        json!({"role": "tool", "tool_call_id": call["id"], "content": "18 C and sunny"}),
    ]);
    let second: Value = h.chat(&request).await.json().await.unwrap();

    assert_eq!(
        second["choices"][0]["message"]["content"],
        format!("{TOOL_ANSWER_PREFIX}18 C and sunny")
    );
    let sent = h.last_sent();
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "content": [
            {"type": "text", "text": TOOL_PREAMBLE},
            {"type": "tool_use", "id": call["id"], "name": TOOL_NAME, "input": {"city": "Paris"}}]})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18 C and sunny"}]})
    );
}

#[tokio::test]
async fn a_streamed_tool_call_arrives_as_indexed_argument_deltas() {
    let h = harness().await;
    let request = json!({"model": "tool", "stream": true, "tools": weather_tool(),
        "messages": [{"role": "user", "content": "Weather in Paris?"}]});

    let (chunks, done) = openai_events(&h.chat(&request).await.text().await.unwrap()).unwrap();

    assert!(done);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .flat_map(|t| t.as_array().unwrap())
        .collect();
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["id"], "toolu_mock_1");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], TOOL_NAME);
    assert!(calls[1..].iter().all(|c| c["index"] == 0 && c.get("id").is_none()));
    let arguments: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn client_errors_keep_their_status_with_an_openai_error_body() {
    let h = harness().await;
    for (model, status, code) in [
        ("fails-400", StatusCode::BAD_REQUEST, "invalid_request_error"),
        ("fails-401", StatusCode::UNAUTHORIZED, "authentication_error"),
    ] {
        let response = h.chat(&hello(model)).await;

        assert_eq!(response.status(), status, "{model}");
        let body: Value = response.json().await.unwrap();
        assert_openai_error(&body, "invalid_request_error", Some(code));
    }
    let body: Value = h.chat(&hello("fails-400")).await.json().await.unwrap();
    assert_eq!(body["error"]["message"], anthropic::BAD_REQUEST_MESSAGE);
}

#[tokio::test]
async fn rate_limits_are_429_with_retry_after_and_overloads_are_502() {
    let h = harness().await;

    let limited = h.chat(&hello("fails-429")).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), Some(RETRY_AFTER_SECS));
    assert_openai_error(
        &limited.json().await.unwrap(),
        "rate_limit_error",
        Some("upstream_rate_limited"),
    );

    for model in ["fails-500", "fails-529"] {
        let response = h.chat(&hello(model)).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{model}");
        assert_openai_error(
            &response.json().await.unwrap(),
            "upstream_error",
            Some("upstream_error"),
        );
    }
}

#[tokio::test]
async fn an_error_event_before_any_content_is_an_error_status_not_a_stream() {
    let h = harness().await;

    let response = h.chat(&streamed(hello("overloaded-early"))).await;

    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "upstream_error", Some("upstream_error"));
    assert!(body["error"]["message"].as_str().unwrap().contains("529"), "{body}");
}

#[tokio::test]
async fn a_stream_that_breaks_or_errs_mid_way_ends_with_an_error_event() {
    let h = harness().await;
    for model in ["cut-stream", "error-event"] {
        let response = h.chat(&streamed(hello(model))).await;
        assert_eq!(response.status(), StatusCode::OK, "{model}");

        let text = tokio::time::timeout(Duration::from_secs(10), response.text())
            .await
            .expect("the stream must end, not hang")
            .unwrap();

        let data = sse_data(&text);
        let error_at = data
            .iter()
            .position(|d| d.contains("\"error\""))
            .unwrap_or_else(|| panic!("{model}: no error event in\n{text}"));
        assert!(error_at >= 2, "{model}: content came first");
        let error: Value = serde_json::from_str(&data[error_at]).unwrap();
        assert_openai_error(&error, "upstream_error", Some("upstream_error"));
        assert!(
            data[error_at + 1..].iter().all(|d| d == "[DONE]"),
            "{model}: nothing after the error"
        );
        let content: String = data[..error_at]
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
            .collect();
        assert!(
            OK_CONTENT.starts_with(&content) && content.len() < OK_CONTENT.len(),
            "{model}: {content:?}"
        );
    }
}

#[tokio::test]
async fn embeddings_from_an_anthropic_backend_are_a_clear_400() {
    let h = harness().await;

    let response = h
        .post("/v1/embeddings", &json!({"model": "chat", "input": "hello"}))
        .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "invalid_request_error", Some("unsupported_for_backend"));
    assert!(
        body["error"]["message"].as_str().unwrap().contains("no embeddings API"),
        "{body}"
    );
    assert!(h.upstream.requests().is_empty());
}

#[tokio::test]
async fn a_request_anthropic_cannot_take_is_a_400_before_any_upstream_call() {
    let h = harness().await;
    let request = json!({"model": "chat", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]});

    let response = h.chat(&request).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_openai_error(
        &response.json().await.unwrap(),
        "invalid_request_error",
        Some("unsupported_for_backend"),
    );
    assert!(h.upstream.requests().is_empty());
}

#[tokio::test]
async fn a_stalled_upstream_times_out_with_504() {
    let h = harness().await;

    let response = h.chat(&hello("stall")).await;

    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}
