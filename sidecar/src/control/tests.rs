#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sluice_crds::{
    BackendName, MicroUsd, ModelName, ObjectKey, Outcome, Tokens, UsageAck, UsageDelta,
    control::{Hello, PodIdentity},
};

use super::{
    backoff::{LEADER_SEARCH_MAX_BACKOFF, LEADER_SEARCH_TRIES, Pacing, backoff},
    journal,
    reporting::resume_journal,
    state,
    usage::{MAX_QUEUED, Reports},
};
use crate::{
    accounting::ledger::{Entry, UsageLedger},
    wire::Usage,
};

#[test]
fn backoff_doubles_from_200ms_up_to_the_cap_with_full_jitter() {
    let max = Duration::from_secs(30);
    // `random` at its maximum gives the ceiling itself (modulo ceiling + 1).
    assert_eq!(backoff(0, max, 200), Duration::from_millis(200));
    assert_eq!(backoff(3, max, 1600), Duration::from_millis(1600));
    assert_eq!(backoff(30, max, 30_000), max);
    assert_eq!(backoff(4, max, 0), Duration::ZERO);
    assert!(backoff(4, max, u64::MAX) <= Duration::from_millis(3200));
}

#[test]
fn a_followers_refusal_is_retried_within_two_seconds_then_the_usual_backoff_takes_over() {
    let max = Duration::from_secs(30);
    let short = Duration::from_millis(10);
    let mut pacing = Pacing::new(max);
    let ms = Duration::from_millis;
    let search: Vec<Duration> = (0..LEADER_SEARCH_TRIES).map(|_| pacing.next(true, short)).collect();
    assert_eq!(
        &search[..5],
        &[ms(200), ms(400), ms(800), ms(1600), LEADER_SEARCH_MAX_BACKOFF]
    );
    assert!(
        search[5..].iter().all(|p| *p == LEADER_SEARCH_MAX_BACKOFF),
        "{search:?}"
    );
    // Still no leader after all those tries: the operator is as good as away.
    assert_eq!(pacing.next(true, short), ms(200));
    assert_eq!(pacing.next(true, short), ms(400));
}

#[test]
fn a_followers_refusal_does_not_inherit_the_backoff_of_an_operator_that_was_away() {
    let max = Duration::from_secs(30);
    let short = Duration::from_millis(10);
    let mut pacing = Pacing::new(max);
    for _ in 0..12 {
        pacing.next(false, short);
    }
    assert_eq!(pacing.next(false, short), max);
    assert_eq!(pacing.next(true, short), Duration::from_millis(200));
    // A failure of another kind goes on from where the away-backoff was.
    assert_eq!(pacing.next(false, short), max);
}

#[test]
fn a_stream_that_ran_a_while_starts_both_backoffs_over() {
    let max = Duration::from_secs(30);
    let mut pacing = Pacing::new(max);
    for _ in 0..12 {
        pacing.next(false, Duration::from_millis(10));
    }
    assert_eq!(pacing.next(false, Duration::from_secs(31)), Duration::from_millis(200));
}

fn delta(cost: u64) -> UsageDelta {
    UsageDelta {
        route: ObjectKey {
            namespace: "ns".into(),
            name: "chat".into(),
        },
        backend: BackendName::try_from("sim").unwrap(),
        model: ModelName::try_from("sim-1").unwrap(),
        user: None,
        outcome: Outcome::Ok,
        requests: 1,
        input_tokens: Tokens(1),
        cached_input_tokens: Tokens(0),
        output_tokens: Tokens(1),
        cache_write_input_tokens: Tokens(0),
        cost: MicroUsd::new(cost),
        failovers: 0,
        estimated: false,
    }
}

/// Cuts `ledger` into `reports` as the reporter does.
fn cut(reports: &mut Reports, ledger: &UsageLedger, final_report: bool) -> bool {
    let (deltas, floor) = ledger.cut();
    reports.cut(deltas, Vec::new(), floor, "uid-1", final_report)
}

fn costs(reports: &Reports) -> Vec<(u64, u64)> {
    reports
        .state()
        .queue
        .iter()
        .map(|r| (r.sequence, r.deltas.iter().map(|d| d.cost.micros()).sum()))
        .collect()
}

