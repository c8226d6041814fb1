//! What the controllers, the control server and the status writer share: the API client, the
//! reflector caches, the settings, and the operator's state in owned parts, each with its own
//! narrow API and lock ([`Verdicts`], [`Ledgers`], [`Sessions`], [`StatusMarks`]). Where two
//! parts are locked together (the push), the order is ledgers, then sessions.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Client, ResourceExt,
    runtime::{events::Recorder, reflector::Store},
};
use sluice_crds::{Budget, ModelRoute, ObjectKey};
use tokio::sync::watch;

use crate::{
    health::Health, ledgers::Ledgers, marks::StatusMarks, metrics::Metrics, sessions::Sessions, verdicts::Verdicts,
};

/// Tunables from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often usage and counts are written into status.
    pub status_interval: Duration,
    /// How often a control stream sends a heartbeat.
    pub heartbeat: Duration,
    /// How long allowance sizing looks back.
    pub sizing_window: Duration,
    /// Only this namespace is watched and served (`None`: every namespace).
    pub watch_namespace: Option<String>,
    /// The operator's own namespace, where the usage ledgers are kept (`--lease-namespace`).
    pub ledger_namespace: String,
    /// What the webhook injects, to report pods running an outdated sidecar (`None`: no check).
    pub inject: Option<Arc<crate::webhook::inject::InjectConfig>>,
}

/// The operator's shared state.
pub struct Context {
    /// An API client.
    pub client: Client,
    /// Tunables.
    pub settings: Settings,
    /// Every ModelRoute.
    pub routes: Store<ModelRoute>,
    /// Every Budget.
    pub budgets: Store<Budget>,
    /// Pods carrying a sidecar.
    pub pods: Store<Pod>,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// True once every route present at start was reconciled: only then are snapshots served.
    pub synced: watch::Sender<bool>,
    /// Which caches have been filled by their first list.
    pub caches: watch::Sender<Caches>,
    /// The accepted routes and the verdicts.
    pub verdicts: Verdicts,
    /// The usage ledgers and the reports waiting for them.
    pub ledgers: Ledgers,
    /// The connected sidecars.
    pub sessions: Sessions,
    /// Recomputes under way, by namespace (see [`crate::push::recompute_soon`]).
    pub recomputes: crate::coalesce::Coalescer,
    /// What the next status write covers.
    pub marks: StatusMarks,
    /// Backend health as the sidecars report it.
    pub health: Health,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Builds the state around the stores the reflectors fill.
    pub fn new(
        client: Client,
        settings: Settings,
        stores: (Store<ModelRoute>, Store<Budget>, Store<Pod>),
        recorder: Recorder,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (routes, budgets, pods) = stores;
        Self {
            client,
            settings,
            routes,
            budgets,
            pods,
            recorder,
            metrics,
            synced: watch::channel(false).0,
            caches: watch::channel(Caches::default()).0,
            verdicts: Verdicts::default(),
            ledgers: Ledgers::default(),
            sessions: Sessions::default(),
            recomputes: crate::coalesce::Coalescer::default(),
            marks: StatusMarks::default(),
            health: Health::default(),
        }
    }

    /// Marks the start-up reconcile done once every cache is filled and every known route has
    /// a verdict: a verdict reached against a cache still being listed (a Budget not seen yet)
    /// must never reach a sidecar.
    pub fn check_synced(&self) {
        if *self.synced.borrow() || !self.caches.borrow().all() {
            return;
        }
        let routes = self.routes.state();
        if self.verdicts.all_reconciled(routes.iter().map(|r| key_of(r.as_ref()))) {
            tracing::info!("every route reconciled; serving snapshots");
            self.synced.send_replace(true);
        }
    }

    /// An API for `K` over the watched namespaces.
    pub fn watched<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.settings.watch_namespace {
            Some(ns) => kube::Api::namespaced(self.client.clone(), ns),
            None => kube::Api::all(self.client.clone()),
        }
    }

    /// Waits until snapshots may be served.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives as long as the context, so this only ends when synced.
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Which reflector caches hold their first full list. Tracked here from the watch events
/// rather than with `Store::wait_until_ready`, whose readiness signal wakes only one waiter
/// (the controller already waits on it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caches {
    /// ModelRoutes.
    pub routes: bool,
    /// Budgets.
    pub budgets: bool,
    /// Pods.
    pub pods: bool,
}

impl Caches {
    /// Whether every cache is filled.
    pub fn all(&self) -> bool {
        self.routes && self.budgets && self.pods
    }
}

impl Context {
    /// Records that a cache holds its first full list.
    pub fn cache_filled(&self, mark: impl FnOnce(&mut Caches)) {
        self.caches.send_modify(mark);
    }

    /// Waits until every cache holds its first full list.
    pub async fn wait_caches(&self) {
        let mut rx = self.caches.subscribe();
        let _ = rx.wait_for(Caches::all).await;
    }

    /// The labels of every pod of `namespace` the operator knows, by UID: stored pods and
    /// connected ones.
    pub fn pod_labels(&self, namespace: &str) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut pods: BTreeMap<String, BTreeMap<String, String>> = self
            .pods
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .filter_map(|p| Some((p.metadata.uid.clone()?, p.metadata.labels.clone().unwrap_or_default())))
            .collect();
        for s in self.sessions.in_namespace(namespace) {
            pods.insert(s.uid, s.labels);
        }
        pods
    }
}

/// `namespace/name` of a namespaced object (an empty namespace for a cluster-scoped one).
pub fn key_of<K: ResourceExt>(object: &K) -> ObjectKey {
    ObjectKey {
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
    }
}
