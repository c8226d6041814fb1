//! Failover through the real sidecar: retries across backends, Retry-After, first-byte
//! timeouts, streams that break, and the circuit breaker, against an upstream told what to do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod gateway;

use std::path::Path;
use std::time::{Duration, Instant};

use gateway::{Gateway, backend, header, hello, route, sse_data};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::upstream::{self, Behaviour, openai};

const PRIMARY: &str = "mock-ok-primary";
const SECONDARY: &str = "mock-ok-secondary";
/// A Retry-After no run of these tests outlasts, so every request a test makes after the 429
/// falls inside the cool-down however loaded the machine is; tests that need the wait to end
/// ask for one second and wait for `/config` to report it over.
const LONG_WAIT_S: u64 = 600;

/// Route `chat`: `primary` (priority 0) then `secondary`, with `spec` merged in.
async fn two_backends(primary_model: &str, primary_extra: Value, spec: Value) -> Gateway {
    let primary_model = primary_model.to_owned();
    Gateway::start(move |url| {
        let mut spec_with_backends = json!({"backends": [
            backend("primary", url, &primary_model, primary_extra),
            backend("secondary", url, SECONDARY, json!({"priority": 1}))]});
        spec_with_backends
            .as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        vec![route("chat", spec_with_backends)]
    })
    .await
}

#[tokio::test]
async fn a_503_from_the_first_backend_is_answered_by_the_second_in_two_attempts() {
    let g = two_backends(PRIMARY, json!({}), json!({})).await;
    g.upstream
        .script(PRIMARY, [Behaviour::Fail(StatusCode::SERVICE_UNAVAILABLE)]);

    let response = g.chat(&hello("chat")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend").as_deref(), Some("secondary"));
    assert_eq!(header(&response, "x-sluice-attempts").as_deref(), Some("2"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], upstream::OK_CONTENT);
    assert_eq!((g.upstream.count(PRIMARY), g.upstream.count(SECONDARY)), (1, 1));
}

#[tokio::test]
async fn a_400_from_the_first_backend_goes_back_to_the_client_without_a_second_attempt() {
    let g = two_backends(PRIMARY, json!({}), json!({})).await;
    g.upstream.script(PRIMARY, [Behaviour::Fail(StatusCode::BAD_REQUEST)]);

    let response = g.chat(&hello("chat")).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&response, "x-sluice-backend").as_deref(), Some("primary"));
    assert_eq!(header(&response, "x-sluice-attempts").as_deref(), Some("1"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, openai::failure_body(StatusCode::BAD_REQUEST));
    assert_eq!(
        g.upstream.count(SECONDARY),
        0,
        "a client error is not retried elsewhere"
    );
}

#[tokio::test]
async fn a_429_with_retry_after_skips_that_backend_while_config_shows_it_cooling_down() {
    let g = two_backends(PRIMARY, json!({}), json!({})).await;
    g.upstream.script(PRIMARY, [Behaviour::RateLimitedFor(LONG_WAIT_S)]);

    let first = g.chat(&hello("chat")).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "x-sluice-backend").as_deref(), Some("secondary"));
    assert_eq!(header(&first, "x-sluice-attempts").as_deref(), Some("2"));

    let state = g.backend_state("chat", "primary").await;
    let cooling = state["coolingDownForMs"].as_u64();
    assert!(cooling.is_some_and(|ms| ms > 0 && ms <= LONG_WAIT_S * 1000), "{state}");
    let second = g.chat(&hello("chat")).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(header(&second, "x-sluice-backend").as_deref(), Some("secondary"));
    assert_eq!(
        header(&second, "x-sluice-attempts").as_deref(),
        Some("1"),
        "skipped, not attempted"
    );
    assert_eq!(g.upstream.count(PRIMARY), 1);
}

