//! Status figures, and the status writes (both kinds go through one server-side apply) against
//! a mocked API server.

#![allow(clippy::unwrap_used)]

use serde_json::Value;

use super::*;
use crate::{
    ledgers::NamespaceLedger,
    testing::{
        Call,
        fixtures::{
            EARLIER, NS, budget_status, chat_route, counting, exhausted, monthly_budget, status_path, threshold,
        },
        mocked, object, stored, verified, writes,
    },
};

#[test]
fn thresholds_cross_at_exact_percentages() {
    let limit = MicroUsd::new(10_000_000);
    assert_eq!(highest_crossed(&[50, 80, 100], MicroUsd::new(4_999_999), limit), None);
    assert_eq!(
        highest_crossed(&[50, 80, 100], MicroUsd::new(5_000_000), limit),
        Some(50)
    );
    assert_eq!(
        highest_crossed(&[100, 50, 80], MicroUsd::new(10_000_000), limit),
        Some(100)
    );
    assert_eq!(recorded_threshold("80% of the limit reached: …"), Some(80));
}

#[test]
fn figures_reset_when_the_period_rolled_over() {
    let spec: BudgetSpec =
        serde_json::from_value(json!({"limitUSD": "10", "period": "daily", "timeZone": "Europe/Berlin"})).unwrap();
    let totals = BudgetTotals {
        period_start: Some("2026-11-20T23:00:00Z".parse().unwrap()),
        spent: MicroUsd::new(3_000_000),
        ..BudgetTotals::default()
    };
    let during = budget_figures(&spec, Some(&totals), "2026-11-21T12:00:00Z".parse().unwrap());
    assert_eq!(during.period_start.as_deref(), Some("2026-11-21T00:00:00+01:00"));
    assert_eq!(
        (during.spent_usd, during.remaining_usd),
        (MicroUsd::new(3_000_000), MicroUsd::new(7_000_000))
    );
    let next_day = budget_figures(&spec, Some(&totals), "2026-11-21T23:00:00Z".parse().unwrap());
    assert_eq!(next_day.period_start.as_deref(), Some("2026-11-22T00:00:00+01:00"));
    assert_eq!(next_day.spent_usd, MicroUsd::ZERO);
}

fn key(name: &str) -> ObjectKey {
    ObjectKey {
        namespace: NS.to_owned(),
        name: name.to_owned(),
    }
}

/// Gives the context the ledger `ledger` of [`NS`], as if loaded.
fn load_ledger(ctx: &Context, ledger: Value) {
    let loaded = NamespaceLedger {
        ledger: object(ledger),
        resource_version: Some("5".to_owned()),
        dirty: false,
    };
    ctx.ledgers.insert_if_absent(NS, loaded);
}

#[tokio::test]
async fn a_failed_status_write_is_counted_and_retried_at_the_next_flush() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    caches.route(&object(chat_route(1, json!({}), Value::Null)));
    load_ledger(
        &ctx,
        json!({"routes": {"chat": {
            "usage": {"requests": 10, "errors": 6, "failovers": 2, "cacheHits": 1, "inputTokens": 900, "outputTokens": 80,
                "cacheWriteInputTokens": 300, "costUSD": "0.0025"},
            "backends": {"openai": {"requests": 9, "errors": 6}},
        }}}),
    );
    // Two sidecars report on the backend: one has its circuit open.
    let health = |circuit: &str, requests: u64, errors: u64, p50: Value| -> sluice_crds::BackendHealth {
        object(
            json!({"route": {"namespace": NS, "name": "chat"}, "backend": "openai", "circuit": circuit,
            "requests": requests, "errors": errors, "latencyP50Ms": p50}),
        )
    };
    let now = std::time::Instant::now();
    ctx.health.apply("uid-a", 1, &[health("open", 3, 3, Value::Null)], now);
    ctx.health.apply("uid-b", 1, &[health("closed", 4, 0, json!(820))], now);
    ctx.marks.routes([key("chat")]);
    let status = json!({
        "sidecars": {"desired": 0, "inSync": 0, "outdated": 0},
        "usage": {"requests": 10, "errors": 6, "failovers": 2, "cacheHits": 1, "inputTokens": 900, "outputTokens": 80,
            "cacheWriteInputTokens": 300, "costUSD": "0.002500"},
        // Requests and errors since creation from the ledger; circuit, health and latency from
        // what the sidecars reported lately.
        "backends": [{"name": "openai", "healthy": false, "circuit": "open", "requests": 9, "errors": 6, "latencyP50Ms": 820}],
    });
    let apply = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "ModelRoute", "status": status});
    let path = status_path("modelroutes", "chat");
    let verifier = server.run(vec![
        Call::apply(&path, apply.clone()).fails(500, "InternalError", "etcdserver: leader changed"),
        Call::apply(&path, apply).answers(stored(chat_route(1, json!({}), status))),
    ]);

    let counts = verified(ctx, verifier, async |ctx| {
        write_dirty(ctx).await;
        write_dirty(ctx).await;
        // Written: nothing is left to retry.
        write_dirty(ctx).await;
        (writes(ctx, "modelroute", "error"), writes(ctx, "modelroute", "ok"))
    })
    .await;

    assert_eq!(counts, (1, 1));
}

