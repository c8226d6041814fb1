use std::sync::Arc;

use jiff::Timestamp;
use sluice_crds::{BudgetConfig, BudgetSpec, Enforcement, MicroUsd, ObjectKey, Period};

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn key() -> ObjectKey {
    ObjectKey {
        namespace: "team-a".into(),
        name: "monthly".into(),
    }
}

fn config(limit: &str, enforcement: Enforcement) -> BudgetConfig {
    let spec = BudgetSpec {
        limit_usd: limit.parse().unwrap(),
        period: Period::Daily,
        time_zone: "UTC".into(),
        enforcement,
        downgrade_to: vec!["cheap".try_into().unwrap()],
        alert_thresholds: vec![50, 80, 100],
    };
    BudgetConfig {
        key: key(),
        allowance: spec.limit_usd,
        allowance_period_start: None,
        exhausted: false,
        spec,
    }
}

fn account(limit: &str, enforcement: Enforcement) -> Arc<Account> {
    let budgets = Budgets::default();
    budgets
        .apply(&[config(limit, enforcement)], ts("2026-11-21T10:00:00Z"))
        .unwrap();
    budgets.get(&key()).unwrap()
}

const NOW: &str = "2026-11-21T10:00:00Z";

#[test]
fn concurrent_reservations_never_exceed_the_allowance() {
    // $0.50 allows exactly 50 requests whose worst case is $0.01; 200 race for it and each
    // keeps its hold, as a request in flight does.
    let account = account("0.50", Enforcement::Hard);
    let worst = MicroUsd::new(10_000);
    let holds: Vec<Option<Admission>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..200)
            .map(|_| s.spawn(|| account.admit(worst, ts(NOW)).ok()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(holds.iter().flatten().count(), 50);
    assert_eq!(account.available(ts(NOW)), MicroUsd::ZERO);
    // Settling every hold at its worst case spends exactly the limit, never more.
    for hold in holds.into_iter().flatten() {
        let Admission::Reserved(r) = hold else {
            panic!("expected a reservation")
        };
        r.settle(worst, ts(NOW));
    }
    assert_eq!(account.view(ts(NOW)).spent, MicroUsd::new(500_000));
}

#[test]
fn settling_replaces_the_hold_by_the_real_cost() {
    let account = account("1.00", Enforcement::Hard);
    let Ok(Admission::Reserved(r)) = account.admit(MicroUsd::new(400_000), ts(NOW)) else {
        panic!("refused")
    };
    assert_eq!(account.available(ts(NOW)), MicroUsd::new(600_000));
    r.settle(MicroUsd::new(123_456), ts(NOW));
    let view = account.view(ts(NOW));
    assert_eq!(
        (view.spent, view.reserved, view.remaining),
        (MicroUsd::new(123_456), MicroUsd::ZERO, MicroUsd::new(876_544))
    );
}

#[test]
fn a_failed_request_releases_its_hold() {
    let account = account("1.00", Enforcement::Hard);
    let admission = account.admit(MicroUsd::new(1_000_000), ts(NOW)).unwrap();
    assert!(account.admit(MicroUsd::new(1), ts(NOW)).is_err());
    drop(admission);
    assert_eq!(account.available(ts(NOW)), MicroUsd::new(1_000_000));
}

#[test]
fn hard_refusal_names_the_budget_and_its_reset() {
    let account = account("0.01", Enforcement::Hard);
    let Err(Refused::Exhausted(err)) = account.admit(MicroUsd::new(20_000), ts(NOW)) else {
        panic!("expected exhausted")
    };
    assert_eq!(err.budget, key());
    assert_eq!(err.resets_at, Some(ts("2026-11-22T00:00:00Z")));
    assert!(err.to_string().contains("team-a/monthly"), "{err}");
}

#[test]
fn soft_serves_over_the_limit_and_downgrade_names_its_backends() {
    let soft = account("0.01", Enforcement::Soft);
    assert!(matches!(
        soft.admit(MicroUsd::new(20_000), ts(NOW)),
        Ok(Admission::OverSoftLimit)
    ));
    let downgrade = account("0.01", Enforcement::Downgrade);
    match downgrade.admit(MicroUsd::new(20_000), ts(NOW)) {
        Ok(Admission::Downgrade(backends)) => assert_eq!(backends[0].as_str(), "cheap"),
        other => panic!("expected a downgrade, got {other:?}"),
    }
}

#[test]
fn spend_resets_at_the_period_boundary() {
    let account = account("1.00", Enforcement::Hard);
    account.charge(MicroUsd::new(900_000), ts(NOW));
    assert_eq!(account.available(ts("2026-11-21T23:59:59Z")), MicroUsd::new(100_000));
    assert_eq!(account.available(ts("2026-11-22T00:00:00Z")), MicroUsd::new(1_000_000));
}

#[test]
fn restores_spend_only_for_the_current_period() {
    let account = account("1.00", Enforcement::Hard);
    assert!(!account.restore(ts("2026-11-20T00:00:00Z"), MicroUsd::new(500_000), ts(NOW)));
    assert!(account.restore(ts("2026-11-21T00:00:00Z"), MicroUsd::new(500_000), ts(NOW)));
    assert_eq!(account.view(ts(NOW)).spent, MicroUsd::new(500_000));
}

#[test]
fn a_reload_keeps_spend_and_applies_the_new_limit() {
    let budgets = Budgets::default();
    budgets.apply(&[config("1.00", Enforcement::Hard)], ts(NOW)).unwrap();
    budgets.get(&key()).unwrap().charge(MicroUsd::new(300_000), ts(NOW));
    budgets.apply(&[config("2.00", Enforcement::Hard)], ts(NOW)).unwrap();
    let view = budgets.get(&key()).unwrap().view(ts(NOW));
    assert_eq!(
        (view.spent, view.remaining),
        (MicroUsd::new(300_000), MicroUsd::new(1_700_000))
    );
    budgets.apply(&[], ts(NOW)).unwrap();
    assert!(budgets.get(&key()).is_none());
}

#[test]
fn the_state_file_round_trips_spend() {
    let dir = std::env::temp_dir().join(format!("sluice-budget-state-{}", std::process::id()));
    let path = dir.join("budgets.json");
    let budgets = Budgets::default();
    budgets.apply(&[config("1.00", Enforcement::Hard)], ts(NOW)).unwrap();
    budgets.get(&key()).unwrap().charge(MicroUsd::new(250_000), ts(NOW));
    state_file::write(&path, &budgets, ts(NOW)).unwrap();

    let fresh = Budgets::default();
    fresh.apply(&[config("1.00", Enforcement::Hard)], ts(NOW)).unwrap();
    assert_eq!(state_file::restore(&path, &fresh, ts(NOW)).unwrap(), 1);
    assert_eq!(fresh.get(&key()).unwrap().view(ts(NOW)).spent, MicroUsd::new(250_000));
    // The next day the saved spend is stale.
    let tomorrow = Budgets::default();
    tomorrow
        .apply(&[config("1.00", Enforcement::Hard)], ts("2026-11-22T01:00:00Z"))
        .unwrap();
    assert_eq!(
        state_file::restore(&path, &tomorrow, ts("2026-11-22T01:00:00Z")).unwrap(),
        0
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A cluster-mode config: `allowance` granted for the day starting `period`, with `asks` as
/// where the account's asks arrive.
fn granted(
    limit: &str,
    allowance: u64,
    period: &str,
    exhausted: bool,
) -> (Arc<Account>, Budgets, tokio::sync::mpsc::UnboundedReceiver<Ask>) {
    let budgets = Budgets::default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    budgets.set_asker(tx);
    let mut c = config(limit, Enforcement::Hard);
    c.allowance = MicroUsd::new(allowance);
    c.allowance_period_start = Some(ts(period));
    c.exhausted = exhausted;
    budgets.apply(&[c], ts(NOW)).unwrap();
    (budgets.get(&key()).unwrap(), budgets, rx)
}

#[test]
fn a_grant_counts_only_in_the_period_it_was_granted_for() {
    let day = ts("2026-11-21T00:00:00Z");
    assert_eq!(
        allowance_in(MicroUsd::new(60_000), Some(day), day),
        MicroUsd::new(60_000)
    );
    assert_eq!(
        allowance_in(MicroUsd::new(60_000), Some(day), ts("2026-11-22T00:00:00Z")),
        MicroUsd::ZERO
    );
    assert_eq!(allowance_in(MicroUsd::new(60_000), None, day), MicroUsd::new(60_000));
    // Yesterday's grant is no money today; the day after the grant's own day, neither.
    let (account, _budgets, _asks) = granted("1.00", 60_000, "2026-11-20T00:00:00Z", false);
    assert_eq!(account.available(ts(NOW)), MicroUsd::ZERO);
    let (account, _budgets, _asks) = granted("1.00", 60_000, "2026-11-21T00:00:00Z", false);
    assert_eq!(account.available(ts(NOW)), MicroUsd::new(60_000));
    assert_eq!(account.available(ts("2026-11-22T00:00:01Z")), MicroUsd::ZERO);
}

#[test]
fn a_spent_slice_of_a_budget_with_money_asks_for_more_instead_of_calling_it_exhausted() {
    let (account, _budgets, mut asks) = granted("1.00", 20_000, "2026-11-21T00:00:00Z", false);
    let Ok(Admission::Reserved(r)) = account.admit(MicroUsd::new(20_000), ts(NOW)) else {
        panic!("refused")
    };
    // Nothing left of a $0.02 slice: the reservation itself asked for a slice more.
    assert_eq!(
        asks.try_recv().unwrap(),
        Ask {
            budget: key(),
            held: MicroUsd::new(20_000),
            wanted: MicroUsd::new(20_000)
        }
    );
    r.settle(MicroUsd::new(20_000), ts(NOW));
    match account.admit(MicroUsd::new(20_000), ts(NOW)) {
        Err(Refused::Short(short)) => assert!(short.asked, "the ask in flight is worth waiting for"),
        other => panic!("expected short, got {other:?}"),
    }
    // The same ask is not sent twice.
    assert!(asks.try_recv().is_err());
    // An answer with nothing more ends the wait: refused at once, without a new ask.
    account.answered(
        MicroUsd::new(20_000),
        MicroUsd::new(20_000),
        Some(ts("2026-11-21T00:00:00Z")),
        false,
    );
    match account.admit(MicroUsd::new(20_000), ts(NOW)) {
        Err(Refused::Short(short)) => assert!(!short.asked),
        other => panic!("expected short, got {other:?}"),
    }
    assert!(asks.try_recv().is_err());
}

#[test]
fn a_budget_the_operator_calls_spent_refuses_as_exhausted_until_the_period_ends() {
    let (account, _budgets, mut asks) = granted("1.00", 20_000, "2026-11-21T00:00:00Z", true);
    account.charge(MicroUsd::new(20_000), ts(NOW));
    match account.admit(MicroUsd::new(1), ts(NOW)) {
        Err(Refused::Exhausted(e)) => {
            assert_eq!(e.resets_at, Some(ts("2026-11-22T00:00:00Z")));
            assert_eq!(e.retry_after(ts(NOW)), Some(std::time::Duration::from_secs(14 * 3600)));
        }
        other => panic!("expected exhausted, got {other:?}"),
    }
    assert!(asks.try_recv().is_err(), "a spent budget is not asked");
    // The next day yesterday's word that the budget is spent no longer holds, nor does
    // yesterday's grant: the sidecar asks for today's.
    let tomorrow = ts("2026-11-22T00:00:01Z");
    match account.admit(MicroUsd::new(1), tomorrow) {
        Err(Refused::Short(short)) => assert!(short.asked),
        other => panic!("expected short, got {other:?}"),
    }
    assert_eq!(asks.try_recv().unwrap().held, MicroUsd::ZERO);
}
