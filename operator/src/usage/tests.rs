#![allow(clippy::unwrap_used)]

use jiff::Timestamp;
use sluice_crds::{BackendName, MicroUsd, ModelName, ObjectKey, Outcome, Tokens, UsageDelta, UsageReport};

use super::ledger::*;

mod flush;
mod prune;

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
        cache_write_input_tokens: Tokens(0),
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
        health: Vec::new(),
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
    // Demand for limit shares is sizing state too: not persisted.
    assert_eq!(ledger.routes["chat"].demand["p"].recent.requests, 2);
    let mut expected = ledger.routes.clone();
    expected.values_mut().for_each(|r| r.demand.clear());
    assert_eq!(back.routes, expected);
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

fn granted(ledger: &mut Ledger, uid: &str, micros: u64) {
    let budget = ledger.budgets.get_mut("monthly").unwrap();
    budget.pods.entry(uid.to_owned()).or_default().granted = MicroUsd::new(micros);
}

#[test]
fn a_deleted_pods_allowance_waits_for_its_final_report_or_the_end_of_the_wait() {
    use std::time::Duration;
    let wait = Duration::from_secs(60);
    let s = Duration::from_secs;
    let mut ledger = Ledger::default();
    ledger.apply(
        "a",
        &report("pod-a", 1, vec![delta("chat", "x", Outcome::Ok, 40)]),
        &budget_of,
    );
    granted(&mut ledger, "pod-a", 100);
    assert_eq!(ledger.reclaim_due("pod-a", s(0), wait), Reclaim::Wait);
    assert_eq!(ledger.reclaim_due("pod-a", s(59), wait), Reclaim::Wait);
    assert_eq!(ledger.reclaim_due("pod-a", s(60), wait), Reclaim::Unreported);
    // The final report (sent on SIGTERM) arrives: at once, whatever the time.
    let mut last = report("pod-a", 2, vec![delta("chat", "x", Outcome::Ok, 30)]);
    last.final_report = true;
    ledger.apply("a", &last, &budget_of);
    assert!(ledger.pods["pod-a"].finished);
    assert_eq!(ledger.reclaim_due("pod-a", s(0), wait), Reclaim::Now);
    assert!(ledger.reclaim("pod-a"));
    let grant = ledger.budgets["monthly"].pods["pod-a"];
    assert_eq!((grant.granted, grant.spent), (MicroUsd::new(70), MicroUsd::new(70)));
    // A container restarted after its final report reports again: waiting again.
    ledger.apply("a", &report("pod-a", 3, vec![]), &budget_of);
    assert_eq!(ledger.reclaim_due("pod-a", s(0), wait), Reclaim::Wait);
    // A pod never heard of and granted nothing: nothing to wait for.
    assert_eq!(ledger.reclaim_due("never-seen", s(0), wait), Reclaim::Now);
    // Granted but never reported: it may have spent, so it is waited for.
    granted(&mut ledger, "pod-b", 50);
    assert_eq!(ledger.reclaim_due("pod-b", s(0), wait), Reclaim::Wait);
    // `finished` survives the ledger's round trip, and is absent while false.
    let text = serde_json::to_string(&ledger).unwrap();
    assert!(!text.contains("finished"), "{text}");
    ledger.apply("a", &last_of("pod-b", 1), &budget_of);
    let back: Ledger = serde_json::from_str(&serde_json::to_string(&ledger).unwrap()).unwrap();
    assert!(back.pods["pod-b"].finished);
}

fn last_of(uid: &str, sequence: u64) -> UsageReport {
    UsageReport {
        final_report: true,
        ..report(uid, sequence, vec![])
    }
}

