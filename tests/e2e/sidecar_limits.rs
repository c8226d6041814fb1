//! Limits through the real sidecar: route and per-user token buckets with true `Retry-After`,
//! token limits corrected by real usage, and the per-backend concurrency priority queue.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use gateway::{Gateway, backend, header, hello, route};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MODEL: &str = "mock-ok";

async fn one_backend(spec: Value, backend_extra: Value) -> Gateway {
    Gateway::start(move |url| {
        let mut spec_with_backend = json!({"backends": [backend("only", url, MODEL, backend_extra)]});
        spec_with_backend
            .as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        vec![route("chat", spec_with_backend)]
    })
    .await
}

#[track_caller]
fn retry_after(response: &reqwest::Response) -> u64 {
    header(response, "retry-after")
        .expect("a 429 carries Retry-After")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_burst_of_100_under_60_per_minute_lets_exactly_60_through_and_says_when_to_retry() {
    let g = one_backend(json!({"rateLimit": {"requestsPerMinute": 60}}), json!({})).await;

    let started = Instant::now();
    let answers: Vec<(StatusCode, Option<String>, Value)> = futures::stream::iter(0..100)
        .map(|_| async {
            let response = g.chat(&hello("chat")).await;
            let status = response.status();
            let retry = header(&response, "retry-after");
            (status, retry, response.json().await.unwrap())
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let burst = started.elapsed();

    let ok = answers.iter().filter(|(s, _, _)| *s == StatusCode::OK).count();
    // The bucket refills one request per second: only a burst slower than a second could let
    // one more through, and the bound says exactly how many.
    let refilled = burst.as_secs() as usize;
    assert!((60..=60 + refilled).contains(&ok), "{ok} admitted in {burst:?}");
    for (status, retry, body) in answers.iter().filter(|(s, _, _)| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        let secs: u64 = retry.as_deref().unwrap().parse().unwrap();
        assert!((1..=60).contains(&secs), "{secs}");
    }
    assert_eq!(g.upstream.count(MODEL), ok, "refused requests never reach the upstream");

    // The Retry-After is true: after waiting it, a request passes.
    let refused = g.chat(&hello("chat")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(Duration::from_secs(retry_after(&refused))).await;
    assert_eq!(g.chat(&hello("chat")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_limits_count_the_real_usage_not_the_estimate() {
    let g = one_backend(json!({"rateLimit": {"tokensPerMinute": 100}}), json!({})).await;
    // Each request estimates a handful of tokens (a short prompt, max_tokens 1), but the
    // upstream reports 62 used: 12 prompt + 50 completion.
    g.upstream.set_usage(MODEL, 12, 50);
    let mut request = hello("chat");
    request["max_tokens"] = json!(1);

    let first = g.chat(&request).await;
    let second = g.chat(&request).await;
    let third = g.chat(&request).await;

    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    // 100 − 2 × 62 = −24: estimates alone would have admitted over twenty of these.
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    let secs = retry_after(&third);
    // 28 tokens short at 100/min: 16.8 s, less whatever refilled while the test ran.
    assert!((1..=17).contains(&secs), "{secs}s");
    let body: Value = third.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("tokens per minute"),
        "{body}"
    );
    assert_eq!(g.upstream.count(MODEL), 2);
}

#[tokio::test]
async fn an_upstream_claiming_absurd_usage_blocks_a_token_limit_for_an_hour_at_most() {
    let g = one_backend(json!({"rateLimit": {"tokensPerMinute": 10}}), json!({})).await;
    g.upstream.set_usage(MODEL, 0, u64::MAX / 2);
    let mut request = hello("chat");
    request["max_tokens"] = json!(1);

    assert_eq!(g.chat(&request).await.status(), StatusCode::OK);
    let refused = g.chat(&request).await;

    // The debt stops at an hour's worth of the limit: the wait is that hour plus this request's
    // own estimate (at most a minute's worth), not ages, and not an overflow that drops the
    // connection.
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let secs = retry_after(&refused);
    assert!((3_590..=3_661).contains(&secs), "{secs}s");
    assert_eq!(g.upstream.count(MODEL), 1);
}

#[tokio::test]
async fn per_user_limits_isolate_users() {
    let g = one_backend(json!({"perUser": {"requestsPerMinute": 2}}), json!({})).await;
    let as_bob = |mut body: Value| {
        body["user"] = json!("bob");
        body
    };

    for _ in 0..2 {
        let response = g.chat_with(&hello("chat"), &[("x-sluice-user", "alice")]).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = g.chat_with(&hello("chat"), &[("x-sluice-user", "alice")]).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=30).contains(&retry_after(&refused)));
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("alice"), "{body}");

    // Bob (named by the body's `user`) has his own buckets.
    for _ in 0..2 {
        assert_eq!(g.chat(&as_bob(hello("chat"))).await.status(), StatusCode::OK);
    }
    assert_eq!(
        g.chat(&as_bob(hello("chat"))).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn requests_per_day_refuse_until_the_next_one_is_due() {
    let g = one_backend(json!({"perUser": {"requestsPerDay": 2}}), json!({})).await;
    let headers = [("x-sluice-user", "carol")];
    assert_eq!(g.chat_with(&hello("chat"), &headers).await.status(), StatusCode::OK);
    assert_eq!(g.chat_with(&hello("chat"), &headers).await.status(), StatusCode::OK);

    let refused = g.chat_with(&hello("chat"), &headers).await;

    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // Two a day: the next is due twelve hours after the burst.
    let secs = retry_after(&refused);
    assert!((12 * 3600 - 60..=12 * 3600).contains(&secs), "{secs}");
}

#[tokio::test]
async fn the_priority_queue_serves_priority_0_before_9() {
    let g = one_backend(json!({}), json!({"limits": {"maxConcurrency": 1}})).await;
    g.upstream.hold(MODEL);
    let ask = |tag: &str| json!({"model": "chat", "messages": [{"role": "user", "content": tag}]});
    let send = |tag: &'static str, priority: &'static str| {
        let (http, url) = (g.http.clone(), g.sidecar.url("/v1/chat/completions"));
        let body = ask(tag);
        tokio::spawn(async move {
            let response = http
                .post(url)
                .header("x-sluice-priority", priority)
                .json(&body)
                .send()
                .await
                .unwrap();
            response.status()
        })
    };

    // The first request takes the only slot and is held at the upstream.
    let holder = send("first", "5");
    g.wait_for_upstream(MODEL, 1).await;
    let low = send("low", "9");
    g.wait_for_state("chat", "only", "one queued", |s| s["concurrency"]["queued"] == 1)
        .await;
    let high = send("high", "0");
    g.wait_for_state("chat", "only", "two queued", |s| s["concurrency"]["queued"] == 2)
        .await;

    g.upstream.release(MODEL, 3);
    for task in [holder, low, high] {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let order: Vec<String> = g
        .upstream
        .requests()
        .iter()
        .map(|r| r.body["messages"][0]["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["first", "high", "low"]);
}

#[tokio::test]
async fn a_full_backend_rate_moves_requests_to_the_next_backend() {
    let g = Gateway::start(|url| {
        vec![route(
            "chat",
            json!({"backends": [
            backend("small", url, "mock-ok-small", json!({"priority": 0, "limits": {"requestsPerMinute": 3}})),
            backend("big", url, "mock-ok-big", json!({"priority": 1}))]}),
        )]
    })
    .await;

    let backends: Vec<Option<String>> = futures::stream::iter(0..5)
        .then(|_| async { header(&g.chat(&hello("chat")).await, "x-sluice-backend") })
        .collect()
        .await;

    let names: Vec<&str> = backends.iter().map(|b| b.as_deref().unwrap()).collect();
    assert_eq!(names, ["small", "small", "small", "big", "big"]);
}
