//! The attempt loop under tokio's paused clock, with backends that answer what they are told.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::Duration,
};

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use super::*;
use crate::{
    limits::Priority,
    route::testing::{backend, route},
};

/// What a scripted backend does on one call.
#[derive(Debug, Clone)]
enum Step {
    Ok,
    Status(u16, Option<u64>),
    Connect,
    Stall,
}

/// Backends that follow a script per name, and a log of the calls in order.
#[derive(Default)]
struct Script {
    steps: Mutex<HashMap<String, VecDeque<Step>>>,
    calls: Mutex<Vec<(String, Duration)>>,
}

impl Script {
    fn new(steps: &[(&str, &[Step])]) -> Self {
        let s = Self::default();
        for (name, list) in steps {
            s.steps
                .lock()
                .unwrap()
                .insert((*name).into(), list.iter().cloned().collect());
        }
        s
    }

    async fn call(&self, backend: Arc<BackendRuntime>, origin: Instant) -> Result<Complete, ProviderError> {
        let name = backend.name.to_string();
        self.calls.lock().unwrap().push((name.clone(), origin.elapsed()));
        let step = self
            .steps
            .lock()
            .unwrap()
            .get_mut(&name)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Step::Ok);
        match step {
            Step::Ok => Ok(Complete {
                body: Bytes::from(name),
                usage: None,
            }),
            Step::Status(code, retry_after) => Err(ProviderError::Status {
                status: StatusCode::from_u16(code).unwrap(),
                retry_after: retry_after.map(Duration::from_secs),
                body: Bytes::new(),
            }),
            Step::Connect => Err(ProviderError::Connect("refused".into())),
            Step::Stall => std::future::pending().await,
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|(n, _)| n.clone()).collect()
    }

    fn times(&self) -> Vec<Duration> {
        self.calls.lock().unwrap().iter().map(|(_, t)| *t).collect()
    }
}

/// Runs one request against `r` with `script`; returns the answering backend or the error.
async fn run(r: &Route, script: &Script) -> Result<(String, u32), Failed> {
    let origin = Instant::now();
    let total = r.backends[0].timeouts.total.get();
    let plan = Attempts {
        route: r,
        candidates: &r.backends,
        deadline: origin + total,
        priority: Priority::DEFAULT,
        tokens: 0,
    };
    let served = serve(plan, |b, _| script.call(b, origin)).await?;
    let name = String::from_utf8(served.reply.body.to_vec()).unwrap();
    served.guard.finish(None, false);
    Ok((name, served.attempts))
}

fn two_backends(extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"models": ["chat"], "backends": [
        backend("a", json!({"priority": 0})), backend("b", json!({"priority": 1}))]});
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    spec
}

#[tokio::test(start_paused = true)]
async fn a_503_moves_to_the_next_backend_at_once() {
    let r = route(two_backends(json!({})));
    let script = Script::new(&[("a", &[Step::Status(503, None)])]);
    assert_eq!(run(&r, &script).await.unwrap(), ("b".into(), 2));
    assert_eq!(
        script.times(),
        [Duration::ZERO, Duration::ZERO],
        "no backoff before a fresh backend"
    );
}

