//! The push: on any change in a namespace, every connected sidecar of it gets its desired
//! snapshot recomputed by [`plan::plan`], and a new version is sent down its stream at once.
//! This module gathers the plan's inputs and applies its result; the sessions' comings and
//! goings that change a plan come through here too.

use std::{collections::BTreeMap, sync::Arc};

use jiff::Timestamp;
use sluice_crds::{BudgetSpec, ConfigVersion, ObjectKey, control::PodIdentity};
use tokio::sync::watch;

use crate::{
    context::{Context, key_of},
    plan::{self, Inputs},
    sessions::Latest,
    token::TokenDigest,
};

/// Like [`recompute`], for events that come in storms (sidecars connecting after an operator
/// restart or a rollout, pod events): asked while a recompute of the namespace runs, it is
/// folded into one more round of that run, which sees this event's change.
pub fn recompute_soon(ctx: &Context, namespace: &str) {
    ctx.recomputes.run(namespace, || recompute(ctx, namespace));
}

/// Recomputes and pushes the snapshot of every connected sidecar of `namespace`.
pub fn recompute(ctx: &Context, namespace: &str) {
    if !*ctx.synced.borrow() {
        return;
    }
    let now = Timestamp::now();
    let budgets: BTreeMap<ObjectKey, BudgetSpec> = ctx
        .budgets
        .state()
        .iter()
        .filter(|b| b.metadata.namespace.as_deref() == Some(namespace))
        .map(|b| (key_of(b.as_ref()), b.spec.clone()))
        .collect();
    let budgets = ctx.verdicts.valid_budgets(budgets);
    let routes = ctx.verdicts.in_namespace(namespace);
    let pods = ctx.pod_labels(namespace);
    // The ledger stays locked from planning to applying, so grants are made against figures
    // no report changes meanwhile. Sessions register only after their namespace's ledger is
    // loaded: without one there is nothing to push.
    let mut traced = crate::telemetry::Push::begin(namespace);
    let applied = ctx.ledgers.update(namespace, |ns_ledger| {
        let sidecars = ctx.sessions.in_namespace(namespace);
        let inputs = Inputs {
            namespace,
            now,
            routes: &routes,
            budgets: &budgets,
            pods: &pods,
            sidecars: &sidecars,
            route_totals: &ns_ledger.ledger.routes,
        };
        let plan = plan::plan(&inputs, &ns_ledger.ledger.budgets);
        ns_ledger.ledger.budgets = plan.budgets;
        ns_ledger.dirty |= plan.ledger_changed;
        // The overspend bound of each budget, for the metric.
        for (name, out) in &plan.outstanding {
            ctx.metrics.set_outstanding(namespace, name, *out);
        }
        ctx.sessions.apply(namespace, plan.sidecars, traced.as_mut())
    });
    if let Some(traced) = traced {
        traced.end();
    }
    if let Some(applied) = applied {
        for _ in 0..applied.pushed {
            ctx.metrics.pushes.inc();
        }
        ctx.marks.routes(applied.routes);
    }
}

fn count_sidecars(ctx: &Context) {
    ctx.metrics
        .connected_sidecars
        .set(i64::try_from(ctx.sessions.len()).unwrap_or(i64::MAX));
}

/// Registers a connected sidecar (whose stream was authenticated with the token of `token`)
/// and sends it its snapshot; returns its connection id and the receiver of its snapshots.
pub fn register(
    ctx: &Context,
    identity: PodIdentity,
    labels: BTreeMap<String, String>,
    token: Option<TokenDigest>,
) -> (u64, watch::Receiver<Latest>) {
    let namespace = identity.namespace.clone();
    let registered = ctx.sessions.register(identity, labels, token);
    ctx.marks.routes(registered.replaced);
    count_sidecars(ctx);
    recompute_soon(ctx, &namespace);
    (registered.conn, registered.rx)
}

/// Forgets a sidecar whose stream ended, unless a newer connection replaced it.
pub fn unregister(ctx: &Context, uid: &str, conn: u64) {
    ctx.marks.routes(ctx.sessions.unregister(uid, conn));
    count_sidecars(ctx);
}

/// Refreshes the gauge of the oldest unacknowledged push (an alert watches it: a sidecar that
/// never applies its config keeps serving the last one it had).
pub fn observe_acks(ctx: &Context) {
    let waited = ctx.sessions.oldest_unacked(std::time::Instant::now());
    ctx.metrics.oldest_unacked_push.set(waited.as_secs_f64());
}

/// Records that a sidecar runs `version`.
pub fn ack(ctx: &Context, uid: &str, version: ConfigVersion) {
    let (routes, latency) = ctx.sessions.ack(uid, version);
    if let Some(latency) = latency {
        ctx.metrics.push_latency.observe(latency.as_secs_f64());
    }
    ctx.marks.routes(routes);
}

/// Notes a deleted pod: the usage flush takes back its unspent allowance (offering it to the
/// others) and forgets the routes it was sent once its last report is applied
/// ([`crate::ledgers::Ledgers::reclaim_due`]).
pub fn pod_deleted(ctx: &Context, namespace: &str, uid: &str) {
    ctx.sessions.revoke_token(uid);
    ctx.ledgers.pod_gone(namespace, uid, std::time::Instant::now());
    recompute_soon(ctx, namespace);
}

/// Once every cache is filled and every route found then has a verdict, sends the snapshots
/// held back until now and reports this replica ready.
pub async fn when_synced(ctx: Arc<Context>, ready: watch::Sender<bool>) {
    ctx.wait_caches().await;
    tracing::info!("caches filled");
    ctx.check_synced();
    ctx.wait_synced().await;
    for ns in ctx.sessions.namespaces() {
        recompute(&ctx, &ns);
    }
    ready.send_replace(true);
    tracing::info!("leading and synced: serving sidecars");
}
