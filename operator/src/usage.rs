//! Usage into status (DESIGN §6.3, §6.4).
//!
//! Each namespace has one ledger ([`ledger::Ledger`]) holding its routes' and budgets' totals
//! *and* the highest report sequence applied per pod. It is persisted as the ConfigMap
//! `sluice-usage` (key `ledger.json`) of that namespace, in one write with optimistic
//! concurrency, so the totals and the sequences that produced them are durable together: a
//! report is acked only once that write succeeded (and the statuses were written after it),
//! and a report resent after a crash at any point is either applied then or recognised as a
//! duplicate. A report only ever touches its own namespace (routes and budgets are namespaced
//! together), so one write per namespace suffices.
//!
//! `status` is the projection users read. When a namespace has no ledger yet (first start, or
//! the ConfigMap was deleted), the ledger is rebuilt from the routes' and budgets' status.

pub mod ledger;

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
    runtime::reflector::ObjectRef,
};
use sluice_crds::{ObjectKey, UsageReport, control::PodIdentity};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use self::ledger::{BackendTotals, BudgetTotals, Ledger, RouteTotals};
use crate::{
    context::{Context, NamespaceLedger, PendingReport},
    error::{Error, Result},
    period,
};

/// The ConfigMap holding a namespace's ledger.
pub const LEDGER_CONFIGMAP: &str = "sluice-usage";
/// Its data key.
pub const LEDGER_KEY: &str = "ledger.json";

