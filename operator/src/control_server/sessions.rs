//! Connected sidecars and the push: on any change in a namespace, every connected sidecar of
//! it gets its desired snapshot recomputed, and a new version is sent down its stream at once.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Instant,
};

use jiff::Timestamp;
use sluice_crds::{
    BudgetSpec, ConfigSnapshot, ConfigVersion, LimitShare, MicroUsd, ObjectKey, SidecarCounts, control::PodIdentity,
};
use tokio::sync::watch;

use crate::{
    allowance,
    context::{Context, Inner, key_of},
    desired::{self, AcceptedRoute, PodInputs},
    period,
};

/// One connected sidecar.
#[derive(Debug)]
pub struct Session {
    /// Who it is, from its token.
    pub identity: PodIdentity,
    /// Its pod's labels.
    pub labels: BTreeMap<String, String>,
    /// Which connection this is (a reconnect replaces an older one).
    pub conn: u64,
    /// Where its snapshots go.
    pub tx: watch::Sender<Option<Arc<ConfigSnapshot>>>,
    /// The version last sent.
    pub desired: Option<ConfigVersion>,
    /// Routes in that version.
    pub routes: BTreeSet<ObjectKey>,
    /// The version it acked.
    pub acked: Option<ConfigVersion>,
    /// When the last version was sent, for the push latency metric.
    pub pushed_at: Option<Instant>,
}

/// The labels of every pod of `namespace` the operator knows: stored pods and connected ones.
fn pods_of(ctx: &Context, inner: &Inner, namespace: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut pods: BTreeMap<String, BTreeMap<String, String>> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter_map(|p| Some((p.metadata.uid.clone()?, p.metadata.labels.clone().unwrap_or_default())))
        .collect();
    for s in inner.sessions.values().filter(|s| s.identity.namespace == namespace) {
        pods.insert(s.identity.uid.clone(), s.labels.clone());
    }
    pods
}

