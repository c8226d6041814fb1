#![allow(clippy::unwrap_used)]

use sluice_crds::BackendName;

use super::*;

fn route() -> ObjectKey {
    ObjectKey {
        namespace: "team".into(),
        name: "chat".into(),
    }
}

fn said(circuit: CircuitState, requests: u64, errors: u64, p50: Option<u64>) -> BackendHealth {
    BackendHealth {
        route: route(),
        backend: BackendName::try_from("a").unwrap(),
        circuit,
        requests,
        errors,
        latency_p50_ms: p50,
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn the_median_is_weighted_by_requests_so_a_busy_pod_outweighs_an_idle_slow_one() {
    let health = Health::default();
    let t0 = Instant::now();
    health.apply("p1", 1, &[said(CircuitState::Closed, 90, 0, Some(100))], t0);
    health.apply("p2", 1, &[said(CircuitState::Closed, 10, 0, Some(900))], t0);
    health.apply("p3", 1, &[said(CircuitState::Closed, 20, 0, Some(200))], t0);
    let a = health.backend(&route(), "a", t0);
    // Weights 90 @100, 20 @200, 10 @900: half of 120 is reached at 100.
    assert_eq!(a.latency_p50_ms, Some(100));
    assert_eq!((a.requests, a.errors, a.healthy), (120, 0, true));
    // Two equal halves: the lower median.
    assert_eq!(weighted_median(vec![(300, 5), (100, 5)]), Some(100));
    assert_eq!(weighted_median(vec![]), None);
}

#[test]
fn the_median_weight_is_the_answered_attempts_so_failures_do_not_weigh() {
    let health = Health::default();
    let t0 = Instant::now();
    health.apply("p1", 1, &[said(CircuitState::Closed, 50, 48, Some(900))], t0);
    health.apply("p2", 1, &[said(CircuitState::Closed, 5, 0, Some(100))], t0);
    assert_eq!(health.backend(&route(), "a", t0).latency_p50_ms, Some(100));
}

#[test]
fn one_pod_with_the_circuit_open_makes_it_open_and_half_open_ranks_above_closed() {
    let health = Health::default();
    let t0 = Instant::now();
    health.apply("p1", 1, &[said(CircuitState::Closed, 10, 0, Some(50))], t0);
    health.apply("p2", 1, &[said(CircuitState::HalfOpen, 0, 0, None)], t0);
    let a = health.backend(&route(), "a", t0);
    assert_eq!((a.circuit, a.healthy), (CircuitState::HalfOpen, false));
    health.apply("p3", 1, &[said(CircuitState::Open, 5, 5, None)], t0);
    let a = health.backend(&route(), "a", t0);
    assert_eq!(
        a,
        Aggregate {
            circuit: CircuitState::Open,
            requests: 15,
            errors: 5,
            latency_p50_ms: Some(50),
            healthy: false,
        }
    );
    // p3 and p2 recover: closed again.
    health.apply("p3", 2, &[said(CircuitState::Closed, 1, 0, Some(60))], t0 + secs(1));
    health.apply("p2", 2, &[said(CircuitState::Closed, 1, 0, Some(60))], t0 + secs(1));
    assert_eq!(
        health.backend(&route(), "a", t0 + secs(1)).circuit,
        CircuitState::Closed
    );
}

#[test]
fn healthy_means_closed_and_at_most_half_of_the_recent_attempts_failed() {
    let health = Health::default();
    let t0 = Instant::now();
    health.apply("p1", 1, &[said(CircuitState::Closed, 10, 5, Some(50))], t0);
    assert!(health.backend(&route(), "a", t0).healthy);
    health.apply("p1", 2, &[said(CircuitState::Closed, 2, 2, None)], t0);
    let a = health.backend(&route(), "a", t0);
    assert_eq!((a.requests, a.errors, a.healthy), (12, 7, false));
}

#[test]
fn a_report_sequence_is_taken_once() {
    let health = Health::default();
    let t0 = Instant::now();
    assert_eq!(
        health.apply("p1", 3, &[said(CircuitState::Open, 4, 4, None)], t0),
        vec![route()]
    );
    // Resent after a lost ack, or an older one: nothing added, nothing changed.
    assert!(
        health
            .apply("p1", 3, &[said(CircuitState::Open, 4, 4, None)], t0)
            .is_empty()
    );
    assert!(
        health
            .apply("p1", 2, &[said(CircuitState::Closed, 9, 0, None)], t0)
            .is_empty()
    );
    let a = health.backend(&route(), "a", t0);
    assert_eq!((a.circuit, a.requests, a.errors), (CircuitState::Open, 4, 4));
}

#[test]
fn a_pod_silent_for_a_window_stops_counting_and_old_samples_leave_the_sums() {
    let health = Health::default();
    let t0 = Instant::now();
    health.apply("gone", 1, &[said(CircuitState::Open, 4, 4, None)], t0);
    health.apply("live", 1, &[said(CircuitState::Closed, 10, 0, Some(80))], t0);
    health.apply("live", 2, &[said(CircuitState::Closed, 6, 0, Some(120))], t0 + secs(30));
    // Just before the window ends everything counts.
    let almost = t0 + WINDOW - Duration::from_millis(1);
    let a = health.backend(&route(), "a", almost);
    assert_eq!((a.circuit, a.requests), (CircuitState::Open, 20));
    assert!(health.expire(almost).is_empty());
    // At the window's end the silent pod and the first samples are out, even before expire().
    let end = t0 + WINDOW;
    let a = health.backend(&route(), "a", end);
    assert_eq!(
        a,
        Aggregate {
            circuit: CircuitState::Closed,
            requests: 6,
            errors: 0,
            latency_p50_ms: Some(120),
            healthy: true,
        }
    );
    assert_eq!(health.expire(end), vec![route()]);
    assert_eq!(health.backend(&route(), "a", end), a);
    // Another window later nothing is left: unreported.
    let later = t0 + secs(30) + WINDOW;
    assert_eq!(health.expire(later), vec![route()]);
    assert_eq!(health.backend(&route(), "a", later), Aggregate::UNREPORTED);
    assert!(health.expire(later).is_empty());
}

#[test]
fn a_deleted_pod_stops_counting_at_once_and_its_late_reports_are_ignored() {
    let health = Health::default();
    let t0 = Instant::now();
    health.apply("p1", 1, &[said(CircuitState::Open, 3, 3, None)], t0);
    health.apply("p2", 1, &[said(CircuitState::Closed, 5, 0, Some(40))], t0);
    assert_eq!(health.pod_deleted("p1", t0), vec![route()]);
    assert!(
        health
            .apply("p1", 2, &[said(CircuitState::Open, 1, 1, None)], t0)
            .is_empty()
    );
    let a = health.backend(&route(), "a", t0);
    assert_eq!((a.circuit, a.requests, a.errors), (CircuitState::Closed, 5, 0));
}