#[test]
fn a_report_is_cut_every_interval_while_the_first_waits_and_only_the_first_is_sent() {
    let ledger = UsageLedger::default();
    let mut reports = Reports::default();
    // Nothing to cut, nothing queued.
    assert!(!cut(&mut reports, &ledger, false));
    assert_eq!(reports.head(), None);
    ledger.restore(vec![delta(5)]);
    assert!(cut(&mut reports, &ledger, false));
    let first = reports.head().unwrap();
    assert_eq!((first.sequence, first.deltas[0].cost), (1, MicroUsd::new(5)));
    // The operator is away: each interval cuts a report of its own behind the first.
    ledger.restore(vec![delta(7), delta(1)]);
    assert!(cut(&mut reports, &ledger, false));
    ledger.restore(vec![delta(2)]);
    assert!(cut(&mut reports, &ledger, false));
    assert_eq!(costs(&reports), [(1, 5), (2, 8), (3, 2)]);
    // The first is resent unchanged until acked.
    assert_eq!(reports.head().unwrap(), first);
    assert!(!reports.acked(UsageAck { sequence: 0 }));
    assert!(reports.acked(UsageAck { sequence: 1 }));
    assert_eq!(reports.head().unwrap().sequence, 2);
    // An ack covers every report up to its sequence.
    assert!(reports.acked(UsageAck { sequence: 3 }));
    assert!(reports.is_empty());
    ledger.restore(vec![delta(4)]);
    cut(&mut reports, &ledger, false);
    assert_eq!(costs(&reports), [(4, 4)]);
}

fn health(circuit: sluice_crds::CircuitState, requests: u64) -> sluice_crds::BackendHealth {
    sluice_crds::BackendHealth {
        route: delta(0).route,
        backend: BackendName::try_from("sim").unwrap(),
        circuit,
        requests,
        errors: requests,
        latency_p50_ms: None,
    }
}

#[test]
fn health_alone_is_queued_as_a_report_and_only_the_sent_report_keeps_older_health() {
    use sluice_crds::CircuitState::{Closed, Open};
    let mut reports = Reports::default();
    assert!(reports.cut(vec![], vec![health(Open, 3)], None, "uid-1", false));
    let first = reports.head().unwrap();
    assert_eq!((first.sequence, first.deltas.len()), (1, 0));
    assert_eq!(first.health, vec![health(Open, 3)]);
    assert!(reports.cut(vec![], vec![health(Open, 0)], None, "uid-1", false));
    assert!(reports.cut(vec![], vec![health(Closed, 1)], None, "uid-1", false));
    // The first may have been sent: it stays as it was. The second never was: its health is stale.
    let kept: Vec<Vec<sluice_crds::BackendHealth>> = reports.state().queue.iter().map(|r| r.health.clone()).collect();
    assert_eq!(kept, [vec![health(Open, 3)], vec![], vec![health(Closed, 1)]]);
    // Nothing to say at all: nothing queued.
    assert!(!reports.cut(vec![], vec![], None, "uid-1", false));
    assert_eq!(reports.len(), 3);
    // On the wire a report without health has no `health` key, and one from an older sidecar
    // (no key) reads as none.
    let text = serde_json::to_string(&reports.state().queue[1]).unwrap();
    assert!(!text.contains("health"), "{text}");
    let back: sluice_crds::UsageReport = serde_json::from_str(&text).unwrap();
    assert!(back.health.is_empty());
}

#[test]
fn a_cut_merged_into_the_last_report_replaces_its_health() {
    let mut reports = Reports::default();
    for _ in 0..MAX_QUEUED {
        reports.cut(vec![delta(1)], vec![], None, "uid-1", false);
    }
    reports.cut(
        vec![delta(1)],
        vec![health(sluice_crds::CircuitState::Open, 2)],
        None,
        "uid-1",
        false,
    );
    reports.cut(
        vec![],
        vec![health(sluice_crds::CircuitState::HalfOpen, 0)],
        None,
        "uid-1",
        false,
    );
    let last = reports.state().queue.last().unwrap();
    assert_eq!(reports.len(), MAX_QUEUED);
    assert_eq!(last.health, vec![health(sluice_crds::CircuitState::HalfOpen, 0)]);
}

#[test]
fn past_the_bound_a_cut_merges_into_the_last_report_and_never_into_the_first() {
    let ledger = UsageLedger::default();
    let mut reports = Reports::default();
    for cost in 1..=MAX_QUEUED as u64 {
        ledger.restore(vec![delta(cost)]);
        cut(&mut reports, &ledger, false);
    }
    assert_eq!(reports.len(), MAX_QUEUED);
    let first = reports.head().unwrap();
    let mut other = delta(100);
    other.user = Some("ann".into());
    ledger.restore(vec![delta(10), other]);
    assert!(cut(&mut reports, &ledger, false));
    ledger.restore(vec![delta(20)]);
    assert!(cut(&mut reports, &ledger, false));
    assert_eq!(reports.len(), MAX_QUEUED);
    assert_eq!(reports.head().unwrap(), first);
    let last = reports.state().queue.last().unwrap();
    // Merged per key: the anonymous delta summed (8 + 10 + 20 = 38, three requests), Ann's apart.
    assert_eq!(last.sequence, MAX_QUEUED as u64);
    assert_eq!(
        last.deltas
            .iter()
            .map(|d| (d.user.clone(), d.requests, d.cost.micros()))
            .collect::<Vec<_>>(),
        [(None, 3, 38), (Some("ann".to_owned()), 1, 100)]
    );
    // The next new report, once there is room, is numbered after the merged one.
    assert!(reports.acked(UsageAck { sequence: 1 }));
    ledger.restore(vec![delta(3)]);
    cut(&mut reports, &ledger, false);
    assert_eq!(reports.state().queue.last().unwrap().sequence, MAX_QUEUED as u64 + 1);
}