impl Context {
    /// Loads the ledger of `namespace` unless it is in memory.
    pub async fn ensure_ledger(&self, namespace: &str) -> Result<()> {
        if self.lock().ledgers.contains_key(namespace) {
            return Ok(());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let loaded = match api.get_opt(LEDGER_CONFIGMAP).await? {
            Some(cm) => {
                let ledger = match cm.data.as_ref().and_then(|d| d.get(LEDGER_KEY)) {
                    Some(text) => serde_json::from_str(text)?,
                    None => Ledger::default(),
                };
                NamespaceLedger {
                    ledger,
                    resource_version: cm.metadata.resource_version,
                    dirty: false,
                }
            }
            None => NamespaceLedger {
                ledger: self.ledger_from_status(namespace),
                resource_version: None,
                dirty: false,
            },
        };
        self.lock().ledgers.entry(namespace.to_owned()).or_insert(loaded);
        Ok(())
    }

    /// A ledger rebuilt from what `status` shows (no pod sequences: those are unknown).
    fn ledger_from_status(&self, namespace: &str) -> Ledger {
        let mut ledger = Ledger::default();
        for route in self.routes.state() {
            if route.metadata.namespace.as_deref() != Some(namespace) {
                continue;
            }
            let Some(status) = &route.status else { continue };
            let Some(usage) = &status.usage else { continue };
            let backends = status
                .backends
                .iter()
                .map(|b| {
                    let totals = BackendTotals {
                        requests: b.requests,
                        errors: b.errors,
                    };
                    (b.name.to_string(), totals)
                })
                .collect();
            let name = route.metadata.name.clone().unwrap_or_default();
            ledger.routes.insert(
                name,
                RouteTotals {
                    usage: usage.clone(),
                    backends,
                },
            );
        }
        for budget in self.budgets.state() {
            if budget.metadata.namespace.as_deref() != Some(namespace) {
                continue;
            }
            let Some(status) = &budget.status else { continue };
            let Some(start) = status.period_start.as_deref().and_then(|s| s.parse::<Timestamp>().ok()) else {
                continue;
            };
            let name = budget.metadata.name.clone().unwrap_or_default();
            ledger.budgets.insert(
                name,
                BudgetTotals {
                    period_start: Some(start),
                    spent: status.spent_usd,
                    by_route: status.by_route.clone(),
                    by_model: status.by_model.clone(),
                    pods: BTreeMap::new(),
                },
            );
        }
        ledger
    }

    /// Queues a report for the next write; the receiver gets the pod's persisted sequence.
    pub fn submit(&self, pod: PodIdentity, report: UsageReport) -> oneshot::Receiver<Result<u64, String>> {
        let (reply, rx) = oneshot::channel();
        let namespace = pod.namespace.clone();
        self.lock()
            .pending
            .entry(namespace)
            .or_default()
            .push(PendingReport { pod, report, reply });
        rx
    }

    /// The budget a route spends from now, and the start of that budget's current period.
    fn budget_of(&self, namespace: &str, route: &str, now: Timestamp) -> Option<(String, Timestamp)> {
        let route = self.routes.get(&ObjectRef::new(route).within(namespace))?;
        let name = route.spec.budget_ref.as_ref()?.name.clone();
        let budget = self.budgets.get(&ObjectRef::new(&name).within(namespace))?;
        let window = period::window_in(budget.spec.period, &budget.spec.time_zone, now).ok()?;
        Some((name, window.start))
    }

    /// Applies the queued reports and changed grants of every namespace, persists each
    /// namespace's ledger, writes the statuses, then answers the reports.
    pub async fn flush(&self) {
        let namespaces: BTreeSet<String> = {
            let inner = self.lock();
            let mut set: BTreeSet<String> = inner.pending.keys().cloned().collect();
            set.extend(inner.ledgers.iter().filter(|(_, l)| l.dirty).map(|(ns, _)| ns.clone()));
            set
        };
        for namespace in namespaces {
            self.flush_namespace(&namespace).await;
        }
        self.write_dirty_statuses().await;
    }

    /// Persists one namespace's ledger now, with the reports queued for it.
    pub async fn flush_namespace(&self, namespace: &str) {
        let _one_writer = self.flush_lock.lock().await;
        if let Err(e) = self.ensure_ledger(namespace).await {
            tracing::warn!(namespace, error = %e, "cannot load the usage ledger; reports wait");
            return;
        }
        let now = Timestamp::now();
        let (reports, text, resource_version, touched) = {
            let mut inner = self.lock();
            let reports = inner.pending.remove(namespace).unwrap_or_default();
            let Some(ns_ledger) = inner.ledgers.get_mut(namespace) else {
                return;
            };
            let mut touched_routes = BTreeSet::new();
            let mut touched_budgets = BTreeSet::new();
            for pending in &reports {
                let applied = ns_ledger
                    .ledger
                    .apply(&pending.pod.name, &pending.report, &|route: &str| {
                        self.budget_of(namespace, route, now)
                    });
                self.metrics
                    .report(if applied.duplicate { "duplicate" } else { "applied" });
                touched_routes.extend(applied.routes);
                touched_budgets.extend(applied.budgets);
            }
            ns_ledger.dirty = false;
            let text = serde_json::to_string(&ns_ledger.ledger);
            (
                reports,
                text,
                ns_ledger.resource_version.clone(),
                (touched_routes, touched_budgets),
            )
        };
        let written = match text {
            Ok(text) => self.write_ledger(namespace, text, resource_version).await,
            Err(e) => Err(Error::Json(e)),
        };
        match written {
            Ok(version) => {
                self.metrics.wrote("ledger", true);
                let mut inner = self.lock();
                if let Some(l) = inner.ledgers.get_mut(namespace) {
                    l.resource_version = Some(version);
                }
                let key = |name: String| ObjectKey {
                    namespace: namespace.to_owned(),
                    name,
                };
                inner.dirty_routes.extend(touched.0.into_iter().map(key));
                inner.dirty_budgets.extend(touched.1.into_iter().map(key));
            }
            Err(e) => {
                self.metrics.wrote("ledger", false);
                tracing::warn!(namespace, error = %e, "persisting the usage ledger failed; reloading it, reports will be resent");
                // What was applied in memory is not durable: forget it, so the resent reports
                // are applied to what the API server holds.
                self.lock().ledgers.remove(namespace);
                for p in reports {
                    self.metrics.report("failed");
                    let _ = p.reply.send(Err(format!("persisting usage failed: {e}")));
                }
                return;
            }
        }
        // Acks wait for the status writes, so an acked report is visible in status.
        self.write_dirty_statuses().await;
        let inner = self.lock();
        for p in reports {
            let sequence = inner
                .ledgers
                .get(namespace)
                .map_or(p.report.sequence, |l| l.ledger.sequence(&p.report.pod_uid));
            let _ = p.reply.send(Ok(sequence));
        }
        drop(inner);
        // Spend changed: allowances may need topping up.
        self.recompute(namespace);
    }

    /// Creates or replaces the ledger ConfigMap; returns its new resourceVersion.
    async fn write_ledger(&self, namespace: &str, text: String, resource_version: Option<String>) -> Result<String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(LEDGER_CONFIGMAP.to_owned()),
                namespace: Some(namespace.to_owned()),
                resource_version: resource_version.clone(),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    crate::FIELD_MANAGER.to_owned(),
                )])),
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
            Some(_) => api.replace(LEDGER_CONFIGMAP, &pp, &cm).await,
        };
        match result {
            Ok(cm) => Ok(cm.metadata.resource_version.unwrap_or_default()),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::LedgerConflict(namespace.to_owned())),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes usage into status every `status_interval` until `shutdown`, then once more.
    pub async fn run_flusher(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.status_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sizing = tokio::time::interval(self.settings.sizing_window);
        sizing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush().await,
                _ = sizing.tick() => {
                    for l in self.lock().ledgers.values_mut() {
                        l.ledger.close_sizing_window();
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
        self.flush().await;
    }
}

#[cfg(test)]
mod tests;
