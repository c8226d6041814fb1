#![allow(clippy::unwrap_used)]

use jiff::Timestamp;
use sluice_crds::{BackendName, MicroUsd, ModelName, ObjectKey, Outcome, Tokens, UsageDelta, UsageReport};

use super::ledger::*;

mod flush;

fn delta(route: &str, backend: &str, outcome: Outcome, cost: u64) -> UsageDelta {
    UsageDelta {
        route: ObjectKey {
            namespace: "ns".into(),
            name: route.into(),
        },
        backend: BackendName::try_from(backend).unwrap(),
        model: ModelName::try_from("gpt-4.1").unwrap(),
        user: None,
        outcome,
        requests: 2,
        input_tokens: Tokens(100),
        cached_input_tokens: Tokens(0),
        output_tokens: Tokens(10),
        cost: MicroUsd::new(cost),
        failovers: 1,
        estimated: false,
    }
}

fn report(uid: &str, sequence: u64, deltas: Vec<UsageDelta>) -> UsageReport {
    UsageReport {
        pod_uid: uid.into(),
        sequence,
        deltas,
        final_report: false,
    }
}

fn start() -> Timestamp {
    "2026-11-01T00:00:00Z".parse().unwrap()
}

fn budget_of(route: &str) -> Option<(String, Timestamp)> {
    (route == "chat").then(|| ("monthly".to_owned(), start()))
}

#[test]
fn a_report_is_applied_once_per_pod_and_sequence() {
    let mut ledger = Ledger::default();
    let r1 = report("pod-a", 1, vec![delta("chat", "openai", Outcome::Ok, 1_500)]);
    let applied = ledger.apply("a", &r1, &budget_of);
    assert_eq!(applied.routes, ["chat"]);
    assert_eq!(applied.budgets, ["monthly"]);
    assert!(ledger.apply("a", &r1, &budget_of).duplicate);
    // Another pod's sequence 1 is its own.
    ledger.apply(
        "b",
        &report("pod-b", 1, vec![delta("chat", "openai", Outcome::Ok, 250)]),
        &budget_of,
    );
    let b = &ledger.budgets["monthly"];
    assert_eq!(b.spent, MicroUsd::new(1_750));
    assert_eq!(b.pods["pod-a"].spent, MicroUsd::new(1_500));
    assert_eq!(b.by_route["chat"], MicroUsd::new(1_750));
    assert_eq!(b.by_model["gpt-4.1"], MicroUsd::new(1_750));
    assert_eq!(ledger.sequence("pod-a"), 1);
    assert_eq!(ledger.sequence("pod-c"), 0);
}

#[test]
fn route_totals_count_errors_cache_hits_and_backends() {
    let mut ledger = Ledger::default();
    ledger.apply(
        "a",
        &report(
            "pod-a",
            4,
            vec![
                delta("chat", "openai", Outcome::Ok, 10),
                delta("chat", "openai", Outcome::UpstreamError, 0),
                delta("chat", "openai", Outcome::CacheHit, 0),
                delta("chat", "openai", Outcome::RateLimited, 0),
            ],
        ),
        &budget_of,
    );
    let t = &ledger.routes["chat"];
    assert_eq!(
        (t.usage.requests, t.usage.errors, t.usage.cache_hits, t.usage.failovers),
        (8, 2, 2, 4)
    );
    assert_eq!((t.usage.input_tokens, t.usage.output_tokens), (400, 40));
    assert_eq!(t.usage.cost_usd, MicroUsd::new(10));
    assert_eq!(t.backends["openai"], BackendTotals { requests: 4, errors: 2 });
}

#[test]
fn a_new_period_starts_the_budget_from_zero() {
    let mut ledger = Ledger::default();
    ledger.apply(
        "a",
        &report("p", 1, vec![delta("chat", "x", Outcome::Ok, 5)]),
        &budget_of,
    );
    let next: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
    let later = move |route: &str| (route == "chat").then(|| ("monthly".to_owned(), next));
    ledger.apply("a", &report("p", 2, vec![delta("chat", "x", Outcome::Ok, 7)]), &later);
    let b = &ledger.budgets["monthly"];
    assert_eq!((b.period_start, b.spent), (Some(next), MicroUsd::new(7)));
    // The route's own totals never reset.
    assert_eq!(ledger.routes["chat"].usage.cost_usd, MicroUsd::new(12));
}

#[test]
fn the_ledger_round_trips_through_json_without_the_sizing_window() {
    let mut ledger = Ledger::default();
    ledger.apply(
        "a",
        &report("p", 3, vec![delta("chat", "x", Outcome::Ok, 9)]),
        &budget_of,
    );
    ledger.close_sizing_window();
    assert_eq!(ledger.budgets["monthly"].pods["p"].recent, MicroUsd::new(9));
    let text = serde_json::to_string(&ledger).unwrap();
    let back: Ledger = serde_json::from_str(&text).unwrap();
    assert_eq!(back.budgets["monthly"].pods["p"].recent, MicroUsd::ZERO);
    assert_eq!(back.sequence("p"), 3);
    assert_eq!(back.routes, ledger.routes);
}

#[test]
fn a_deleted_pods_unspent_grant_returns_to_the_budget() {
    let mut ledger = Ledger::default();
    ledger.apply(
        "a",
        &report("pod-a", 1, vec![delta("chat", "x", Outcome::Ok, 40)]),
        &budget_of,
    );
    let grant = ledger
        .budgets
        .get_mut("monthly")
        .unwrap()
        .pods
        .get_mut("pod-a")
        .unwrap();
    grant.granted = MicroUsd::new(100);
    assert!(ledger.reclaim("pod-a"));
    let grant = ledger.budgets["monthly"].pods["pod-a"];
    assert_eq!((grant.granted, grant.spent), (MicroUsd::new(40), MicroUsd::new(40)));
    assert!(!ledger.reclaim("pod-a"));
    assert!(!ledger.reclaim("never-seen"));
}
