//! Removing departed pods' records: when, what, and what the ledger then weighs.

use std::time::{Duration, Instant};

use sluice_crds::{MicroUsd, Outcome};

use super::{budget_of, delta, granted, last_of, report};
use crate::{
    ledgers::{Ledgers, NamespaceLedger, RECLAIM_WAIT},
    usage::ledger::Ledger,
};

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// A ledger where pod `uid` reported `cost` once (sequence 1) and was granted `grant`.
fn spent(ns: &mut NamespaceLedger, uid: &str, cost: u64, grant: u64) {
    ns.ledger.apply(
        uid,
        &report(uid, 1, vec![delta("chat", "openai", Outcome::Ok, cost)]),
        &budget_of,
    );
    granted(&mut ns.ledger, uid, grant);
}

#[test]
fn a_finished_pods_records_go_at_the_end_of_the_wait_not_with_its_allowance() {
    let ledgers = Ledgers::default();
    let mut ns = NamespaceLedger::default();
    spent(&mut ns, "pod-a", 40, 100);
    spent(&mut ns, "pod-live", 7, 20);
    ns.ledger.apply("pod-a", &last_of("pod-a", 2), &budget_of);
    let t0 = Instant::now();
    ledgers.pod_gone("ns", "pod-a", t0);

    // Final report applied: its allowance goes back at once (100 → 40), its records stay.
    let d = ledgers.reclaim_due("ns", &mut ns, t0 + s(1));
    assert_eq!(d.reclaimed, [("pod-a".to_owned(), false)]);
    assert!(d.forgotten.is_empty());
    assert_eq!(ns.ledger.sequence("pod-a"), 2);
    let grant = ns.ledger.budgets["monthly"].pods["pod-a"];
    assert_eq!((grant.granted, grant.spent), (MicroUsd::new(40), MicroUsd::new(40)));
    // A resend of its final report within the wait is still a duplicate.
    assert!(ns.ledger.apply("pod-a", &last_of("pod-a", 2), &budget_of).duplicate);
    ns.dirty = false;
    assert_eq!(ledgers.reclaim_due("ns", &mut ns, t0 + s(59)), Default::default());
    assert!(!ns.dirty);

    // 60 s after the deletion: sequence and grant removed, totals untouched.
    let d = ledgers.reclaim_due("ns", &mut ns, t0 + RECLAIM_WAIT);
    assert!(d.reclaimed.is_empty());
    assert_eq!(d.forgotten, ["pod-a"]);
    assert!(ns.dirty);
    assert!(!ns.ledger.pods.contains_key("pod-a"));
    let monthly = &ns.ledger.budgets["monthly"];
    assert!(!monthly.pods.contains_key("pod-a"));
    assert_eq!(monthly.spent, MicroUsd::new(47));
    assert_eq!(monthly.by_route["chat"], MicroUsd::new(47));
    assert_eq!(ns.ledger.routes["chat"].usage.requests, 4);
    assert_eq!(ns.ledger.routes["chat"].usage.cost_usd, MicroUsd::new(47));
    // The live pod is untouched; nothing is noted any more.
    assert_eq!(ns.ledger.sequence("pod-live"), 1);
    assert_eq!(monthly.pods["pod-live"].granted, MicroUsd::new(20));
    assert!(!ledgers.is_gone("ns", "pod-a"));
    assert_eq!(ledgers.reclaim_due("ns", &mut ns, t0 + s(3600)), Default::default());
}

#[test]
fn an_unreported_pod_is_taken_back_and_forgotten_in_the_same_flush_at_the_end_of_the_wait() {
    let ledgers = Ledgers::default();
    let mut ns = NamespaceLedger::default();
    spent(&mut ns, "pod-b", 30, 80);
    // Granted, never reported (no sequence record).
    granted(&mut ns.ledger, "pod-c", 50);
    let t0 = Instant::now();
    ledgers.pod_gone("ns", "pod-b", t0);
    ledgers.pod_gone("ns", "pod-c", t0 + s(10));

    assert_eq!(ledgers.reclaim_due("ns", &mut ns, t0 + s(59)), Default::default());
    assert_eq!(ns.ledger.budgets["monthly"].pods["pod-b"].granted, MicroUsd::new(80));

    let d = ledgers.reclaim_due("ns", &mut ns, t0 + s(60));
    assert_eq!(d.reclaimed, [("pod-b".to_owned(), true)]);
    assert_eq!(d.forgotten, ["pod-b"]);
    assert!(ledgers.is_gone("ns", "pod-c"));
    let d = ledgers.reclaim_due("ns", &mut ns, t0 + s(70));
    assert_eq!(d.reclaimed, [("pod-c".to_owned(), true)]);
    assert_eq!(d.forgotten, ["pod-c"]);
    assert_eq!(ns.ledger.pod_uids().len(), 0);
    assert_eq!(ns.ledger.budgets["monthly"].spent, MicroUsd::new(30));
}

