//! Usage into status (DESIGN §6.3, §6.4).
//!
//! Each namespace has one ledger ([`ledger::Ledger`]) holding its routes' and budgets' totals
//! *and* the highest report sequence applied per pod. It is persisted as the ConfigMap
//! `sluice-usage-<namespace>` (key `ledger.json`) in the operator's own namespace, where the
//! tenants have no rights (so no one with `edit` in their namespace can lower their spend or
//! raise their grants), in one write with optimistic concurrency, so the totals and the sequences that produced them are durable together: a
//! report is acked only once that write succeeded (and the statuses were written after it),
//! and a report resent after a crash at any point is either applied then or recognised as a
//! duplicate. A report only ever touches its own namespace (routes and budgets are namespaced
//! together), so one write per namespace suffices.
//!
//! A pod reports only for its own routes ([`scope`]); anything else is refused before it is
//! queued.
//!
//! `status` is the projection users read. When a namespace has no ledger yet (first start, or
//! the ConfigMap was lost), the ledger is rebuilt from the routes' and budgets' status; a lost
//! or unreadable ledger is a condition on the namespace's Budgets ([`load`]). A ledger deleted
//! while the operator holds it is written again from memory: nothing is lost.
//!
//! The ledger is bounded: a departed pod's records are removed once nothing of it can arrive
//! any more ([`crate::ledgers::Ledgers::reclaim_due`], [`sweep`]).

pub mod ledger;
mod load;
pub mod scope;

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
    runtime::reflector::ObjectRef,
};
use sluice_crds::ObjectKey;
use tokio_util::sync::CancellationToken;

pub use self::ledger::{LEDGER_KEY, configmap_name};
pub use self::load::ensure_ledger;
use crate::{
    context::Context,
    error::{Error, Result},
    ledgers::{Departures, PendingReport},
    period, push, status,
};

/// The budget a route spends from now, and the start of that budget's current period.
fn budget_of(ctx: &Context, namespace: &str, route: &str, now: Timestamp) -> Option<(String, Timestamp)> {
    let route = ctx.routes.get(&ObjectRef::new(route).within(namespace))?;
    let name = route.spec.budget_ref.as_ref()?.name.clone();
    let budget = ctx.budgets.get(&ObjectRef::new(&name).within(namespace))?;
    let window = period::window_in(budget.spec.period, &budget.spec.time_zone, now).ok()?;
    Some((name, window.start))
}

/// Applies the queued reports and changed grants of every namespace, persists each
/// namespace's ledger, writes the statuses, then answers the reports.
pub async fn flush(ctx: &Context) {
    for namespace in ctx.ledgers.to_flush() {
        flush_namespace(ctx, &namespace).await;
    }
    status::write_dirty(ctx).await;
}

/// What applying a namespace's queued reports produced, to be persisted.
struct Batch {
    reports: Vec<PendingReport>,
    /// Deleted pods whose allowance was taken back or records removed.
    departures: Departures,
    text: serde_json::Result<String>,
    /// The grants `text` holds: once it is persisted they may be pushed.
    written: crate::plan::Written,
    resource_version: Option<String>,
    routes: BTreeSet<String>,
    budgets: BTreeSet<String>,
}

/// Applies the reports queued for `namespace` to its ledger in memory.
fn apply_pending(ctx: &Context, namespace: &str, now: Timestamp) -> Option<Batch> {
    // Read before the reports are taken: every report queued before it is applied now, which
    // is what removing a departed pod's records relies on.
    let taken_at = std::time::Instant::now();
    let reports = ctx.ledgers.take_pending(namespace);
    ctx.ledgers.update(namespace, |ns_ledger| {
        let mut routes = BTreeSet::new();
        let mut budgets = BTreeSet::new();
        for pending in &reports {
            let applied = ns_ledger
                .ledger
                .apply(&pending.pod.name, &pending.report, &|route: &str| {
                    budget_of(ctx, namespace, route, now)
                });
            ctx.metrics
                .report(if applied.duplicate { "duplicate" } else { "applied" });
            routes.extend(applied.routes);
            budgets.extend(applied.budgets);
        }
        // After the reports: a deleted pod's allowance goes back only once its last is in.
        let departures = ctx.ledgers.reclaim_due(namespace, ns_ledger, taken_at);
        ns_ledger.dirty = false;
        Batch {
            text: serde_json::to_string(&ns_ledger.ledger),
            written: crate::plan::written(&ns_ledger.ledger.budgets),
            resource_version: ns_ledger.resource_version.clone(),
            reports,
            departures,
            routes,
            budgets,
        }
    })
}

