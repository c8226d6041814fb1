//! The state shared by the controllers, the control server and the status writer.
//!
//! Everything in memory sits behind one mutex ([`Inner`]): critical sections are short and
//! never await, and one lock keeps the accepted routes, the sessions and the ledgers
//! consistent with each other when a snapshot is computed.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::Condition};
use kube::{
    Client, ResourceExt,
    runtime::{events::Recorder, reflector::Store},
};
use sluice_crds::{Budget, ModelRoute, ObjectKey, control::PodIdentity};
use tokio::sync::{oneshot, watch};

use crate::{control_server::sessions::Session, desired::AcceptedRoute, metrics::Metrics, usage::ledger::Ledger};

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
    /// What the webhook injects, to report pods running an outdated sidecar (`None`: no check).
    pub inject: Option<Arc<crate::webhook::inject::InjectConfig>>,
}

/// What the route controller decided about one route.
#[derive(Debug, Clone)]
pub struct RouteVerdict {
    /// The generation it describes.
    pub generation: Option<i64>,
    /// `Accepted`, `ResolvedRefs`, `Ready`.
    pub conditions: Vec<Condition>,
}

/// A usage report waiting for the next status write, with whom to tell.
#[derive(Debug)]
pub struct PendingReport {
    /// The pod, from its token.
    pub pod: PodIdentity,
    /// The report.
    pub report: sluice_crds::UsageReport,
    /// Answered with the pod's highest persisted sequence, or why it failed.
    pub reply: oneshot::Sender<Result<u64, String>>,
}

/// A namespace's ledger as last loaded or persisted.
#[derive(Debug, Default)]
pub struct NamespaceLedger {
    /// The figures.
    pub ledger: Ledger,
    /// The ConfigMap's resourceVersion it was read or written at; `None` when it does not exist yet.
    pub resource_version: Option<String>,
    /// Changed in memory (grants) since the last write.
    pub dirty: bool,
}

/// The mutable in-memory state.
#[derive(Debug, Default)]
pub struct Inner {
    /// Routes as last accepted, served to sidecars.
    pub accepted: HashMap<ObjectKey, Arc<AcceptedRoute>>,
    /// The route controller's last verdict per route.
    pub verdicts: HashMap<ObjectKey, RouteVerdict>,
    /// Budgets whose spec failed validation, with why.
    pub invalid_budgets: HashMap<ObjectKey, String>,
    /// Routes reconciled at least once since start (gates the first snapshots).
    pub reconciled: BTreeSet<ObjectKey>,
    /// Loaded ledgers by namespace.
    pub ledgers: HashMap<String, NamespaceLedger>,
    /// Connected sidecars by pod UID.
    pub sessions: HashMap<String, Session>,
    /// Reports waiting for the next write, by namespace.
    pub pending: BTreeMap<String, Vec<PendingReport>>,
    /// Routes whose status should be written at the next flush.
    pub dirty_routes: BTreeSet<ObjectKey>,
    /// Budgets whose status should be written at the next flush.
    pub dirty_budgets: BTreeSet<ObjectKey>,
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
    /// One ledger write at a time (the flusher and reconciles that must persist at once).
    pub flush_lock: tokio::sync::Mutex<()>,
    inner: Mutex<Inner>,
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
            flush_lock: tokio::sync::Mutex::new(()),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Locks the in-memory state.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic under this lock leaves maps that are still consistent enough to serve.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the start-up reconcile done once every cache is filled and every known route has
    /// a verdict: a verdict reached against a cache still being listed (a Budget not seen yet)
    /// must never reach a sidecar.
    pub fn check_synced(&self) {
        if *self.synced.borrow() || !self.caches.borrow().all() {
            return;
        }
        let inner = self.lock();
        let all = self
            .routes
            .state()
            .iter()
            .all(|r| inner.reconciled.contains(&key_of(r.as_ref())));
        drop(inner);
        if all {
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
}

/// `namespace/name` of a namespaced object (an empty namespace for a cluster-scoped one).
pub fn key_of<K: ResourceExt>(object: &K) -> ObjectKey {
    ObjectKey {
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
    }
}
