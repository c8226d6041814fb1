//! When a budget wakes, and the budget reconciler against a mocked API server: every call it
//! makes, in order, with its exact body.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use sluice_crds::ObjectKey;

use super::*;
use crate::testing::{
    Call, NOW,
    fixtures::{
        EARLIER, LEDGER_PATH, NS, budget_status, condition, counting, exhausted, ledger_configmap, monthly_budget,
        spent_of_100, status_path, threshold,
    },
    mocked, object, stored, verified,
};

#[test]
fn a_daily_budget_wakes_just_after_local_midnight() {
    let budget = Budget::new(
        "b",
        serde_json::from_value(json!({"limitUSD": "1", "period": "daily", "timeZone": "Europe/Berlin"})).unwrap(),
    );
    // 22:30 UTC = 23:30 in Berlin: 30 minutes (and a second) to go.
    let now: Timestamp = "2026-11-21T22:30:00Z".parse().unwrap();
    assert_eq!(until_next_period(&budget, now), Duration::from_secs(1801));
}

/// A spend-forever budget of 100 USD: its period (and so every expected body) never moves.
fn spec(thresholds: &[u32]) -> Value {
    json!({"limitUSD": "100", "period": "never", "alertThresholds": thresholds})
}

/// A ledger in which `monthly` has `spent` USD (a decimal string), all on route `chat`.
fn ledger_spending(spent: &str) -> Value {
    json!({"budgets": {"monthly": {
        "periodStart": "1970-01-01T00:00:00Z", "spentUSD": spent,
        "byRoute": {"chat": spent}, "byModel": {"gpt-4.1": spent},
    }}})
}

fn status_apply(status: &Value) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Budget", "status": status})
}

/// The Warning Event the status writer publishes about `monthly`.
fn warning(reason: &str, note: &str) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": format!("monthly.{NOW}"), "namespace": NS},
        "action": "Account", "eventTime": NOW, "note": note, "reason": reason,
        "regarding": {
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Budget", "name": "monthly",
            "namespace": NS, "uid": "budget-uid",
        },
        "reportingController": "sluice-operator", "reportingInstance": "sluice-operator-0",
        "type": "Warning",
    })
}

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/team-a/events?";

#[tokio::test]
async fn a_valid_budget_gets_ready_and_the_spend_in_its_ledger_in_one_status_apply() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let budget = monthly_budget(spec(&[50, 80]), Value::Null);
    caches.budget(&object(budget.clone()));
    let spent = "12.500000";
    let status = budget_status(
        spent,
        "87.500000",
        [counting(NOW), exhausted(false, spent, NOW), threshold(None, spent, NOW)],
    );
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).answers(ledger_configmap(&ledger_spending("12.5"), Some("5"))),
        Call::apply(&status_path("budgets", "monthly"), status_apply(&status))
            .answers(stored(monthly_budget(spec(&[50, 80]), status))),
    ]);

    let action = verified(ctx, verifier, async |ctx| {
        reconcile(Arc::new(object(budget)), ctx.clone()).await
    })
    .await;

    // A budget that never rolls over still looks again within the hour.
    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(3600)));
}

#[tokio::test]
async fn a_budget_crossing_a_threshold_says_which_and_announces_it_once() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let budget = monthly_budget(spec(&[50, 80]), Value::Null);
    caches.budget(&object(budget.clone()));
    let spent = "85.000000";
    let status = budget_status(
        spent,
        "15.000000",
        [
            counting(NOW),
            exhausted(false, spent, NOW),
            threshold(Some(80), spent, NOW),
        ],
    );
    let note = format!("Budget crossed 80% of its limit: {}", spent_of_100(spent));
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).answers(ledger_configmap(&ledger_spending("85"), Some("5"))),
        Call::apply(&status_path("budgets", "monthly"), status_apply(&status))
            .answers(stored(monthly_budget(spec(&[50, 80]), status))),
        // Only the highest threshold crossed is announced.
        Call::post(EVENTS, warning("ThresholdCrossed", &note)).creates(stored(warning("ThresholdCrossed", &note))),
    ]);

    let action = verified(ctx, verifier, async |ctx| {
        reconcile(Arc::new(object(budget)), ctx.clone()).await
    })
    .await;

    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(3600)));
}