/// Persists one namespace's ledger now, with the reports queued for it.
pub async fn flush_namespace(ctx: &Context, namespace: &str) {
    let _one_writer = ctx.ledgers.flush_lock.lock().await;
    match ensure_ledger(ctx, namespace).await {
        Ok(()) => {}
        Err(e @ Error::LedgerUnreadable { .. }) => {
            // Held: answered now (503), the sidecars keep them and send them again.
            for p in ctx.ledgers.take_pending(namespace) {
                ctx.metrics.report("failed");
                let _ = p.reply.send(Err(e.to_string()));
            }
            status::write_dirty(ctx).await;
            return;
        }
        Err(e) => {
            tracing::warn!(namespace, error = %e, "cannot load the usage ledger; reports wait");
            return;
        }
    }
    let Some(batch) = apply_pending(ctx, namespace, Timestamp::now()) else {
        return;
    };
    let Batch {
        reports,
        departures,
        text,
        written: grants,
        resource_version,
        routes,
        budgets,
    } = batch;
    let written = match text {
        Ok(text) => write_ledger(ctx, namespace, text, resource_version).await,
        Err(e) => Err(Error::Json(e)),
    };
    let written = match written {
        Err(Error::LedgerDeleted(configmap)) => recreate(ctx, namespace, &configmap).await,
        other => other,
    };
    let version = match written {
        Ok(version) => version,
        Err(e) => {
            ctx.metrics.wrote("ledger", false);
            tracing::warn!(namespace, error = %e, "persisting the usage ledger failed; reloading it, reports will be resent");
            // What was applied in memory is not durable: forget it, so the resent reports
            // are applied to what the API server holds.
            ctx.ledgers.remove(namespace);
            ctx.ledgers.restore_gone(namespace, departures);
            for p in reports {
                ctx.metrics.report("failed");
                let _ = p.reply.send(Err(format!("persisting usage failed: {e}")));
            }
            return;
        }
    };
    ctx.metrics.wrote("ledger", true);
    ctx.ledgers.update(namespace, |l| {
        l.resource_version = Some(version);
        crate::plan::mark_persisted(&mut l.ledger.budgets, &grants);
    });
    for (uid, unreported) in departures.reclaimed {
        // Its token no longer authenticates: the routes it was sent are no longer in scope.
        ctx.sessions.pod_deleted(&uid);
        if unreported {
            tracing::warn!(namespace, pod_uid = uid, wait = ?crate::ledgers::RECLAIM_WAIT,
                "took back the unspent allowance of a deleted pod whose sidecar never sent its final usage report: \
                 what it spent and did not report is missing from status");
        } else {
            tracing::info!(
                namespace,
                pod_uid = uid,
                "took back the unspent allowance of a deleted pod after its last usage report"
            );
        }
    }
    for uid in departures.forgotten {
        tracing::debug!(
            namespace,
            pod_uid = uid,
            "removed a departed pod's records from the usage ledger"
        );
    }
    let key = |name: String| ObjectKey {
        namespace: namespace.to_owned(),
        name,
    };
    ctx.marks.routes(routes.into_iter().map(key));
    ctx.marks.budgets(budgets.into_iter().map(key));
    // Acks wait for the status writes, so an acked report is visible in status.
    status::write_dirty(ctx).await;
    for p in reports {
        let sequence = ctx
            .ledgers
            .read(namespace, |l| l.sequence(&p.report.pod_uid))
            .unwrap_or(p.report.sequence);
        let _ = p.reply.send(Ok(sequence));
    }
    // Spend changed: allowances may need topping up; grants just persisted may be pushed.
    push::recompute(ctx, namespace);
}

/// Writes a ledger deleted while held again from memory, which is what was last persisted and
/// the batch just applied (sequences included, so no report counts twice), and records the
/// incident for the Budgets' `UsageLedger` condition.
async fn recreate(ctx: &Context, namespace: &str, configmap: &str) -> Result<String> {
    let at = Timestamp::now();
    tracing::warn!(
        namespace,
        configmap,
        "the usage ledger was deleted; writing it again from the operator's copy"
    );
    let text = ctx
        .ledgers
        .update(namespace, |l| {
            l.ledger.incident = Some(ledger::Incident {
                kind: ledger::IncidentKind::Recreated,
                at,
            });
            serde_json::to_string(&l.ledger)
        })
        .ok_or_else(|| Error::LedgerDeleted(configmap.to_owned()))??;
    let version = write_ledger(ctx, namespace, text, None).await?;
    let budgets: Vec<ObjectKey> = ctx
        .budgets
        .state()
        .iter()
        .filter(|b| b.metadata.namespace.as_deref() == Some(namespace))
        .map(|b| crate::context::key_of(b.as_ref()))
        .collect();
    ctx.marks.budgets(budgets);
    Ok(version)
}