impl Context {
    /// Registers a connected sidecar; returns its connection id and the receiver of its snapshots.
    pub fn register(
        &self,
        identity: PodIdentity,
        labels: BTreeMap<String, String>,
    ) -> (u64, watch::Receiver<Option<Arc<ConfigSnapshot>>>) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let conn = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        let namespace = identity.namespace.clone();
        let session = Session {
            identity: identity.clone(),
            labels,
            conn,
            tx,
            desired: None,
            routes: BTreeSet::new(),
            acked: None,
            pushed_at: None,
        };
        let mut inner = self.lock();
        if let Some(old) = inner.sessions.insert(identity.uid.clone(), session) {
            inner.dirty_routes.extend(old.routes);
        }
        self.metrics
            .connected_sidecars
            .set(i64::try_from(inner.sessions.len()).unwrap_or(i64::MAX));
        drop(inner);
        self.recompute(&namespace);
        (conn, rx)
    }

    /// Forgets a sidecar whose stream ended, unless a newer connection replaced it.
    pub fn unregister(&self, uid: &str, conn: u64) {
        let mut inner = self.lock();
        if inner.sessions.get(uid).is_some_and(|s| s.conn == conn)
            && let Some(old) = inner.sessions.remove(uid)
        {
            inner.dirty_routes.extend(old.routes);
        }
        self.metrics
            .connected_sidecars
            .set(i64::try_from(inner.sessions.len()).unwrap_or(i64::MAX));
    }

    /// Records that a sidecar runs `version`.
    pub fn ack(&self, uid: &str, version: ConfigVersion) {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(uid) else {
            return;
        };
        if session.desired.as_ref() == Some(&version)
            && let Some(at) = session.pushed_at.take()
        {
            self.metrics.push_latency.observe(at.elapsed().as_secs_f64());
        }
        session.acked = Some(version);
        let routes = session.routes.clone();
        inner.dirty_routes.extend(routes);
    }

    /// Updates the labels of a connected pod (they decide which routes select it).
    pub fn relabel(&self, uid: &str, labels: BTreeMap<String, String>) {
        if let Some(s) = self.lock().sessions.get_mut(uid) {
            s.labels = labels;
        }
    }

    /// Takes back the unspent allowance of a deleted pod and offers it to the others.
    pub fn pod_deleted(&self, namespace: &str, uid: &str) {
        {
            let mut inner = self.lock();
            if let Some(l) = inner.ledgers.get_mut(namespace)
                && l.ledger.reclaim(uid)
            {
                l.dirty = true;
                tracing::info!(
                    namespace,
                    pod_uid = uid,
                    "took back the unspent allowance of a deleted pod"
                );
            }
        }
        self.recompute(namespace);
    }

    /// Recomputes and pushes the snapshot of every connected sidecar of `namespace`.
    pub fn recompute(&self, namespace: &str) {
        if !*self.synced.borrow() {
            return;
        }
        let now = Timestamp::now();
        let budget_specs: BTreeMap<ObjectKey, BudgetSpec> = self
            .budgets
            .state()
            .iter()
            .filter(|b| b.metadata.namespace.as_deref() == Some(namespace))
            .map(|b| (key_of(b.as_ref()), b.spec.clone()))
            .collect();
        let mut inner = self.lock();
        let budget_specs: BTreeMap<ObjectKey, BudgetSpec> = budget_specs
            .into_iter()
            .filter(|(k, _)| !inner.invalid_budgets.contains_key(k))
            .collect();
        let routes: Vec<Arc<AcceptedRoute>> = inner
            .accepted
            .values()
            .filter(|r| r.key.namespace == namespace)
            .cloned()
            .collect();
        let pods = pods_of(self, &inner, namespace);
        let mut selected: HashMap<&ObjectKey, usize> = HashMap::new();
        let mut budget_pods: HashMap<String, usize> = HashMap::new();
        for labels in pods.values() {
            let mut budgets_here = BTreeSet::new();
            for r in &routes {
                if desired::selects(r.spec.pod_selector.as_ref(), labels) {
                    *selected.entry(&r.key).or_default() += 1;
                    if let Some(b) = &r.spec.budget_ref {
                        budgets_here.insert(b.name.clone());
                    }
                }
            }
            for b in budgets_here {
                *budget_pods.entry(b).or_default() += 1;
            }
        }
        let shares: HashMap<ObjectKey, LimitShare> = routes
            .iter()
            .map(|r| {
                let n = selected.get(&r.key).copied().unwrap_or(1);
                let limit = r.spec.rate_limit.unwrap_or_default();
                let share = LimitShare {
                    requests_per_minute: desired::share_of(limit.requests_per_minute, n),
                    tokens_per_minute: desired::share_of(limit.tokens_per_minute, n),
                };
                (r.key.clone(), share)
            })
            .collect();
        let uids: Vec<String> = inner
            .sessions
            .values()
            .filter(|s| s.identity.namespace == namespace)
            .map(|s| s.identity.uid.clone())
            .collect();
        let route_refs: Vec<&AcceptedRoute> = routes.iter().map(Arc::as_ref).collect();
        let Inner {
            sessions,
            ledgers,
            dirty_routes,
            ..
        } = &mut *inner;
        let Some(ns_ledger) = ledgers.get_mut(namespace) else {
            // Sessions register only after their namespace's ledger is loaded.
            return;
        };
        // Each budget's outstanding allowance, summed once and then kept current as grants
        // change below: summing every pod's grant again for every session made this quadratic
        // in the sidecars, and `register` runs it once per connecting sidecar.
        let mut outstanding: HashMap<String, MicroUsd> = HashMap::new();
        for uid in uids {
            let Some(session) = sessions.get_mut(&uid) else {
                continue;
            };
            // This pod's allowance in every budget of the namespace that one of its routes uses.
            let mut grants: BTreeMap<ObjectKey, MicroUsd> = BTreeMap::new();
            for r in &routes {
                let Some(b) = &r.spec.budget_ref else { continue };
                if !desired::selects(r.spec.pod_selector.as_ref(), &session.labels) {
                    continue;
                }
                let key = ObjectKey {
                    namespace: namespace.to_owned(),
                    name: b.name.clone(),
                };
                let Some(spec) = budget_specs.get(&key) else { continue };
                if grants.contains_key(&key) {
                    continue;
                }
                let Ok(window) = period::window_in(spec.period, &spec.time_zone, now) else {
                    continue;
                };
                let totals = ns_ledger.ledger.budgets.entry(b.name.clone()).or_default();
                if totals.roll(window.start) {
                    ns_ledger.dirty = true;
                    outstanding.remove(&b.name);
                }
                let out = *outstanding.entry(b.name.clone()).or_insert_with(|| {
                    allowance::outstanding(totals.pods.values().map(|g| g.use_()).collect::<Vec<_>>().iter())
                });
                let free = allowance::free(spec.limit_usd, totals.spent, out);
                let active = budget_pods.get(&b.name).copied().unwrap_or(1);
                let grant = totals.pods.entry(uid.clone()).or_default();
                let target = allowance::target_headroom(spec.limit_usd, totals.spent, grant.recent, active);
                let next = allowance::next_grant(&grant.use_(), target, free);
                if next != grant.granted {
                    let before = grant.use_().headroom();
                    grant.granted = next;
                    ns_ledger.dirty = true;
                    // `out` includes `before`, so this is the sum over the pods as they are now.
                    outstanding.insert(b.name.clone(), out.saturating_sub(before) + grant.use_().headroom());
                }
                grants.insert(key, next);
            }
            let share = |k: &ObjectKey| shares.get(k).copied().unwrap_or_default();
            let allowance = |k: &ObjectKey| grants.get(k).copied().unwrap_or_default();
            let (snapshot, conflicts) = desired::snapshot_for(&PodInputs {
                namespace,
                labels: &session.labels,
                routes: &route_refs,
                budgets: &budget_specs,
                allowance: &allowance,
                share: &share,
            });
            for c in conflicts {
                tracing::warn!(route = %c, pod = %session.identity.name,
                    "route left out of this pod's config: one of its models is served by an earlier route");
            }
            if session.desired.as_ref() == Some(&snapshot.version) {
                continue;
            }
            let keys: BTreeSet<ObjectKey> = snapshot.routes.iter().map(|r| r.key.clone()).collect();
            dirty_routes.extend(session.routes.iter().cloned());
            dirty_routes.extend(keys.iter().cloned());
            tracing::info!(pod = %session.identity.name, namespace, version = %snapshot.version,
                routes = keys.len(), "pushing config");
            session.desired = Some(snapshot.version.clone());
            session.routes = keys;
            session.pushed_at = Some(Instant::now());
            session.tx.send_replace(Some(Arc::new(snapshot)));
            self.metrics.pushes.inc();
        }
        // The overspend bound of each budget, for the metric.
        for (name, totals) in &ns_ledger.ledger.budgets {
            let out = allowance::outstanding(totals.pods.values().map(|g| g.use_()).collect::<Vec<_>>().iter());
            self.metrics.set_outstanding(namespace, name, out);
        }
    }

    /// How many sidecars a route selects, and how many run the version that has it.
    pub fn sidecar_counts(&self, inner: &Inner, route: &ObjectKey) -> SidecarCounts {
        let Some(accepted) = inner.accepted.get(route) else {
            return SidecarCounts::default();
        };
        let pods = pods_of(self, inner, &route.namespace);
        let desired = pods
            .values()
            .filter(|labels| desired::selects(accepted.spec.pod_selector.as_ref(), labels))
            .count();
        let in_sync = inner
            .sessions
            .values()
            .filter(|s| s.routes.contains(route) && s.desired.is_some() && s.acked == s.desired)
            .count();
        // The same builder the webhook uses decides what "current" is.
        let outdated = self.settings.inject.as_deref().map_or(0, |config| {
            self.pods
                .state()
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(route.namespace.as_str()))
                .filter(|p| {
                    let labels = p.metadata.labels.clone().unwrap_or_default();
                    desired::selects(accepted.spec.pod_selector.as_ref(), &labels)
                })
                .filter(|p| crate::webhook::inject::is_outdated(p, config))
                .count()
        });
        SidecarCounts {
            desired: u32::try_from(desired).unwrap_or(u32::MAX),
            in_sync: u32::try_from(in_sync).unwrap_or(u32::MAX),
            outdated: u32::try_from(outdated).unwrap_or(u32::MAX),
        }
    }
}