#[tokio::test]
async fn a_backend_cooled_down_by_a_429_takes_traffic_again_once_config_shows_the_wait_over() {
    let g = two_backends(PRIMARY, json!({}), json!({})).await;
    g.upstream.script(PRIMARY, [Behaviour::RateLimitedFor(1)]);

    let asked = Instant::now();
    let first = g.chat(&hello("chat")).await;
    assert_eq!(header(&first, "x-sluice-backend").as_deref(), Some("secondary"));
    assert_eq!(header(&first, "x-sluice-attempts").as_deref(), Some("2"));

    // The wait ends on the sidecar's clock: wait for its /config to say so, not for a time.
    g.wait_for_state("chat", "primary", "the end of its cool-down", |s| {
        s.get("coolingDownForMs").is_some_and(Value::is_null)
    })
    .await;
    // The 429 came after `asked`, so the second it asked for cannot be over sooner; a slow
    // machine only makes this later.
    assert!(asked.elapsed() >= Duration::from_secs(1), "the cool-down ended early");
    let response = g.chat(&hello("chat")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend").as_deref(), Some("primary"));
    assert_eq!(header(&response, "x-sluice-attempts").as_deref(), Some("1"));
    assert_eq!(g.upstream.count(PRIMARY), 2);
}

#[tokio::test]
async fn a_429_asking_for_u64_max_seconds_is_answered_elsewhere_and_cools_for_an_hour_at_most() {
    let g = two_backends(PRIMARY, json!({}), json!({})).await;
    g.upstream.script(PRIMARY, [Behaviour::RateLimitedFor(u64::MAX)]);

    let first = g.chat(&hello("chat")).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "x-sluice-backend").as_deref(), Some("secondary"));

    let state = g.backend_state("chat", "primary").await;
    let cooling = state["coolingDownForMs"].as_u64();
    assert!(
        cooling.is_some_and(|ms| (3_500_000..=3_600_000).contains(&ms)),
        "{state}"
    );
}