#[tokio::test]
async fn a_budget_status_write_keeps_the_reconcilers_conditions_and_their_times() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let spec = json!({"limitUSD": "100", "period": "never", "alertThresholds": [50]});
    let before = "5.000000";
    let written = budget_status(
        before,
        "95.000000",
        [
            counting(EARLIER),
            exhausted(false, before, EARLIER),
            threshold(None, before, EARLIER),
        ],
    );
    caches.budget(&object(monthly_budget(spec.clone(), written)));
    load_ledger(
        &ctx,
        json!({"budgets": {"monthly": {
            "periodStart": "1970-01-01T00:00:00Z", "spentUSD": "7",
            "byRoute": {"chat": "7"}, "byModel": {"gpt-4.1": "7"},
        }}}),
    );
    ctx.marks.budgets([key("monthly")]);
    let now = "7.000000";
    let status = budget_status(
        now,
        "93.000000",
        [
            counting(EARLIER),
            exhausted(false, now, EARLIER),
            threshold(None, now, EARLIER),
        ],
    );
    let apply = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Budget", "status": status});
    let verifier = server.run(vec![
        Call::apply(&status_path("budgets", "monthly"), apply).answers(stored(monthly_budget(spec, status))),
    ]);

    let ok = verified(ctx, verifier, async |ctx| {
        write_dirty(ctx).await;
        writes(ctx, "budget", "ok")
    })
    .await;

    assert_eq!(ok, 1);
}

#[tokio::test]
async fn an_object_gone_from_the_cache_is_not_written() {
    let (client, server) = mocked();
    let (ctx, _caches) = Context::for_tests(client);
    ctx.marks.routes([key("chat")]);
    ctx.marks.budgets([key("monthly")]);
    let verifier = server.run(Vec::new());

    let left = verified(ctx, verifier, async |ctx| {
        write_dirty(ctx).await;
        ctx.marks.take()
    })
    .await;

    assert_eq!(left, Default::default());
}

/// A pod of [`NS`] carrying a sidecar, labelled `labels`.
fn pod(name: &str, labels: Value) -> k8s_openapi::api::core::v1::Pod {
    object(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "labels": labels},
    }))
}

#[tokio::test]
async fn a_route_status_counts_the_sidecars_its_selector_picks() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let selector = json!({"podSelector": {"matchLabels": {"app": "bot"}}});
    let route = chat_route(1, selector.clone(), Value::Null);
    caches.route(&object(route.clone()));
    caches.pod(&pod("bot-1", json!({"app": "bot", "sluice.dev/sidecar": "true"})));
    caches.pod(&pod("bot-2", json!({"app": "bot", "sluice.dev/sidecar": "true"})));
    caches.pod(&pod("web-1", json!({"app": "web", "sluice.dev/sidecar": "true"})));
    let accepted = crate::desired::AcceptedRoute {
        key: key("chat"),
        generation: 1,
        spec: object(route["spec"].clone()),
        credentials: Default::default(),
        header_values: Default::default(),
    };
    let version = accepted.digest();
    ctx.verdicts.accept_if_absent(accepted);
    let status = json!({"configVersion": version, "sidecars": {"desired": 2, "inSync": 0, "outdated": 0}});
    let apply = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "ModelRoute", "status": status});
    let verifier = server.run(vec![
        Call::apply(&status_path("modelroutes", "chat"), apply).answers(stored(chat_route(1, selector, status))),
    ]);

    let written = verified(ctx, verifier, async |ctx| write_route(ctx, &key("chat")).await).await;

    written.unwrap();
}
