//! The exact-match cache through the real sidecar: hits that never reach the upstream,
//! coalesced identical requests, streamed answers replayed, and what is never cached.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway;

use std::time::Duration;

use futures::StreamExt as _;
use gateway::{Gateway, backend, header, hello, route, sse_data, streamed_content};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::upstream::{self, Behaviour};

const MODEL: &str = "mock-ok";

async fn cached_route() -> Gateway {
    Gateway::start(|url| {
        vec![route(
            "chat",
            json!({"retry": {"attempts": 1}, "cache": {"ttl": "10m", "maxBytes": "1Mi"},
            "backends": [backend("only", url, MODEL,
                json!({"pricing": {"inputPerMTok": "1.00", "outputPerMTok": "2.00"}}))]}),
        )]
    })
    .await
}

fn deterministic() -> Value {
    let mut request = hello("chat");
    request["temperature"] = json!(0);
    request
}

#[tokio::test]
async fn a_second_identical_deterministic_request_is_a_hit_and_never_reaches_the_upstream() {
    let g = cached_route().await;

    let first = g.chat(&deterministic()).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "x-sluice-cache").as_deref(), Some("miss"));
    assert_ne!(header(&first, "x-sluice-cost-usd").as_deref(), Some("0.000000"));
    let first_body: Value = first.json().await.unwrap();

    // The same request with its fields reordered, a user and `0.0`: the same key.
    let same = json!({"temperature": 0.0, "user": "someone", "messages": [{"content": "Say hello", "role": "user"}], "model": "chat"});
    for request in [deterministic(), same] {
        let again = g.chat(&request).await;
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(header(&again, "x-sluice-cache").as_deref(), Some("hit"));
        assert_eq!(header(&again, "x-sluice-attempts").as_deref(), Some("0"));
        assert_eq!(header(&again, "x-sluice-backend").as_deref(), Some("only"));
        assert_eq!(
            header(&again, "x-sluice-cost-usd").as_deref(),
            Some("0.000000"),
            "a hit costs nothing"
        );
        let body: Value = again.json().await.unwrap();
        assert_eq!(body, first_body);
    }
    assert_eq!(g.upstream.count(MODEL), 1);
    let config = g.config().await;
    assert_eq!(config["state"]["routes"][0]["cache"]["hits"], 2);
}

#[tokio::test]
async fn twenty_identical_concurrent_requests_make_one_upstream_call() {
    let g = cached_route().await;
    // A slow answer keeps the first request in flight while the others arrive.
    g.upstream.set_delay(MODEL, Duration::from_millis(500));
    let mut request = deterministic();
    request["seed"] = json!(42);

    let answers: Vec<(StatusCode, Option<String>, Value)> = futures::stream::iter(0..20)
        .map(|_| async {
            let response = g.chat(&request).await;
            let status = response.status();
            let cache = header(&response, "x-sluice-cache");
            (status, cache, response.json().await.unwrap())
        })
        .buffer_unordered(20)
        .collect()
        .await;

    assert!(answers.iter().all(|(s, _, _)| *s == StatusCode::OK));
    assert!(
        answers.iter().all(|(_, _, body)| *body == answers[0].2),
        "every client gets the one answer"
    );
    let misses = answers.iter().filter(|(_, c, _)| c.as_deref() == Some("miss")).count();
    assert_eq!(misses, 1);
    assert_eq!(g.upstream.count(MODEL), 1);
}

#[tokio::test]
async fn non_deterministic_requests_are_never_cached() {
    let g = cached_route().await;
    let mut warm = hello("chat");
    warm["temperature"] = json!(0.7);
    for request in [hello("chat"), hello("chat"), warm.clone(), warm] {
        let response = g.chat(&request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-sluice-cache").as_deref(), Some("bypass"));
    }
    assert_eq!(g.upstream.count(MODEL), 4);
}

#[tokio::test]
async fn the_client_can_bypass_the_cache() {
    let g = cached_route().await;
    assert_eq!(
        header(&g.chat(&deterministic()).await, "x-sluice-cache").as_deref(),
        Some("miss")
    );

    let response = g.chat_with(&deterministic(), &[("x-sluice-cache", "bypass")]).await;

    assert_eq!(header(&response, "x-sluice-cache").as_deref(), Some("bypass"));
    assert_eq!(g.upstream.count(MODEL), 2);
}

#[tokio::test]
async fn a_streamed_answer_is_cached_and_replayed_as_a_stream_or_a_document() {
    let g = cached_route().await;
    let mut streamed = deterministic();
    streamed["stream"] = json!(true);

    let first = g.chat(&streamed).await;
    assert_eq!(header(&first, "x-sluice-cache").as_deref(), Some("miss"));
    let first_text = first.text().await.unwrap();
    let replay = g.chat(&streamed).await;
    assert_eq!(header(&replay, "x-sluice-cache").as_deref(), Some("hit"));
    assert!(
        header(&replay, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let replay_text = replay.text().await.unwrap();

    assert_eq!(
        sse_data(&replay_text),
        sse_data(&first_text),
        "the same events, [DONE] included"
    );
    assert_eq!(streamed_content(&replay_text), upstream::OK_CONTENT);

    // A client asking for usage gets the usage chunk the upstream reported.
    streamed["stream_options"] = json!({"include_usage": true});
    let with_usage = g.chat(&streamed).await.text().await.unwrap();
    let data = sse_data(&with_usage);
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["prompt_tokens"], upstream::PROMPT_TOKENS);

    // The plain request is the same key: the stream assembled into one document.
    let plain = g.chat(&deterministic()).await;
    assert_eq!(header(&plain, "x-sluice-cache").as_deref(), Some("hit"));
    let body: Value = plain.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], upstream::OK_CONTENT);
    assert_eq!(g.upstream.count(MODEL), 1);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let g = cached_route().await;
    g.upstream
        .script(MODEL, [Behaviour::Fail(StatusCode::INTERNAL_SERVER_ERROR)]);

    assert_eq!(g.chat(&deterministic()).await.status(), StatusCode::BAD_GATEWAY);
    let response = g.chat(&deterministic()).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-cache").as_deref(), Some("miss"));
    assert_eq!(g.upstream.count(MODEL), 2);
}
