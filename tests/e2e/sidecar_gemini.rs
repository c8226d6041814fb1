//! The real `sluice-sidecar` binary serving OpenAI clients from a Gemini backend (the in-test
//! Gemini upstream): plain and streamed answers, function calls with their thought signatures,
//! safety stops and blocks, embeddings, and every failure the upstream can produce.
//!
//! Needs `cargo build -p sluice-sidecar` first (see `tests/support/sidecar.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod provider;

use std::time::Duration;

use base64::Engine as _;
use provider::{Backend, Harness, assert_openai_error, header, hello, streamed, weather_tool};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::sse::{openai_events, sse_data};
use sluice_tests::upstream::gemini::{self, MODEL_VERSION, TOOL_SIGNATURE};
use sluice_tests::upstream::{
    CACHED_TOKENS, COMPLETION_TOKENS, OK_CONTENT, OK_PIECES, PROMPT_TOKENS, RETRY_AFTER_SECS, TOOL_ANSWER_PREFIX,
    TOOL_NAME, TOOL_PREAMBLE, Wire, embedding_vector,
};

/// The API key the routes' Secret holds.
const SECRET: &str = "AIza-test-secret-123";
/// Every route's backend.
const GEMINI: Backend = Backend {
    name: "gemini",
    provider: "gemini",
    wire: Wire::Gemini,
    key: SECRET,
};

/// Route name (its one model alias) → the upstream model that picks the behaviour.
const ROUTES: &[(&str, &str)] = &[
    ("chat", "mock-ok"),
    ("tool", "mock-tool"),
    ("safety", "mock-safety"),
    ("blocked", "mock-blocked"),
    ("fails-400", "mock-400"),
    ("fails-429", "mock-429"),
    ("fails-500", "mock-500"),
    ("fails-503", "mock-503"),
    ("cut-stream", "mock-cut-stream"),
    ("embed", "mock-ok"),
];

async fn harness() -> Harness {
    Harness::start(&GEMINI, ROUTES).await
}

#[tokio::test]
async fn chat_is_sent_as_generate_content_and_answered_as_an_openai_completion() {
    let h = harness().await;

    let response = h.chat(&hello("chat")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend"), Some("gemini"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["id"], "chatcmpl-mock-response-1");
    assert_eq!(body["model"], MODEL_VERSION);
    assert_eq!(
        body["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": OK_CONTENT}, "logprobs": null, "finish_reason": "stop"}])
    );
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
               "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS, "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS}})
    );

    let seen = h.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1beta/models/mock-ok:generateContent");
    assert_eq!(seen[0].header("x-goog-api-key"), Some(SECRET));
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "the key goes in x-goog-api-key only"
    );
    assert_eq!(
        seen[0].body,
        json!({"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
               "systemInstruction": {"parts": [{"text": "Be brief."}]}})
    );
}

#[tokio::test]
async fn streamed_chat_uses_sse_and_becomes_openai_chunks_with_usage_when_asked() {
    let h = harness().await;
    let mut request = streamed(hello("chat"));
    request["stream_options"] = json!({"include_usage": true});
    request["max_tokens"] = json!(64);
    request["temperature"] = json!(0.5);

    let response = h.chat(&request).await;

    assert_eq!(response.status(), StatusCode::OK);
    let (chunks, done) = openai_events(&response.text().await.unwrap()).unwrap();
    assert!(done);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(pieces, OK_PIECES);
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(last["usage"]["completion_tokens"], COMPLETION_TOKENS);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], CACHED_TOKENS);

    let seen = h.upstream.requests();
    assert_eq!(seen[0].path, "/v1beta/models/mock-ok:streamGenerateContent?alt=sse");
    assert_eq!(
        seen[0].body["generationConfig"],
        json!({"temperature": 0.5, "maxOutputTokens": 64})
    );
}

#[tokio::test]
async fn a_function_call_round_trip_keeps_its_thought_signature() {
    let h = harness().await;
    let mut request = json!({"model": "tool", "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": weather_tool(), "tool_choice": "required"});

    let first: Value = h.chat(&request).await.json().await.unwrap();

    assert_eq!(first["choices"][0]["finish_reason"], "tool_calls");
    let message = &first["choices"][0]["message"];
    assert_eq!(message["content"], TOOL_PREAMBLE);
    let call = &message["tool_calls"][0];
    assert_eq!(call["function"]["name"], TOOL_NAME);
    assert_eq!(call["extra_content"]["google"]["thought_signature"], TOOL_SIGNATURE);
    let sent = &h.upstream.requests()[0].body;
    assert_eq!(sent["tools"][0]["functionDeclarations"][0]["name"], TOOL_NAME);
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["required"],
        json!(["city"])
    );
    assert_eq!(sent["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));

    request["messages"].as_array_mut().unwrap().extend([
        message.clone(),
        json!({"role": "tool", "tool_call_id": call["id"], "content": "18 C and sunny"}),
    ]);
    let second = h.chat(&request).await;

    assert_eq!(
        second.status(),
        StatusCode::OK,
        "the upstream refuses a call without its signature"
    );
    let second: Value = second.json().await.unwrap();
    assert_eq!(
        second["choices"][0]["message"]["content"],
        format!("{TOOL_ANSWER_PREFIX}18 C and sunny")
    );
    let sent = &h.upstream.requests()[1].body;
    assert_eq!(sent["contents"][1]["role"], "model");
    assert_eq!(
        sent["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": TOOL_NAME, "response": {"result": "18 C and sunny"}}}]})
    );
}

