#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sluice_crds::{
    BackendName, MicroUsd, ModelName, ObjectKey, Outcome, Tokens, UsageAck, UsageDelta,
    control::{Hello, PodIdentity},
};

use super::{
    backoff::{LEADER_SEARCH_MAX_BACKOFF, LEADER_SEARCH_TRIES, Pacing, backoff},
    state,
    usage::Reports,
};
use crate::accounting::ledger::UsageLedger;

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
        cost: MicroUsd::new(cost),
        failovers: 0,
        estimated: false,
    }
}

#[test]
fn one_report_in_flight_resent_unchanged_until_acked() {
    let ledger = UsageLedger::default();
    let mut reports = Reports::default();
    ledger.restore(vec![delta(5)]);
    // Without a pod identity nothing is cut.
    assert_eq!(reports.next(&ledger, None).0, None);
    let (first, changed) = reports.next(&ledger, Some("uid-1"));
    let first = first.unwrap();
    assert!(changed);
    assert_eq!((first.sequence, first.deltas[0].cost), (1, MicroUsd::new(5)));
    // More usage merges in the ledger while the report waits; the report does not change.
    ledger.restore(vec![delta(7)]);
    ledger.restore(vec![delta(1)]);
    assert_eq!(reports.next(&ledger, Some("uid-1")).0.unwrap(), first);
    assert!(!reports.acked(UsageAck { sequence: 0 }));
    assert!(reports.acked(UsageAck { sequence: 1 }));
    let second = reports.next(&ledger, Some("uid-1")).0.unwrap();
    assert_eq!(
        (second.sequence, second.deltas.len(), second.deltas[0].cost),
        (2, 1, MicroUsd::new(8))
    );
}

#[test]
fn a_report_refused_for_good_is_dropped_and_later_usage_goes_in_the_next_number() {
    let ledger = UsageLedger::default();
    let mut reports = Reports::default();
    ledger.restore(vec![delta(5)]);
    let first = reports.next(&ledger, Some("uid-1")).0.unwrap();
    ledger.restore(vec![delta(7)]);
    // Only the report in flight is dropped, by its number.
    assert_eq!(reports.refused(2), None);
    assert_eq!(reports.refused(1), Some(first));
    assert_eq!(reports.state().in_flight, None);
    assert_eq!(reports.refused(1), None);
    // The next report is not held back: it carries what came after, under the next number.
    let second = reports.next(&ledger, Some("uid-1")).0.unwrap();
    assert_eq!(
        (second.sequence, second.deltas.len(), second.deltas[0].cost),
        (2, 1, MicroUsd::new(7))
    );
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
    assert_eq!(reports.next(&ledger, Some("u")).0.unwrap().sequence, 42);
}

#[test]
fn state_files_are_private_and_round_trip() {
    let dir = std::env::temp_dir().join(format!("sluice-control-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let value = state::UsageState {
        next_sequence: 3,
        in_flight: None,
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