#[tokio::test(start_paused = true)]
async fn a_400_is_returned_without_another_attempt() {
    let r = route(two_backends(json!({})));
    let script = Script::new(&[("a", &[Step::Status(400, None)])]);
    let failed = run(&r, &script).await.unwrap_err();
    assert!(matches!(failed.error, ApiError::Upstream(ProviderError::Status { status, .. }) if status == 400));
    assert_eq!(failed.attempts, 1);
    assert_eq!(script.calls(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn retries_only_what_retry_on_names() {
    let r = route(two_backends(json!({"retry": {"attempts": 3, "retryOn": ["5xx"]}})));
    let script = Script::new(&[("a", &[Step::Connect])]);
    let failed = run(&r, &script).await.unwrap_err();
    assert!(matches!(failed.error, ApiError::Upstream(ProviderError::Connect(_))));
    assert_eq!(script.calls(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn going_back_to_a_backend_waits_a_jittered_backoff_within_its_ceiling() {
    let r = route(
        json!({"models": ["chat"], "retry": {"attempts": 4, "backoff": {"base": "100ms", "max": "250ms"}},
        "backends": [backend("only", json!({}))]}),
    );
    let script = Script::new(&[(
        "only",
        &[
            Step::Status(500, None),
            Step::Status(502, None),
            Step::Status(504, None),
        ],
    )]);
    assert_eq!(run(&r, &script).await.unwrap(), ("only".into(), 4));
    let t = script.times();
    let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, ceiling) in gaps.iter().zip([100, 200, 250]) {
        assert!(*gap <= Duration::from_millis(ceiling), "{gaps:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_are_bounded_and_the_last_error_is_returned() {
    let r = route(two_backends(json!({"retry": {"attempts": 3}})));
    let script = Script::new(&[
        ("a", &[Step::Status(503, None), Step::Status(500, None)]),
        ("b", &[Step::Status(502, None)]),
    ]);
    let failed = run(&r, &script).await.unwrap_err();
    assert_eq!(failed.attempts, 3);
    assert_eq!(script.calls(), ["a", "b", "a"]);
    assert!(matches!(failed.error, ApiError::Upstream(ProviderError::Status { status, .. }) if status == 500));
    assert_eq!(failed.backend.unwrap().name.as_str(), "a");
}

#[tokio::test(start_paused = true)]
async fn a_stall_is_abandoned_at_first_byte_and_the_next_backend_answers() {
    let r = route(json!({"models": ["chat"], "backends": [
        backend("a", json!({"priority": 0, "timeouts": {"firstByte": "2s", "total": "30s"}})),
        backend("b", json!({"priority": 1}))]}));
    let script = Script::new(&[("a", &[Step::Stall])]);
    assert_eq!(run(&r, &script).await.unwrap(), ("b".into(), 2));
    assert_eq!(script.times(), [Duration::ZERO, Duration::from_secs(2)]);
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_bounds_every_attempt_together() {
    let r = route(json!({"models": ["chat"], "retry": {"attempts": 5}, "backends": [
        backend("a", json!({"timeouts": {"firstByte": "2s", "total": "3s"}}))]}));
    let script = Script::new(&[("a", &[Step::Stall, Step::Stall, Step::Stall])]);
    let started = Instant::now();
    let failed = run(&r, &script).await.unwrap_err();
    assert!(started.elapsed() <= Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(matches!(failed.error, ApiError::Upstream(ProviderError::Timeout(_))));
    assert_eq!(failed.attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_cools_the_backend_down_for_that_long() {
    let r = route(two_backends(json!({})));
    let script = Script::new(&[("a", &[Step::Status(429, Some(2))])]);
    assert_eq!(run(&r, &script).await.unwrap(), ("b".into(), 2));
    // For two seconds a is skipped without an attempt.
    tokio::time::advance(Duration::from_millis(1_999)).await;
    assert_eq!(run(&r, &script).await.unwrap(), ("b".into(), 1));
    assert_eq!(script.calls(), ["a", "b", "b"]);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(run(&r, &script).await.unwrap(), ("a".into(), 1));
}

#[tokio::test(start_paused = true)]
async fn with_one_backend_a_429_is_waited_out_within_the_total_timeout() {
    let r = route(json!({"models": ["chat"], "backends": [backend("only", json!({}))]}));
    let script = Script::new(&[("only", &[Step::Status(429, Some(2))])]);
    assert_eq!(run(&r, &script).await.unwrap(), ("only".into(), 2));
    // Waited exactly the Retry-After: the backoff counts from the failure and is already over.
    assert_eq!(script.times(), [Duration::ZERO, Duration::from_secs(2)]);
}

#[tokio::test(start_paused = true)]
async fn with_one_backend_a_429_beyond_the_deadline_or_not_retried_fails_with_429() {
    for spec in [
        json!({"models": ["chat"], "backends": [backend("only", json!({"timeouts": {"firstByte": "1s", "total": "1s"}}))]}),
        json!({"models": ["chat"], "retry": {"retryOn": ["5xx"]}, "backends": [backend("only", json!({}))]}),
    ] {
        let r = route(spec);
        let script = Script::new(&[("only", &[Step::Status(429, Some(2))])]);
        let failed = run(&r, &script).await.unwrap_err();
        assert!(
            matches!(failed.error, ApiError::Upstream(ProviderError::Status { status, .. }) if status == 429),
            "{:?}",
            failed.error
        );
        assert_eq!(script.calls(), ["only"]);
        // A new request while cooling down gets a 429 with the time left, without an attempt.
        let failed = run(&r, &script).await.unwrap_err();
        match failed.error {
            ApiError::RateLimited { retry_after, .. } => assert_eq!(retry_after, Duration::from_secs(2)),
            other => panic!("expected rate_limited, got {other:?}"),
        }
        assert_eq!(failed.attempts, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn the_circuit_opens_after_n_failures_takes_no_traffic_then_half_opens_and_closes() {
    let r = route(json!({"models": ["chat"], "retry": {"attempts": 1},
        "circuitBreaker": {"consecutiveFailures": 3, "openFor": "30s"},
        "backends": [backend("a", json!({"priority": 0})), backend("b", json!({"priority": 1}))]}));
    let script = Script::new(&[(
        "a",
        &[
            Step::Status(500, None),
            Step::Status(500, None),
            Step::Status(500, None),
        ],
    )]);
    for _ in 0..3 {
        assert!(run(&r, &script).await.is_err());
    }
    // Open: a gets nothing; b answers at the first attempt.
    for _ in 0..5 {
        assert_eq!(run(&r, &script).await.unwrap(), ("b".into(), 1));
    }
    assert_eq!(script.calls(), ["a", "a", "a", "b", "b", "b", "b", "b"]);
    assert_eq!(
        r.backends[0].state.circuit.view(Instant::now()).state,
        sluice_crds::CircuitState::Open
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(
        r.backends[0].state.circuit.view(Instant::now()).state,
        sluice_crds::CircuitState::HalfOpen
    );
    // The probe succeeds and closes the circuit.
    assert_eq!(run(&r, &script).await.unwrap(), ("a".into(), 1));
    assert_eq!(
        r.backends[0].state.circuit.view(Instant::now()).state,
        sluice_crds::CircuitState::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn every_circuit_open_is_503_no_backend_available() {
    let r = route(json!({"models": ["chat"], "retry": {"attempts": 1},
        "circuitBreaker": {"consecutiveFailures": 1, "openFor": "30s"},
        "backends": [backend("a", json!({}))]}));
    let script = Script::new(&[("a", &[Step::Status(503, None)])]);
    assert!(run(&r, &script).await.is_err());
    let failed = run(&r, &script).await.unwrap_err();
    assert!(
        matches!(&failed.error, ApiError::NoBackendAvailable { reason } if reason.contains("open (a)")),
        "{:?}",
        failed.error
    );
    assert_eq!(failed.attempts, 0);
}

#[tokio::test(start_paused = true)]
async fn a_backend_rate_limit_skips_to_the_next_and_refuses_with_its_wait_when_alone() {
    let r = route(json!({"models": ["chat"], "retry": {"retryOn": ["5xx"]}, "backends": [
        backend("a", json!({"priority": 0, "limits": {"requestsPerMinute": 2}})), backend("b", json!({"priority": 1}))]}));
    let script = Script::new(&[]);
    for expected in ["a", "a", "b"] {
        assert_eq!(run(&r, &script).await.unwrap().0, expected);
    }
    let alone = route(json!({"models": ["chat"], "retry": {"retryOn": ["5xx"]}, "backends": [
        backend("a", json!({"limits": {"requestsPerMinute": 2}}))]}));
    run(&alone, &script).await.unwrap();
    run(&alone, &script).await.unwrap();
    match run(&alone, &script).await.unwrap_err().error {
        ApiError::RateLimited { limit, retry_after } => {
            assert_eq!(limit, "backend a requests per minute");
            assert_eq!(retry_after, Duration::from_secs(30));
        }
        other => panic!("expected rate_limited, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_count_in_their_backends_health_failures_as_errors_and_client_errors_not_at_all() {
    use crate::route::health::WindowCounts;
    let r = route(two_backends(json!({})));
    let script = Script::new(&[("a", &[Step::Status(503, None), Step::Status(400, None)])]);
    assert_eq!(run(&r, &script).await.unwrap(), ("b".into(), 2));
    run(&r, &script).await.unwrap_err();
    assert_eq!(
        r.backends[0].state.health.take(),
        WindowCounts {
            requests: 1,
            errors: 1,
            latency_p50_ms: None,
        }
    );
    // Answered at once under the paused clock: the first bucket, up to 1 ms.
    assert_eq!(
        r.backends[1].state.health.take(),
        WindowCounts {
            requests: 1,
            errors: 0,
            latency_p50_ms: Some(1),
        }
    );
}