#[tokio::test]
async fn a_streamed_function_call_arrives_whole_with_id_name_and_arguments() {
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
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["id"], "call_mock-response-1_0");
    assert_eq!(calls[0]["function"]["name"], TOOL_NAME);
    assert_eq!(
        serde_json::from_str::<Value>(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn a_safety_stop_finishes_with_content_filter_plain_and_streamed() {
    let h = harness().await;

    let plain: Value = h.chat(&hello("safety")).await.json().await.unwrap();
    assert_eq!(plain["choices"][0]["finish_reason"], "content_filter");

    let (chunks, done) = openai_events(&h.chat(&streamed(hello("safety"))).await.text().await.unwrap()).unwrap();
    assert!(done);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "content_filter");
}

#[tokio::test]
async fn a_blocked_prompt_is_a_400_content_filter_plain_and_streamed() {
    let h = harness().await;
    for request in [hello("blocked"), streamed(hello("blocked"))] {
        let response = h.chat(&request).await;

        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{request}");
        let body: Value = response.json().await.unwrap();
        assert_openai_error(&body, "invalid_request_error", Some("content_filter"));
    }
}

#[tokio::test]
async fn upstream_errors_map_to_the_sidecar_contract() {
    let h = harness().await;

    let bad = h.chat(&hello("fails-400")).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.unwrap();
    assert_openai_error(&body, "invalid_request_error", Some("invalid_argument"));
    assert_eq!(body["error"]["message"], gemini::BAD_REQUEST_MESSAGE);

    let limited = h.chat(&hello("fails-429")).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&limited, "retry-after"),
        Some(RETRY_AFTER_SECS),
        "from RetryInfo"
    );

    for model in ["fails-500", "fails-503"] {
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
async fn a_stream_that_breaks_mid_way_ends_with_an_error_event() {
    let h = harness().await;

    let response = h.chat(&streamed(hello("cut-stream"))).await;

    assert_eq!(response.status(), StatusCode::OK);
    let text = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the stream must end, not hang")
        .unwrap();
    let data = sse_data(&text);
    let error_at = data
        .iter()
        .position(|d| d.contains("\"error\""))
        .expect("an error event");
    let error: Value = serde_json::from_str(&data[error_at]).unwrap();
    assert_openai_error(&error, "upstream_error", Some("upstream_error"));
    assert!(data[error_at + 1..].iter().all(|d| d == "[DONE]"));
    assert!(
        !data[..error_at].iter().any(|d| d.contains("finish_reason\":\"stop")),
        "a cut answer must not look finished:\n{text}"
    );
}

#[tokio::test]
async fn embeddings_use_embed_content_for_one_text_and_batch_for_several() {
    let h = harness().await;

    let one: Value = h
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": "hello world", "dimensions": 4}),
        )
        .await
        .json()
        .await
        .unwrap();
    let many = h
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": ["hello world", "bye"], "encoding_format": "float"}),
        )
        .await;

    assert_eq!(one["object"], "list");
    assert_eq!(one["data"][0]["embedding"], json!(embedding_vector(0, 4)));
    assert_eq!(many.status(), StatusCode::OK);
    assert_eq!(header(&many, "x-sluice-backend"), Some("gemini"));
    let many: Value = many.json().await.unwrap();
    assert_eq!(many["data"][1]["index"], 1);
    assert_eq!(many["data"][1]["embedding"], json!(embedding_vector(1, 8)));
    assert!(many["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let paths: Vec<String> = h.upstream.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/v1beta/models/mock-ok:embedContent",
            "/v1beta/models/mock-ok:batchEmbedContents"
        ]
    );
}

#[tokio::test]
async fn base64_embeddings_are_little_endian_floats() {
    let h = harness().await;

    let body: Value = h
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": ["a"], "encoding_format": "base64"}),
        )
        .await
        .json()
        .await
        .unwrap();

    let expected: Vec<u8> = embedding_vector(0, 8).iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(
        body["data"][0]["embedding"],
        json!(base64::engine::general_purpose::STANDARD.encode(&expected))
    );
}