#[test]
fn a_write_that_fails_puts_the_notes_back_with_their_deletion_times() {
    let ledgers = Ledgers::default();
    let mut ns = NamespaceLedger::default();
    spent(&mut ns, "pod-a", 40, 100);
    let t0 = Instant::now();
    ledgers.pod_gone("ns", "pod-a", t0);
    let d = ledgers.reclaim_due("ns", &mut ns, t0 + s(60));
    assert_eq!(d.forgotten, ["pod-a"]);
    assert!(!ledgers.is_gone("ns", "pod-a"));
    // The write failed: the ledger is reloaded with pod-a's records, and the note is back
    // with its first time (due again at once, not 60 s later).
    ledgers.restore_gone("ns", d);
    let mut reloaded = NamespaceLedger::default();
    spent(&mut reloaded, "pod-a", 40, 100);
    let d = ledgers.reclaim_due("ns", &mut reloaded, t0 + s(61));
    assert_eq!(d.reclaimed, [("pod-a".to_owned(), true)]);
    assert_eq!(d.forgotten, ["pod-a"]);
    assert!(reloaded.ledger.pod_uids().is_empty());
}

#[test]
fn forget_removes_the_sequence_and_every_budgets_grant() {
    let mut ledger = Ledger::default();
    ledger.apply(
        "a",
        &report("pod-a", 3, vec![delta("chat", "openai", Outcome::Ok, 5)]),
        &budget_of,
    );
    ledger
        .budgets
        .insert("weekly".into(), ledger.budgets["monthly"].clone());
    assert!(ledger.forget("pod-a"));
    assert!(ledger.pod_uids().is_empty());
    assert_eq!(ledger.budgets["weekly"].spent, MicroUsd::new(5));
    assert!(!ledger.forget("pod-a"));
}

/// A pod UID as the API server makes them (36 characters).
fn uid(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-000000000000")
}

#[test]
fn the_ledger_of_5000_churned_pods_is_its_totals_only() {
    let ledgers = Ledgers::default();
    let mut ns = NamespaceLedger::default();
    let size = |l: &Ledger| serde_json::to_string(l).unwrap().len();
    // One pod first, to measure a live pod's weight.
    let empty = size(&ns.ledger);
    spent(&mut ns, &uid(0), 1_000, 2_000_000);
    let one = size(&ns.ledger);
    let t0 = Instant::now();
    for i in 1..5_000 {
        // A 30-character pod name, as a Deployment's pods have.
        let name = format!("chat-worker-7d9f8c6b5-{i:08}");
        ns.ledger.apply(
            &name,
            &report(&uid(i), 1, vec![delta("chat", "openai", Outcome::Ok, 1_000)]),
            &budget_of,
        );
        granted(&mut ns.ledger, &uid(i), 2_000_000);
    }
    let live = size(&ns.ledger);
    // Live, each pod is its sequence record and its grant: 181 bytes with a 30-character name
    // (94 for the record, 87 for the grant).
    let per_pod = (live - one) / 4_999;
    assert_eq!(per_pod, 181, "live: {live} bytes");
    assert!(live < 900 * 1024, "5,000 live pods: {live} bytes");
    let totals_before = ns.ledger.budgets["monthly"].spent;
    assert_eq!(totals_before, MicroUsd::new(5_000_000));

    for i in 0..5_000 {
        ledgers.pod_gone("ns", &uid(i), t0);
    }
    let d = ledgers.reclaim_due("ns", &mut ns, t0 + RECLAIM_WAIT);
    assert_eq!(d.forgotten.len(), 5_000);
    // What they leave: the totals, as one report of all of them would.
    let left = size(&ns.ledger);
    assert!(ns.ledger.pod_uids().is_empty());
    assert_eq!(ns.ledger.budgets["monthly"].spent, MicroUsd::new(5_000_000));
    assert_eq!(ns.ledger.routes["chat"].usage.requests, 10_000);
    assert!(left - empty < 500, "left {left} bytes, empty {empty}");
}
