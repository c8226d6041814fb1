//! Choosing backends through the real sidecar: weighted, least-latency and least-cost
//! strategies, content rules and the request constraints, and the live state in `/config`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway;

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use gateway::{Gateway, backend, header, hello, route};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Sends `n` requests, `concurrency` at a time, and counts the backends that answered.
async fn backends_of(g: &Gateway, n: usize, concurrency: usize, request: &Value) -> HashMap<String, usize> {
    let answers: Vec<Option<String>> = futures::stream::iter(0..n)
        .map(|_| async {
            let response = g.chat(request).await;
            assert_eq!(response.status(), StatusCode::OK);
            header(&response, "x-sluice-backend")
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut counts = HashMap::new();
    for name in answers {
        *counts.entry(name.unwrap()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn weighted_choice_over_10000_requests_matches_the_weights() {
    let g = Gateway::start(|url| {
        vec![route(
            "chat",
            json!({"strategy": "weighted", "backends": [
            backend("a", url, "mock-ok-a", json!({"weight": 3})),
            backend("b", url, "mock-ok-b", json!({"weight": 1}))]}),
        )]
    })
    .await;

    let counts = backends_of(&g, 10_000, 8, &hello("chat")).await;

    // Stated tolerance: 1% of the requests. Smooth weighted round robin is exact over every
    // multiple of the total weight, concurrency or not, so in fact 7500 and 2500.
    let (a, b) = (counts["a"] as i64, counts["b"] as i64);
    assert!((a - 7_500).abs() <= 100 && (b - 2_500).abs() <= 100, "{counts:?}");
    assert_eq!((a, b), (7_500, 2_500));
    assert_eq!(g.upstream.count("mock-ok-a"), 7_500);
}

#[tokio::test]
async fn least_latency_prefers_the_faster_backend() {
    let g = Gateway::start(|url| {
        vec![route(
            "chat",
            json!({"strategy": "least-latency", "backends": [
            backend("slow", url, "mock-ok-slow", json!({})),
            backend("fast", url, "mock-ok-fast", json!({}))]}),
        )]
    })
    .await;
    // A full second: far beyond any hiccup of a loaded machine, so the fast one stays faster.
    g.upstream.set_delay("mock-ok-slow", Duration::from_secs(1));

    let counts = backends_of(&g, 20, 1, &hello("chat")).await;

    // Each is measured once, then the fast one wins every comparison (a loaded machine may
    // slow a few answers; a bound rather than an exact count keeps the test honest).
    assert!(counts.get("fast").copied().unwrap_or(0) >= 15, "{counts:?}");
    let state = g.backend_state("chat", "slow").await;
    assert!(state["latencyEwmaMs"].as_f64().unwrap() >= 800.0, "{state}");
}

fn priced_backends(url: &str) -> Value {
    json!([
        backend(
            "premium",
            url,
            "mock-ok-premium",
            json!({"pricing": {"inputPerMTok": "5.00", "outputPerMTok": "15.00"}})
        ),
        backend(
            "mid",
            url,
            "mock-ok-mid",
            json!({"pricing": {"inputPerMTok": "1.00", "outputPerMTok": "2.00"}})
        ),
        backend(
            "cheap",
            url,
            "mock-ok-cheap",
            json!({"pricing": {"inputPerMTok": "0.10", "outputPerMTok": "0.40"}})
        ),
    ])
}

#[tokio::test]
async fn least_cost_picks_the_cheapest_allowed_backend() {
    let g = Gateway::start(|url| {
        vec![route("chat", json!({"strategy": "least-cost", "backends": priced_backends(url),
            "rules": [{"when": {"header": {"name": "x-sluice-tier", "value": "quality"}}, "backends": ["premium", "mid"]}]}))]
    })
    .await;

    let response = g.chat(&hello("chat")).await;
    assert_eq!(header(&response, "x-sluice-backend").as_deref(), Some("cheap"));

    // The rule allows only premium and mid: the cheaper of the two.
    let response = g.chat_with(&hello("chat"), &[("x-sluice-tier", "quality")]).await;
    assert_eq!(header(&response, "x-sluice-backend").as_deref(), Some("mid"));

    // A cost cap below every estimate leaves no backend: 503, naming the filter.
    let response = g
        .chat_with(&hello("chat"), &[("x-sluice-max-cost-usd", "0.000001")])
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_backend_available");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-sluice-max-cost-usd"),
        "{body}"
    );
}

#[tokio::test]
async fn a_cost_cap_filters_out_the_backends_it_excludes() {
    let g = Gateway::start(|url| {
        vec![route(
            "chat",
            json!({"strategy": "priority", "backends": priced_backends(url)}),
        )]
    })
    .await;
    let mut request = hello("chat");
    request["max_tokens"] = json!(1000);

    // premium: 1000 × $15/M ≈ $0.015; mid ≈ $0.002; cheap ≈ $0.0004.
    let response = g.chat_with(&request, &[("x-sluice-max-cost-usd", "0.005")]).await;
    assert_eq!(header(&response, "x-sluice-backend").as_deref(), Some("mid"));
    let response = g.chat(&request).await;
    assert_eq!(header(&response, "x-sluice-backend").as_deref(), Some("premium"));
}

#[tokio::test]
async fn rules_route_keyword_and_short_prompts_to_the_cheap_backend() {
    let g = Gateway::start(|url| {
        vec![route(
            "chat",
            json!({"backends": [
            backend("premium", url, "mock-ok-premium", json!({"priority": 0})),
            backend("cheap", url, "mock-ok-cheap", json!({"priority": 1}))],
            "rules": [
                {"when": {"anyKeyword": ["translate", "summarize"]}, "backends": ["cheap"]},
                {"when": {"maxPromptTokens": 10}, "backends": ["cheap"]}
            ]}),
        )]
    })
    .await;
    let ask = |text: &str| json!({"model": "chat", "messages": [{"role": "user", "content": text}]});
    let long = "Explain, with examples and at length, how a gateway balances requests across providers.";

    for (text, expected) in [
        (
            "Please translate this paragraph into French, keeping every nuance of the original text.",
            "cheap",
        ),
        ("Hi", "cheap"),
        (long, "premium"),
    ] {
        let response = g.chat(&ask(text)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "x-sluice-backend").as_deref(),
            Some(expected),
            "{text}"
        );
    }
    assert_eq!(g.upstream.count("mock-ok-premium"), 1);
}

#[tokio::test]
async fn a_latency_cap_excludes_backends_measured_slower() {
    let g = Gateway::start(|url| {
        vec![route(
            "chat",
            json!({"backends": [
            backend("slow", url, "mock-ok-slow", json!({"priority": 0})),
            backend("fast", url, "mock-ok-fast", json!({"priority": 1}))]}),
        )]
    })
    .await;
    g.upstream.set_delay("mock-ok-slow", Duration::from_millis(400));
    assert_eq!(
        header(&g.chat(&hello("chat")).await, "x-sluice-backend").as_deref(),
        Some("slow")
    );

    let response = g.chat_with(&hello("chat"), &[("x-sluice-max-latency-ms", "200")]).await;
    assert_eq!(header(&response, "x-sluice-backend").as_deref(), Some("fast"));

    let response = g
        .chat_with(&hello("chat"), &[("x-sluice-max-latency-ms", "nope")])
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn config_shows_each_routes_tokenizer_and_live_backend_state() {
    let g = Gateway::start(|url| {
        vec![
            route("chat", json!({"backends": [backend("gpt", url, "gpt-4o-mini", json!({}))]})),
            route("other", json!({"backends": [backend("local", url, "mock-ok", json!({"limits": {"maxConcurrency": 4, "requestsPerMinute": 100}}))]})),
        ]
    })
    .await;

    let config = g.config().await;
    let routes = config["state"]["routes"].as_array().unwrap();
    let by_name = |n: &str| routes.iter().find(|r| r["name"] == n).unwrap();
    assert_eq!(by_name("chat")["tokenizer"], "o200k_base");
    assert_eq!(by_name("other")["tokenizer"], "estimate-4-chars-per-token");
    let local = &by_name("other")["backends"][0];
    assert_eq!(local["circuit"], "closed");
    assert_eq!(local["concurrency"], json!({"limit": 4, "inFlight": 0, "queued": 0}));
    assert_eq!(local["requestsPerMinute"]["capacity"], 100.0);
}