#[tokio::test]
async fn with_one_backend_a_429_with_retry_after_is_waited_out_within_the_total_timeout() {
    let g = Gateway::start(|url| {
        vec![route(
            "chat",
            json!({"backends": [backend("only", url, PRIMARY, json!({}))]}),
        )]
    })
    .await;
    g.upstream.script(PRIMARY, [Behaviour::RateLimitedFor(2)]);

    let response = g.chat(&hello("chat")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-attempts").as_deref(), Some("2"));
    assert_eq!(g.upstream.count(PRIMARY), 2);
}

#[tokio::test]
async fn with_one_backend_and_429_not_retried_the_429_comes_back_and_holds_new_requests() {
    let g = Gateway::start(|url| {
        vec![route(
            "chat",
            json!({"retry": {"retryOn": ["5xx"]},
            "backends": [backend("only", url, PRIMARY, json!({}))]}),
        )]
    })
    .await;
    g.upstream.script(PRIMARY, [Behaviour::RateLimitedFor(LONG_WAIT_S)]);

    let response = g.chat(&hello("chat")).await;

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let asked = LONG_WAIT_S.to_string();
    assert_eq!(header(&response, "retry-after").as_deref(), Some(asked.as_str()));
    assert_eq!(header(&response, "x-sluice-attempts").as_deref(), Some("1"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_rate_limited");

    // While the backend cools down a new request is refused here, truthfully, without an attempt.
    let again = g.chat(&hello("chat")).await;
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&again, "retry-after").unwrap().parse().unwrap();
    assert!((1..=LONG_WAIT_S).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&again, "x-sluice-attempts").as_deref(), Some("0"));
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(g.upstream.count(PRIMARY), 1);
    // What it advertised is what is left of the wait, rounded up to whole seconds: /config,
    // asked afterwards, reports no more than that.
    let state = g.backend_state("chat", "only").await;
    let left = state["coolingDownForMs"].as_u64();
    assert!(left.is_some_and(|ms| ms <= retry_after * 1000), "{state}");
}

#[tokio::test]
async fn a_backend_that_stalls_before_the_first_byte_is_abandoned_at_first_byte() {
    let g = two_backends(
        "mock-stall",
        json!({"timeouts": {"connect": "1s", "firstByte": "300ms", "total": "20s"}}),
        json!({}),
    )
    .await;
    let mut streamed = hello("chat");
    streamed["stream"] = json!(true);
    for request in [hello("chat"), streamed] {
        let response = g.chat(&request).await;

        assert_eq!(response.status(), StatusCode::OK, "{request}");
        assert_eq!(header(&response, "x-sluice-backend").as_deref(), Some("secondary"));
        assert_eq!(header(&response, "x-sluice-attempts").as_deref(), Some("2"));
        let text = response.text().await.unwrap();
        assert!(text.contains("Hello") || text.contains("\"Hello"), "{text}");
    }
    assert_eq!(g.upstream.count("mock-stall"), 2);
}

#[tokio::test]
async fn a_backend_that_dies_mid_stream_is_not_retried_and_the_client_sees_an_error_event() {
    let g = two_backends("mock-cut-stream", json!({}), json!({})).await;
    let mut request = hello("chat");
    request["stream"] = json!(true);

    let response = g.chat(&request).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend").as_deref(), Some("primary"));
    assert_eq!(header(&response, "x-sluice-attempts").as_deref(), Some("1"));
    let text = tokio::time::timeout(Duration::from_secs(15), response.text())
        .await
        .unwrap()
        .unwrap();
    let data = sse_data(&text);
    let n = openai::CUT_AFTER_CHUNKS;
    assert!(data.len() > n, "{text}");
    let error: Value = serde_json::from_str(&data[n]).unwrap();
    assert_eq!(error["error"]["type"], "upstream_error", "{text}");
    assert_eq!(
        g.upstream.count(SECONDARY),
        0,
        "nothing is retried after the first byte"
    );
}

#[tokio::test]
async fn the_circuit_opens_after_n_failures_takes_no_traffic_half_opens_and_closes_after_a_success() {
    let g = two_backends(
        PRIMARY,
        json!({}),
        json!({"retry": {"attempts": 2}, "circuitBreaker": {"consecutiveFailures": 3, "openFor": "5s"}}),
    )
    .await;
    let fail = Behaviour::Fail(StatusCode::SERVICE_UNAVAILABLE);
    g.upstream.script(PRIMARY, [fail, fail, fail]);

    for _ in 0..3 {
        let response = g.chat(&hello("chat")).await;
        assert_eq!(header(&response, "x-sluice-attempts").as_deref(), Some("2"));
    }
    let state = g.backend_state("chat", "primary").await;
    assert_eq!(state["circuit"], "open", "{state}");
    assert_eq!(state["consecutiveFailures"], 3);

    for _ in 0..5 {
        let response = g.chat(&hello("chat")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-sluice-backend").as_deref(), Some("secondary"));
    }
    // The circuit was open for all five (unless this machine took five seconds for them).
    if g.backend_state("chat", "primary").await["circuit"] == "open" {
        assert_eq!(g.upstream.count(PRIMARY), 3, "no traffic while the circuit is open");
    }

    g.wait_for_state("chat", "primary", "half-open", |s| s["circuit"] == "half-open")
        .await;
    let probe = g.chat(&hello("chat")).await;
    assert_eq!(header(&probe, "x-sluice-backend").as_deref(), Some("primary"));
    assert_eq!(header(&probe, "x-sluice-attempts").as_deref(), Some("1"));
    let state = g.backend_state("chat", "primary").await;
    assert_eq!(state["circuit"], "closed", "{state}");
    assert_eq!(state["consecutiveFailures"], 0);
}

#[tokio::test]
async fn every_circuit_open_is_503_no_backend_available() {
    let g = Gateway::start(|url| {
        vec![route(
            "chat",
            json!({"retry": {"attempts": 1},
            "circuitBreaker": {"consecutiveFailures": 1, "openFor": "10m"},
            "backends": [backend("only", url, PRIMARY, json!({}))]}),
        )]
    })
    .await;
    g.upstream
        .script(PRIMARY, [Behaviour::Fail(StatusCode::INTERNAL_SERVER_ERROR)]);

    assert_eq!(g.chat(&hello("chat")).await.status(), StatusCode::BAD_GATEWAY);
    let response = g.chat(&hello("chat")).await;

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "x-sluice-attempts").as_deref(), Some("0"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_backend_available");
    assert!(body["error"]["message"].as_str().unwrap().contains("circuit"), "{body}");
    assert_eq!(g.upstream.count(PRIMARY), 1);
}

#[tokio::test]
async fn the_failover_demo_example_answers_from_the_backup_in_two_attempts() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/failover-demo");
    let sidecar = SidecarProcess::start(&demo).await.unwrap();
    let response = gateway::client()
        .post(sidecar.url("/v1/chat/completions"))
        .json(&hello("chat"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "x-sluice-route").as_deref(),
        Some("default/failover-demo")
    );
    assert_eq!(header(&response, "x-sluice-backend").as_deref(), Some("backup"));
    assert_eq!(header(&response, "x-sluice-attempts").as_deref(), Some("2"));
}