#[test]
fn the_final_report_is_cut_even_empty_and_nothing_merges_into_it() {
    let ledger = UsageLedger::default();
    let mut reports = Reports::default();
    for cost in 1..=MAX_QUEUED as u64 {
        ledger.restore(vec![delta(cost)]);
        cut(&mut reports, &ledger, false);
    }
    // SIGTERM with nothing left in the ledger: a final report of its own, past the bound.
    assert!(cut(&mut reports, &ledger, true));
    let last = reports.state().queue.last().unwrap().clone();
    assert!(last.final_report && last.deltas.is_empty());
    assert_eq!((reports.len(), last.sequence), (MAX_QUEUED + 1, MAX_QUEUED as u64 + 1));
    // Killed before it was acked, restarted, serving again: later usage goes behind it.
    ledger.restore(vec![delta(3)]);
    cut(&mut reports, &ledger, false);
    ledger.restore(vec![delta(4)]);
    cut(&mut reports, &ledger, false);
    assert_eq!(reports.len(), MAX_QUEUED + 2);
    assert_eq!(reports.state().queue[MAX_QUEUED], last);
    assert_eq!(costs(&reports).last(), Some(&(MAX_QUEUED as u64 + 2, 7)));
    // On the wire `final` appears only when true.
    let text = serde_json::to_string(&reports.head().unwrap()).unwrap();
    assert!(!text.contains("final"), "{text}");
    let text = serde_json::to_string(&last).unwrap();
    assert!(text.contains("\"final\":true"), "{text}");
}

#[test]
fn a_report_refused_for_good_is_dropped_and_later_usage_goes_in_the_next_number() {
    let ledger = UsageLedger::default();
    let mut reports = Reports::default();
    ledger.restore(vec![delta(5)]);
    cut(&mut reports, &ledger, false);
    let first = reports.head().unwrap();
    ledger.restore(vec![delta(7)]);
    // Only the first report is dropped, by its number.
    assert_eq!(reports.refused(2), None);
    assert_eq!(reports.refused(1), Some(first));
    assert!(reports.is_empty());
    assert_eq!(reports.refused(1), None);
    // The next report is not held back: it carries what came after, under the next number.
    cut(&mut reports, &ledger, false);
    assert_eq!(costs(&reports), [(2, 7)]);
}

#[test]
fn a_restarted_sidecar_numbers_above_what_the_operator_applied() {
    let mut reports = Reports::default();
    let hello = Hello {
        pod: PodIdentity {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
        },
        last_applied_sequence: 41,
        heartbeat_secs: 15,
        budgets: vec![],
    };
    assert!(reports.hello(&hello));
    let ledger = UsageLedger::default();
    ledger.restore(vec![delta(1)]);
    cut(&mut reports, &ledger, false);
    assert_eq!(reports.head().unwrap().sequence, 42);
}

