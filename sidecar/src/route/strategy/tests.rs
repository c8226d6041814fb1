use std::{collections::HashMap, time::Duration};

use http::{HeaderMap, HeaderValue};
use serde_json::json;

use super::*;
use crate::{
    circuit::Verdict,
    formats::openai::ChatRequest,
    request::parse_chat,
    route::{
        Route,
        facts::Body,
        plan::{Constraints, NoCandidate},
        testing::{backend, route},
    },
};

fn request(body: serde_json::Value) -> ChatRequest {
    parse_chat(body.to_string().as_bytes()).unwrap()
}

fn hello() -> ChatRequest {
    request(json!({"model": "chat", "messages": [{"role": "user", "content": "hello"}]}))
}

/// The name of the first candidate of one planned request.
fn first(route: &Route, req: &ChatRequest, headers: &HeaderMap, now: Instant) -> String {
    let facts = Facts::new(Body::Chat(req), headers, route.tokenizer);
    let plan = route.plan(&facts, Constraints::default(), now).unwrap();
    plan.candidates[0].name.to_string()
}

fn order_of(route: &Route, req: &ChatRequest, now: Instant) -> Vec<String> {
    let headers = HeaderMap::new();
    let facts = Facts::new(Body::Chat(req), &headers, route.tokenizer);
    let plan = route.plan(&facts, Constraints::default(), now).unwrap();
    plan.candidates.iter().map(|b| b.name.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn weighted_choice_over_10000_picks_matches_the_weights() {
    let r = route(json!({"models": ["chat"], "strategy": "weighted", "backends": [
        backend("a", json!({"weight": 5})), backend("b", json!({"weight": 3})), backend("c", json!({"weight": 2}))]}));
    let (req, headers, now) = (hello(), HeaderMap::new(), Instant::now());
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..10_000 {
        *counts.entry(first(&r, &req, &headers, now)).or_default() += 1;
    }
    // Stated tolerance: within 1% of 10,000 of the exact share. Smooth weighted round robin is
    // in fact exact over any multiple of the total weight, so the counts are 5000/3000/2000.
    for (name, share) in [("a", 5_000), ("b", 3_000), ("c", 2_000)] {
        let got = i64::from(counts[name]);
        assert!(
            (got - share).abs() <= 100,
            "{name}: {got} picks, expected {share} ± 100"
        );
    }
    assert_eq!((counts["a"], counts["b"], counts["c"]), (5_000, 3_000, 2_000));
}

#[tokio::test(start_paused = true)]
async fn weighted_choice_interleaves_instead_of_bursting_and_falls_back_by_priority() {
    let r = route(json!({"models": ["chat"], "strategy": "weighted", "backends": [
        backend("a", json!({"weight": 5, "priority": 2})), backend("b", json!({"weight": 1, "priority": 0})),
        backend("c", json!({"weight": 1, "priority": 1}))]}));
    let (req, headers, now) = (hello(), HeaderMap::new(), Instant::now());
    let picks: Vec<String> = (0..7).map(|_| first(&r, &req, &headers, now)).collect();
    // nginx's published sequence for weights {a: 5, b: 1, c: 1}.
    assert_eq!(picks, ["a", "a", "b", "a", "c", "a", "a"]);
    // After the weighted pick, the others follow in priority order.
    assert_eq!(order_of(&r, &req, now), ["a", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn weighted_skips_backends_of_weight_zero_for_the_first_pick() {
    let r = route(json!({"models": ["chat"], "strategy": "weighted", "backends": [
        backend("spare", json!({"weight": 0})), backend("main", json!({"weight": 1}))]}));
    let now = Instant::now();
    for _ in 0..10 {
        assert_eq!(order_of(&r, &hello(), now), ["main", "spare"]);
    }
}

#[tokio::test(start_paused = true)]
async fn least_latency_prefers_the_faster_backend_until_it_is_loaded() {
    let r = route(json!({"models": ["chat"], "strategy": "least-latency", "backends": [
        backend("slow", json!({})), backend("fast", json!({}))]}));
    let now = Instant::now();
    let by_name = |n: &str| r.backends.iter().find(|b| b.name.as_str() == n).unwrap().clone();
    by_name("slow").state.latency.observe(Duration::from_millis(200), now);
    by_name("fast").state.latency.observe(Duration::from_millis(10), now);
    for _ in 0..100 {
        assert_eq!(order_of(&r, &hello(), now), ["fast", "slow"]);
    }
    // 10 ms × 30 in flight outweighs 200 ms × 1.
    let fast = by_name("fast");
    let _busy: Vec<_> = (0..29).map(|_| fast.state.begin()).collect();
    assert_eq!(order_of(&r, &hello(), now), ["slow", "fast"]);
}

#[tokio::test(start_paused = true)]
async fn least_latency_measures_an_unmeasured_backend_first() {
    let r = route(json!({"models": ["chat"], "strategy": "least-latency", "backends": [
        backend("known", json!({})), backend("new", json!({}))]}));
    let now = Instant::now();
    r.backends[0].state.latency.observe(Duration::from_millis(5), now);
    assert_eq!(order_of(&r, &hello(), now)[0], "new");
}

#[tokio::test(start_paused = true)]
async fn two_choices_among_many_is_deterministic_under_the_route_seed() {
    let spec = json!({"models": ["chat"], "strategy": "least-latency", "backends": [
        backend("a", json!({})), backend("b", json!({})), backend("c", json!({})), backend("d", json!({}))]});
    let now = Instant::now();
    let run = |r: &Route| -> Vec<String> { (0..50).map(|_| order_of(r, &hello(), now)[0].clone()).collect() };
    let (x, y) = (route(spec.clone()), route(spec));
    for (i, b) in x.backends.iter().chain(y.backends.iter()).enumerate() {
        b.state
            .latency
            .observe(Duration::from_millis(10 + (i % 4) as u64 * 10), now);
    }
    let picks = run(&x);
    assert_eq!(picks, run(&y), "same route, same seed, same choices");
    // Two distinct random choices of four never pick the slowest (d).
    assert!(picks.iter().all(|p| p != "d"), "{picks:?}");
}

#[tokio::test(start_paused = true)]
async fn least_cost_picks_the_cheapest_for_this_requests_tokens() {
    let r = route(json!({"models": ["chat"], "strategy": "least-cost", "backends": [
        backend("unpriced", json!({})),
        backend("input-heavy", json!({"pricing": {"inputPerMTok": "10.00", "outputPerMTok": "0.10"}})),
        backend("output-heavy", json!({"pricing": {"inputPerMTok": "0.10", "outputPerMTok": "10.00"}}))]}));
    let now = Instant::now();
    let long_prompt = request(json!({"model": "chat", "max_tokens": 10,
        "messages": [{"role": "user", "content": "x".repeat(40_000)}]}));
    assert_eq!(
        order_of(&r, &long_prompt, now),
        ["output-heavy", "input-heavy", "unpriced"]
    );
    let long_answer = request(json!({"model": "chat", "max_tokens": 4000,
        "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(
        order_of(&r, &long_answer, now),
        ["input-heavy", "output-heavy", "unpriced"]
    );
}

#[tokio::test(start_paused = true)]
async fn rules_narrow_the_candidates_first_match_wins() {
    let r = route(json!({"models": ["chat"], "backends": [
    backend("premium", json!({"priority": 0})), backend("cheap", json!({"priority": 1})),
    backend("vision", json!({"priority": 2}))],
    "rules": [
        {"when": {"hasImages": true}, "backends": ["vision"]},
        {"when": {"maxPromptTokens": 50, "anyKeyword": ["translate", "summarize"]}, "backends": ["cheap"]},
        {"when": {"header": {"name": "x-sluice-tier", "value": "premium"}}, "backends": ["premium", "vision"]}
    ]}));
    let now = Instant::now();
    let plain = HeaderMap::new();
    let short = request(json!({"model": "chat", "messages": [{"role": "user", "content": "Translate: bonjour"}]}));
    assert_eq!(first(&r, &short, &plain, now), "cheap");
    let long = request(
        json!({"model": "chat", "messages": [{"role": "user", "content": format!("translate {}", "word ".repeat(100))}]}),
    );
    assert_eq!(first(&r, &long, &plain, now), "premium");
    let image = request(json!({"model": "chat", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "translate this sign"}, {"type": "image_url", "image_url": {"url": "data:"}}]}]}));
    assert_eq!(first(&r, &image, &plain, now), "vision");
    let mut tier = HeaderMap::new();
    tier.insert("x-sluice-tier", HeaderValue::from_static("premium"));
    let facts = Facts::new(Body::Chat(&long), &tier, r.tokenizer);
    let plan = r.plan(&facts, Constraints::default(), now).unwrap();
    assert_eq!(plan.rule, Some(2));
    assert_eq!(
        plan.candidates.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        ["premium", "vision"]
    );
}

#[tokio::test(start_paused = true)]
async fn request_constraints_filter_and_say_which_filter_left_nothing() {
    let r = route(json!({"models": ["chat"], "backends": [
        backend("pricey", json!({"pricing": {"inputPerMTok": "30.00", "outputPerMTok": "60.00"}})),
        backend("cheap", json!({"pricing": {"inputPerMTok": "0.10", "outputPerMTok": "0.40"}}))]}));
    let now = Instant::now();
    let req = request(json!({"model": "chat", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}));
    let headers = HeaderMap::new();
    let facts = Facts::new(Body::Chat(&req), &headers, r.tokenizer);
    let within = |usd: &str| Constraints {
        max_cost: Some(usd.parse().unwrap()),
        max_latency: None,
    };
    // pricey: 1 × $30/M + 1000 × $60/M = $0.060030; cheap: $0.000401 (rounded up).
    let plan = r.plan(&facts, within("0.01"), now).unwrap();
    assert_eq!(
        plan.candidates.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        ["cheap"]
    );
    let err = r.plan(&facts, within("0.0001"), now).unwrap_err();
    assert_eq!(
        err,
        NoCandidate::MaxCost {
            limit: "0.0001".parse().unwrap(),
            cheapest: Some(sluice_crds::MicroUsd::new(401)),
        }
    );
    assert!(err.to_string().contains("x-sluice-max-cost-usd"), "{err}");

    r.backends[0].state.latency.observe(Duration::from_millis(900), now);
    r.backends[1].state.latency.observe(Duration::from_millis(300), now);
    let fast = |ms| Constraints {
        max_cost: None,
        max_latency: Some(Duration::from_millis(ms)),
    };
    let plan = r.plan(&facts, fast(500), now).unwrap();
    assert_eq!(plan.candidates.len(), 1);
    let err = r.plan(&facts, fast(100), now).unwrap_err();
    assert!(
        err.to_string().contains("x-sluice-max-latency-ms 100") && err.to_string().contains("300 ms"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn backends_with_an_open_circuit_go_last() {
    let r = route(
        json!({"models": ["chat"], "circuitBreaker": {"consecutiveFailures": 1, "openFor": "10s"},
        "backends": [backend("a", json!({"priority": 0})), backend("b", json!({"priority": 1}))]}),
    );
    let now = Instant::now();
    let ticket = r.backends[0].state.circuit.try_acquire(now).unwrap();
    ticket.record(Verdict::Failure, &r.circuit_breaker, now);
    assert_eq!(order_of(&r, &hello(), now), ["b", "a"]);
    assert_eq!(order_of(&r, &hello(), now + Duration::from_secs(10)), ["a", "b"]);
}
