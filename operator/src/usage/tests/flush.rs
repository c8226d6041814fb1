//! The usage flush against a mocked API server: queued reports applied to the namespace's
//! ledger, the ledger persisted in one write, the statuses written, and only then the reports
//! acked; and the flusher doing it every `status_interval`.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use sluice_crds::{ObjectKey, Outcome, UsageDelta, UsageReport, control::PodIdentity};
use tokio::sync::oneshot::{self, error::TryRecvError};
use tokio_util::sync::CancellationToken;

use super::delta;
use crate::{
    context::Context,
    testing::{
        Call, NOW,
        fixtures::{
            LEDGER_PATH, NS, budget_status, chat_route, counting, exhausted, ledger_configmap, monthly_budget,
            status_path, threshold,
        },
        mocked, object, reports, stored, writes,
    },
    usage::{flush, run_flusher},
};

type Ack = oneshot::Receiver<Result<u64, String>>;

/// Queues a report of pod `name` (UID `uid-<name>`) for route `chat`: two answered requests
/// costing `cost` micro-dollars.
fn submit(ctx: &Context, name: &str, sequence: u64, cost: u64) -> Ack {
    let pod = PodIdentity {
        namespace: NS.to_owned(),
        name: name.to_owned(),
        uid: format!("uid-{name}"),
    };
    let delta = UsageDelta {
        route: ObjectKey {
            namespace: NS.to_owned(),
            name: "chat".to_owned(),
        },
        ..delta("chat", "openai", Outcome::Ok, cost)
    };
    let report = UsageReport {
        pod_uid: pod.uid.clone(),
        sequence,
        deltas: vec![delta],
        final_report: false,
        health: Vec::new(),
    };
    ctx.ledgers.submit(pod, report)
}

fn unanswered(ack: &mut Ack) -> bool {
    matches!(ack.try_recv(), Err(TryRecvError::Empty))
}

/// The route `chat` spending from the never-ending Budget `monthly` (100 USD, alert at 50%).
fn spending_route(caches: &mut crate::testing::CacheWriters) {
    caches.route(&object(chat_route(
        1,
        json!({"budgetRef": {"name": "monthly"}}),
        Value::Null,
    )));
    caches.budget(&object(monthly_budget(budget_spec(), Value::Null)));
}

fn budget_spec() -> Value {
    json!({"limitUSD": "100", "period": "never", "alertThresholds": [50]})
}

/// The status apply of route `chat` (spec `extra`) with `status`, answered.
fn route_status(extra: Value, status: Value) -> Call {
    let apply = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "ModelRoute", "status": status});
    Call::apply(&status_path("modelroutes", "chat"), apply).answers(stored(chat_route(1, extra, status)))
}

/// Route `chat`'s usage after `reports` reports from [`submit`] costing `cost` USD in all.
fn chat_usage(reports: u64, cost: &str) -> Value {
    json!({
        "requests": 2 * reports, "errors": 0, "failovers": reports, "cacheHits": 0,
        "inputTokens": 100 * reports, "outputTokens": 10 * reports, "costUSD": cost,
    })
}

/// The ledger after one free report of pod `a` on a route without a budget.
fn one_free_report() -> Value {
    json!({
        "pods": {"uid-a": {"name": "a", "sequence": 1}},
        "routes": {"chat": {"usage": chat_usage(1, "0.000000"), "backends": {"openai": {"requests": 2, "errors": 0}}}},
        "budgets": {},
        "accepted": {},
    })
}

/// Runs one flush in a task of its own, so the test can answer its calls.
fn flushing(ctx: &Arc<Context>) -> tokio::task::JoinHandle<()> {
    let ctx = ctx.clone();
    tokio::spawn(async move { flush(&ctx).await })
}

const LEDGER_REPLACE: &str =
    "/api/v1/namespaces/sluice-system/configmaps/sluice-usage-team-a?&fieldManager=sluice-operator";