#[test]
fn the_flush_takes_back_a_deleted_pods_allowance_only_after_its_last_report_is_applied() {
    use std::time::{Duration, Instant};
    let ledgers = crate::ledgers::Ledgers::default();
    let mut ns = crate::ledgers::NamespaceLedger::default();
    ns.ledger.apply(
        "a",
        &report("pod-a", 1, vec![delta("chat", "x", Outcome::Ok, 40)]),
        &budget_of,
    );
    granted(&mut ns.ledger, "pod-a", 100);
    let t0 = Instant::now();
    ledgers.pod_gone("ns", "pod-a", t0);
    // Its final report is still on its way: nothing is taken back.
    assert_eq!(
        ledgers
            .reclaim_due("ns", &mut ns, t0 + Duration::from_secs(1))
            .reclaimed,
        []
    );
    assert_eq!(ns.ledger.budgets["monthly"].pods["pod-a"].granted, MicroUsd::new(100));
    assert!(!ns.dirty);
    // Applied with the flush's reports: taken back in the same write.
    ns.ledger.apply("a", &last_of("pod-a", 2), &budget_of);
    assert_eq!(
        ledgers
            .reclaim_due("ns", &mut ns, t0 + Duration::from_secs(2))
            .reclaimed,
        [("pod-a".to_owned(), false)]
    );
    let grant = ns.ledger.budgets["monthly"].pods["pod-a"];
    assert_eq!((grant.granted, grant.spent), (MicroUsd::new(40), MicroUsd::new(40)));
    assert!(ns.dirty);
    // Once only.
    assert_eq!(
        ledgers
            .reclaim_due("ns", &mut ns, t0 + Duration::from_secs(3))
            .reclaimed,
        []
    );

    // A pod whose final report never comes is reclaimed when the wait is over, and said so.
    granted(&mut ns.ledger, "pod-b", 50);
    ledgers.pod_gone("ns", "pod-b", t0);
    assert_eq!(
        ledgers
            .reclaim_due("ns", &mut ns, t0 + Duration::from_secs(59))
            .reclaimed,
        []
    );
    let departures = ledgers.reclaim_due("ns", &mut ns, t0 + crate::ledgers::RECLAIM_WAIT);
    assert_eq!(departures.reclaimed, [("pod-b".to_owned(), true)]);
    // Taken back, then its records removed (`prune` has the rules).
    assert_eq!(departures.forgotten, ["pod-a", "pod-b"]);
    assert!(!ns.ledger.budgets["monthly"].pods.contains_key("pod-b"));
}

#[test]
fn a_configmap_without_a_ledger_in_it_is_unreadable_never_an_empty_ledger() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let cm = |data: Option<(&str, &str)>| ConfigMap {
        data: data.map(|(k, v)| [(k.to_owned(), v.to_owned())].into()),
        ..ConfigMap::default()
    };
    assert_eq!(super::load::parse(&cm(None)).unwrap_err(), "it has no key ledger.json");
    assert_eq!(
        super::load::parse(&cm(Some(("other", "{}")))).unwrap_err(),
        "it has no key ledger.json"
    );
    let garbage = super::load::parse(&cm(Some(("ledger.json", "{\"pods\": [not a ledger")))).unwrap_err();
    assert!(garbage.starts_with("ledger.json is not a usage ledger: "), "{garbage}");
    // The wrong shape: a sequence that is not a number.
    let shape = super::load::parse(&cm(Some((
        "ledger.json",
        r#"{"pods": {"uid-a": {"name": "a", "sequence": "many"}}}"#,
    ))))
    .unwrap_err();
    assert!(shape.contains("invalid type"), "{shape}");
    // A ledger as written, incident included, reads back.
    let ledger = Ledger {
        incident: Some(Incident {
            kind: IncidentKind::RebuiltFromStatus,
            at: start(),
        }),
        ..Ledger::default()
    };
    let text = serde_json::to_string(&ledger).unwrap();
    assert!(
        text.ends_with(r#""incident":{"kind":"rebuiltFromStatus","at":"2026-11-01T00:00:00Z"}}"#),
        "{text}"
    );
    assert_eq!(super::load::parse(&cm(Some(("ledger.json", &text)))).unwrap(), ledger);
}