/// Creates or replaces the ledger ConfigMap; returns its new resourceVersion.
async fn write_ledger(
    ctx: &Context,
    namespace: &str,
    text: String,
    resource_version: Option<String>,
) -> Result<String> {
    let home = &ctx.settings.ledger_namespace;
    let name = configmap_name(namespace);
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), home);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(home.clone()),
            resource_version: resource_version.clone(),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    crate::FIELD_MANAGER.to_owned(),
                ),
                (ledger::NAMESPACE_LABEL.to_owned(), namespace.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(LEDGER_KEY.to_owned(), text)])),
        ..ConfigMap::default()
    };
    let pp = PostParams {
        field_manager: Some(crate::FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let result = match resource_version {
        None => api.create(&pp, &cm).await,
        Some(_) => api.replace(&name, &pp, &cm).await,
    };
    match result {
        Ok(cm) => Ok(cm.metadata.resource_version.unwrap_or_default()),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::LedgerConflict(namespace.to_owned())),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::LedgerDeleted(format!("{home}/{name}"))),
        Err(e) => Err(e.into()),
    }
}

/// Notes, for each loaded ledger not checked yet, the pods it holds records of that no longer
/// exist: their deletion was missed (the operator was not running, or its notes went with a
/// restart), so [`crate::ledgers::Ledgers::reclaim_due`] removes their records
/// [`crate::ledgers::RECLAIM_WAIT`] after now. A pod is kept when the pod cache or a session
/// knows it, or when the API server still has a pod of its name and UID (a pod that reports
/// may lack the label the cache watches). Runs once the pod cache is filled; a namespace whose
/// check failed is checked again next time.
pub async fn sweep(ctx: &Context) {
    if !ctx.caches.borrow().pods {
        return;
    }
    for namespace in ctx.ledgers.unswept() {
        let Some(records) = ctx.ledgers.read(&namespace, |l| {
            l.pod_uids()
                .into_iter()
                .map(|uid| {
                    let name = l.pods.get(&uid).map(|r| r.name.clone());
                    (uid, name)
                })
                .collect::<Vec<_>>()
        }) else {
            continue;
        };
        let known = ctx.pod_labels(&namespace);
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        let mut complete = true;
        for (uid, name) in records {
            if known.contains_key(&uid) || ctx.ledgers.is_gone(&namespace, &uid) {
                continue;
            }
            let exists = match name.filter(|n| !n.is_empty()) {
                Some(name) => match api.get_metadata_opt(&name).await {
                    Ok(found) => found.is_some_and(|p| p.metadata.uid.as_deref() == Some(uid.as_str())),
                    Err(e) => {
                        tracing::debug!(namespace, pod = name, error = %e, "cannot check a pod of the usage ledger");
                        complete = false;
                        continue;
                    }
                },
                // Granted, never reported: no sequence to keep; a connected or cached pod is known.
                None => false,
            };
            if !exists {
                tracing::debug!(namespace, pod_uid = uid, "a pod of the usage ledger no longer exists");
                ctx.ledgers.pod_gone(&namespace, &uid, std::time::Instant::now());
            }
        }
        if complete {
            ctx.ledgers.mark_swept(&namespace);
        }
    }
}

/// How often [`sweep`] looks for ledgers loaded since.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Writes usage into status every `status_interval` until `shutdown`, then once more.
pub async fn run_flusher(ctx: &Context, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(ctx.settings.status_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sizing = tokio::time::interval(ctx.settings.sizing_window);
    sizing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweeping = tokio::time::interval(SWEEP_EVERY);
    sweeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                crate::push::observe_acks(ctx);
                flush(ctx).await;
            }
            _ = sweeping.tick() => sweep(ctx).await,
            _ = sizing.tick() => ctx.ledgers.close_sizing_windows(),
            () = shutdown.cancelled() => break,
        }
    }
    flush(ctx).await;
}

#[cfg(test)]
mod tests;