#[tokio::test]
async fn a_threshold_recorded_in_status_is_not_announced_again_after_a_restart() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let spent = "85.000000";
    let current = budget_status(
        spent,
        "15.000000",
        [
            counting(EARLIER),
            exhausted(false, spent, EARLIER),
            threshold(Some(80), spent, EARLIER),
        ],
    );
    let budget = monthly_budget(spec(&[50, 80]), current);
    caches.budget(&object(budget.clone()));
    // A fresh process (no Recorder cache, ledger not loaded): one read, no write, no Event.
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).answers(ledger_configmap(&ledger_spending("85"), Some("5"))),
    ]);

    let action = verified(ctx, verifier, async |ctx| {
        reconcile(Arc::new(object(budget)), ctx.clone()).await
    })
    .await;

    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(3600)));
}

#[tokio::test]
async fn a_budget_reaching_its_limit_announces_the_last_threshold_and_exhaustion() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let before = "85.000000";
    let earlier = budget_status(
        before,
        "15.000000",
        [
            counting(EARLIER),
            exhausted(false, before, EARLIER),
            threshold(Some(80), before, EARLIER),
        ],
    );
    let budget = monthly_budget(spec(&[50, 80, 100]), earlier);
    caches.budget(&object(budget.clone()));
    let spent = "100.000000";
    // A threshold is still reached: that status holds, so its transition time stays.
    let status = budget_status(
        spent,
        "0.000000",
        [
            counting(EARLIER),
            exhausted(true, spent, NOW),
            threshold(Some(100), spent, EARLIER),
        ],
    );
    let crossed = format!("Budget crossed 100% of its limit: {}", spent_of_100(spent));
    let gone = format!("Budget exhausted: {}", spent_of_100(spent));
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).answers(ledger_configmap(&ledger_spending("100"), Some("5"))),
        Call::apply(&status_path("budgets", "monthly"), status_apply(&status))
            .answers(stored(monthly_budget(spec(&[50, 80, 100]), status))),
        Call::post(EVENTS, warning("ThresholdCrossed", &crossed))
            .creates(stored(warning("ThresholdCrossed", &crossed))),
        Call::post(EVENTS, warning("Exhausted", &gone)).creates(stored(warning("Exhausted", &gone))),
    ]);

    let action = verified(ctx, verifier, async |ctx| {
        reconcile(Arc::new(object(budget)), ctx.clone()).await
    })
    .await;

    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(3600)));
}

#[tokio::test]
async fn an_invalid_budget_gets_a_ready_condition_naming_the_field_and_keeps_counting() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let budget = monthly_budget(spec(&[80, 80]), Value::Null);
    caches.budget(&object(budget.clone()));
    let why = "spec.alertThresholds[1]: duplicate threshold 80 (also spec.alertThresholds[0])";
    let spent = "12.500000";
    let status = budget_status(
        spent,
        "87.500000",
        [
            condition("Ready", false, "Invalid", why, 1, NOW),
            exhausted(false, spent, NOW),
            threshold(None, spent, NOW),
        ],
    );
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).answers(ledger_configmap(&ledger_spending("12.5"), Some("5"))),
        Call::apply(&status_path("budgets", "monthly"), status_apply(&status))
            .answers(stored(monthly_budget(spec(&[80, 80]), status))),
    ]);

    let (action, invalid) = verified(ctx, verifier, async |ctx| {
        let action = reconcile(Arc::new(object(budget)), ctx.clone()).await;
        let key = ObjectKey {
            namespace: NS.to_owned(),
            name: "monthly".to_owned(),
        };
        (action, ctx.verdicts.budget_invalid(&key))
    })
    .await;

    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(3600)));
    // Routes spending from it are no longer given allowances from it.
    assert_eq!(invalid.as_deref(), Some(why));
}