#[tokio::test]
async fn reports_are_persisted_in_one_ledger_write_then_shown_in_status_then_acked() {
    let (client, mut server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    spending_route(&mut caches);
    let mut ack_a = submit(&ctx, "a", 4, 1_500);
    let mut ack_b = submit(&ctx, "b", 1, 250);
    let before = json!({"pods": {"uid-a": {"name": "a", "sequence": 3}}});
    // Field order as persisted: the ledger's text is compared to the letter.
    let after = json!({
        "pods": {"uid-a": {"name": "a", "sequence": 4}, "uid-b": {"name": "b", "sequence": 1}},
        "routes": {"chat": {"usage": chat_usage(2, "0.001750"), "backends": {"openai": {"requests": 4, "errors": 0}}}},
        "budgets": {"monthly": {
            "periodStart": "1970-01-01T00:00:00Z", "spentUSD": "0.001750",
            "byRoute": {"chat": "0.001750"}, "byModel": {"gpt-4.1": "0.001750"},
            "pods": {
                "uid-a": {"grantedUSD": "0.000000", "spentUSD": "0.001500"},
                "uid-b": {"grantedUSD": "0.000000", "spentUSD": "0.000250"},
            },
        }},
        "accepted": {},
    });
    let route = json!({
        "sidecars": {"desired": 0, "inSync": 0, "outdated": 0},
        "usage": chat_usage(2, "0.001750"),
        "backends": [{"name": "openai", "healthy": true, "circuit": "closed", "requests": 4, "errors": 0}],
    });
    let spent = "0.001750";
    let budget = budget_status(
        spent,
        "99.998250",
        [counting(NOW), exhausted(false, spent, NOW), threshold(None, spent, NOW)],
    );
    let flushing = flushing(&ctx);

    server
        .answer(Call::get(LEDGER_PATH).answers(ledger_configmap(&before, Some("7"))))
        .await;
    // One replace at the version read: both reports and their sequences, durable together.
    server
        .answer(
            Call::put(LEDGER_REPLACE, ledger_configmap(&after, Some("7"))).answers(ledger_configmap(&after, Some("8"))),
        )
        .await;
    server
        .answer(route_status(json!({"budgetRef": {"name": "monthly"}}), route))
        .await;
    assert!(
        unanswered(&mut ack_a) && unanswered(&mut ack_b),
        "acked before every status was written"
    );
    let budget_apply = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Budget", "status": budget});
    server
        .answer(
            Call::apply(&status_path("budgets", "monthly"), budget_apply)
                .answers(stored(monthly_budget(budget_spec(), budget))),
        )
        .await;
    flushing.await.unwrap();

    assert_eq!((ack_a.await.unwrap(), ack_b.await.unwrap()), (Ok(4), Ok(1)));
    assert_eq!(ctx.ledgers.read(NS, |l| l.sequence("uid-a")), Some(4));
    drop(ctx);
    server.closed().await;
}

#[tokio::test]
async fn a_resent_report_is_acked_with_the_sequence_already_applied_and_counts_nothing() {
    let (client, mut server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    spending_route(&mut caches);
    let ledger = json!({
        "pods": {"uid-a": {"name": "a", "sequence": 4}}, "routes": {}, "budgets": {}, "accepted": {},
    });
    let ack = submit(&ctx, "a", 4, 1_500);
    let flushing = flushing(&ctx);

    server
        .answer(Call::get(LEDGER_PATH).answers(ledger_configmap(&ledger, Some("7"))))
        .await;
    // The batch is persisted as it stands, unchanged; no status moved, so none is written.
    server
        .answer(
            Call::put(LEDGER_REPLACE, ledger_configmap(&ledger, Some("7")))
                .answers(ledger_configmap(&ledger, Some("8"))),
        )
        .await;
    flushing.await.unwrap();

    assert_eq!(ack.await.unwrap(), Ok(4));
    assert_eq!((reports(&ctx, "duplicate"), reports(&ctx, "applied")), (1, 0));
    drop(ctx);
    server.closed().await;
}

#[tokio::test]
async fn a_ledger_changed_by_another_writer_fails_the_reports_and_is_read_again() {
    let (client, mut server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    spending_route(&mut caches);
    let before = json!({"pods": {}, "routes": {}, "budgets": {}, "accepted": {}});
    let ack = submit(&ctx, "a", 1, 0);
    let after = one_free_report();
    let flushing = flushing(&ctx);

    server
        .answer(Call::get(LEDGER_PATH).answers(ledger_configmap(&before, Some("7"))))
        .await;
    server
        .answer(Call::put(LEDGER_REPLACE, ledger_configmap(&after, Some("7"))).fails(
            409,
            "Conflict",
            r#"Operation cannot be fulfilled on configmaps "sluice-usage-team-a": the object has been modified"#,
        ))
        .await;
    flushing.await.unwrap();

    assert_eq!(
        ack.await.unwrap(),
        Err(
            "persisting usage failed: the usage ledger of namespace team-a changed concurrently; reloading it"
                .to_owned()
        )
    );
    // What was applied in memory is forgotten: the resent report is applied to what is stored.
    assert!(!ctx.ledgers.contains(NS));
    assert_eq!(writes(&ctx, "ledger", "error"), 1);
    assert_eq!(reports(&ctx, "failed"), 1);
    drop(ctx);
    server.closed().await;
}

#[tokio::test(start_paused = true)]
async fn the_flusher_writes_a_queued_report_at_its_next_tick_and_waits_out_an_unreadable_ledger() {
    let (client, mut server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    caches.route(&object(chat_route(1, json!({}), Value::Null)));
    // A route marked for a status write shows when the first tick has run.
    ctx.marks.routes([ObjectKey {
        namespace: NS.to_owned(),
        name: "chat".to_owned(),
    }]);
    let start = tokio::time::Instant::now();
    let shutdown = CancellationToken::new();
    let flusher = tokio::spawn({
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        async move { run_flusher(&ctx, shutdown).await }
    });
    let counts = json!({"desired": 0, "inSync": 0, "outdated": 0});
    server
        .answer(route_status(json!({}), json!({"sidecars": counts})))
        .await;
    assert_eq!(start.elapsed(), Duration::ZERO, "the first tick comes at once");
    let mut ack = submit(&ctx, "a", 1, 0);

    server
        .answer(Call::get(LEDGER_PATH).fails(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ))
        .await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "written at the tick after the report"
    );
    assert!(unanswered(&mut ack), "a report is answered only once persisted");
    // No ConfigMap yet: the ledger starts from the (empty) statuses and is created.
    server
        .answer(Call::get(LEDGER_PATH).not_found("configmaps", "sluice-usage-team-a"))
        .await;
    assert_eq!(start.elapsed(), Duration::from_secs(4), "retried at the next tick");
    let ledger = one_free_report();
    server
        .answer(
            Call::post(
                "/api/v1/namespaces/sluice-system/configmaps?&fieldManager=sluice-operator",
                ledger_configmap(&ledger, None),
            )
            .creates(ledger_configmap(&ledger, Some("1"))),
        )
        .await;
    let status = json!({
        "sidecars": counts,
        "usage": chat_usage(1, "0.000000"),
        "backends": [{"name": "openai", "healthy": true, "circuit": "closed", "requests": 2, "errors": 0}],
    });
    server.answer(route_status(json!({}), status)).await;
    assert_eq!((&mut ack).await.unwrap(), Ok(1));
    // Shutting down flushes once more: nothing is left, so nothing is written.
    shutdown.cancel();
    flusher.await.unwrap();

    drop(ctx);
    server.closed().await;
}