#[test]
fn a_state_file_of_the_one_report_in_flight_days_loads_into_the_queue() {
    let text = r#"{"nextSequence": 4, "inFlight": {"podUid": "u", "sequence": 3, "deltas": []}}"#;
    let reports = Reports::new(serde_json::from_str(text).unwrap());
    assert_eq!(costs(&reports), [(3, 0)]);
    assert_eq!(reports.state().next_sequence, 4);
    let saved = serde_json::to_string(reports.state()).unwrap();
    assert!(!saved.contains("inFlight"), "{saved}");
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-control-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Settles one request in `ledger` as the recorder does.
fn settle(ledger: &UsageLedger, cost: u64) {
    let route = delta(0).route;
    let backend = BackendName::try_from("sim").unwrap();
    let model = ModelName::try_from("sim-1").unwrap();
    ledger.add(&Entry {
        route: &route,
        backend: &backend,
        model: &model,
        user: None,
        outcome: Outcome::Ok,
        usage: Usage {
            input: Tokens(1),
            output: Tokens(1),
            ..Usage::default()
        },
        cost: MicroUsd::new(cost),
        failovers: 0,
    });
}

/// What a sidecar starting on `dir` holds: its saved queue and its replayed ledger.
fn restart(dir: &std::path::Path) -> (Reports, UsageLedger) {
    let saved = state::load::<state::UsageState>(dir, state::USAGE_FILE)
        .unwrap()
        .unwrap_or_default();
    let reports = Reports::new(saved);
    let ledger = UsageLedger::default();
    resume_journal(dir, reports.state().journal_floor, &ledger);
    (reports, ledger)
}

#[test]
fn a_killed_sidecar_restarts_with_its_queue_and_every_settled_request_not_cut_yet_each_once() {
    let dir = scratch("journal");
    let (mut reports, ledger) = restart(&dir);
    assert!(reports.is_empty());
    settle(&ledger, 5);
    settle(&ledger, 7);
    // A cut while the operator is away: saved, and the journal it covers deleted.
    cut(&mut reports, &ledger, false);
    state::save(&dir, state::USAGE_FILE, reports.state()).unwrap();
    journal::remove_below(&dir, reports.state().journal_floor);
    assert_eq!(journal::generations(&dir), Vec::<u64>::new());
    // Two more requests settle; then the process is killed (nothing else runs).
    settle(&ledger, 11);
    settle(&ledger, 13);
    assert_eq!(journal::generations(&dir), [1]);
    drop((reports, ledger));

    let (reports, ledger) = restart(&dir);
    assert_eq!(costs(&reports), [(1, 12)]);
    // More usage after the restart is journalled in a later generation.
    settle(&ledger, 17);
    assert_eq!(journal::generations(&dir), [1, 2]);
    // Killed again before any cut: the same again, nothing doubled.
    drop((reports, ledger));
    let (mut reports, ledger) = restart(&dir);
    cut(&mut reports, &ledger, false);
    assert_eq!(costs(&reports), [(1, 12), (2, 41)]);
    assert_eq!(reports.state().journal_floor, 4);
    assert_eq!(reports.state().queue[1].deltas[0].requests, 3);
    state::save(&dir, state::USAGE_FILE, reports.state()).unwrap();
    journal::remove_below(&dir, reports.state().journal_floor);
    drop((reports, ledger));
    let (reports, ledger) = restart(&dir);
    assert_eq!(costs(&reports), [(1, 12), (2, 41)]);
    assert!(ledger.take().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_last_journal_line_is_skipped() {
    let dir = scratch("torn");
    std::fs::create_dir_all(&dir).unwrap();
    let line = serde_json::to_string(&delta(5)).unwrap();
    std::fs::write(journal::path(&dir, 0), format!("{line}\n{}", &line[..line.len() / 2])).unwrap();
    let (deltas, next) = journal::replay(&dir, 0);
    assert_eq!((deltas, next), (vec![delta(5)], 1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn state_files_are_private_and_round_trip() {
    let dir = std::env::temp_dir().join(format!("sluice-control-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let value = state::UsageState {
        next_sequence: 3,
        journal_floor: 2,
        ..state::UsageState::default()
    };
    state::save(&dir, state::USAGE_FILE, &value).unwrap();
    assert_eq!(
        state::load::<state::UsageState>(&dir, state::USAGE_FILE).unwrap(),
        Some(value)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(state::USAGE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(state::load::<state::UsageState>(&dir, "missing.json").unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn health_reports_an_open_circuit_every_cut_its_closing_once_and_idle_closed_backends_never() {
    use sluice_crds::CircuitState;

    use crate::{
        circuit::Verdict,
        route::testing::{backend, route},
    };
    let r = route(
        serde_json::json!({"models": ["chat"], "circuitBreaker": {"consecutiveFailures": 2, "openFor": "1s"},
        "backends": [backend("a", serde_json::json!({})), backend("b", serde_json::json!({}))]}),
    );
    let routes = [r.clone()];
    let a = &r.backends[0].state;
    let now = tokio::time::Instant::now();
    for _ in 0..2 {
        a.health.failed();
        a.circuit
            .try_acquire(now)
            .unwrap()
            .record(Verdict::Failure, &r.circuit_breaker, now);
    }
    let seen = |h: Vec<sluice_crds::BackendHealth>| -> Vec<(String, CircuitState, u64, u64)> {
        h.into_iter()
            .map(|h| (h.backend.to_string(), h.circuit, h.requests, h.errors))
            .collect()
    };
    assert_eq!(
        seen(super::reporting::health_now(&routes)),
        [("a".to_owned(), CircuitState::Open, 2, 2)]
    );
    // Still open without traffic: said again, so the operator does not let it expire.
    assert_eq!(
        seen(super::reporting::health_now(&routes)),
        [("a".to_owned(), CircuitState::Open, 0, 0)]
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let later = tokio::time::Instant::now();
    a.circuit
        .try_acquire(later)
        .unwrap()
        .record(Verdict::Success, &r.circuit_breaker, later);
    // Closed with no attempt counted here: said once, then nothing.
    assert_eq!(
        seen(super::reporting::health_now(&routes)),
        [("a".to_owned(), CircuitState::Closed, 0, 0)]
    );
    assert!(super::reporting::health_now(&routes).is_empty());
}
