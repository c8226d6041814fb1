//! Runtime state that outlives a config version: circuits, buckets, latency, choice counters
//! and caches, kept per route and backend while their spec stays the same.
//!
//! Each compile looks up the state of the previous version by route key (and backend name)
//! and reuses it when the part of the spec it depends on is unchanged; state of routes and
//! backends that are gone is dropped with the old version.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use sluice_crds::{Backend, BackendName, CachePolicy, LimitShare, ObjectKey, PerUserLimit, RouteConfig};

use tokio::sync::Notify;

use super::{health::HealthWindow, latency::PeakEwma, strategy::Picker};
use crate::{cache::Cache, circuit::Circuit, limits::BackendLimiter, limits::RouteLimits};

/// The mutable side of one backend.
#[derive(Debug)]
pub struct BackendState {
    /// Its circuit breaker.
    pub circuit: Arc<Circuit>,
    /// Its rates and concurrency cap.
    pub limits: BackendLimiter,
    /// Its latency estimate.
    pub latency: PeakEwma,
    /// What it did since the last usage report.
    pub health: HealthWindow,
    in_flight: AtomicU32,
}

/// Counts one request in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>);

impl BackendState {
    fn new(backend: &Backend, changed: &Arc<Notify>) -> Self {
        Self {
            circuit: Arc::new(Circuit::notifying(changed.clone())),
            limits: BackendLimiter::new(backend.name.to_string(), backend.limits),
            latency: PeakEwma::default(),
            health: HealthWindow::default(),
            in_flight: AtomicU32::new(0),
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The mutable side of one route.
#[derive(Debug, Clone)]
pub struct RouteState {
    /// Route and per-user limits.
    pub limits: Arc<RouteLimits>,
    /// Strategy counters.
    pub picker: Arc<Picker>,
    /// The response cache, when the route has one.
    pub cache: Option<Arc<Cache>>,
}

type LimitsSpec = (LimitShare, Option<PerUserLimit>);
type PickerSpec = Vec<(BackendName, u32)>;
type CacheSpec = (CachePolicy, Vec<Backend>);

/// State of the active version, to hand over to the next.
#[derive(Debug, Default)]
pub struct StateRegistry {
    registry: Mutex<Registry>,
    /// Told when any backend's circuit opens or closes.
    circuit_changed: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Registry {
    backends: HashMap<(ObjectKey, BackendName), (Backend, Arc<BackendState>)>,
    limits: HashMap<ObjectKey, (LimitsSpec, Arc<RouteLimits>)>,
    pickers: HashMap<ObjectKey, (PickerSpec, Arc<Picker>)>,
    caches: HashMap<ObjectKey, (CacheSpec, Arc<Cache>)>,
}

/// State being gathered for a new version; becomes the registry's only on [`Pending::commit`].
#[derive(Debug, Default)]
pub struct Pending(Registry);

impl StateRegistry {
    /// Told when any backend's circuit opens or closes.
    pub fn circuit_changed(&self) -> &Arc<Notify> {
        &self.circuit_changed
    }

    /// Starts gathering state for a new version.
    pub fn begin(&self) -> Pending {
        Pending::default()
    }

    /// The new version is active: its state replaces the old, which is dropped.
    pub fn commit(&self, pending: Pending) {
        let mut registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *registry = pending.0;
    }

    /// The state for `backend` of `route`: the previous version's when its spec is unchanged.
    pub fn backend(&self, pending: &mut Pending, route: &ObjectKey, backend: &Backend) -> Arc<BackendState> {
        let key = (route.clone(), backend.name.clone());
        let old = self.lookup(|r| {
            r.backends
                .get(&key)
                .filter(|(spec, _)| spec == backend)
                .map(|(_, s)| s.clone())
        });
        let state = old.unwrap_or_else(|| Arc::new(BackendState::new(backend, &self.circuit_changed)));
        pending.0.backends.insert(key, (backend.clone(), state.clone()));
        state
    }

    /// The route's limits, picker and cache: each the previous version's when unchanged.
    pub fn route(&self, pending: &mut Pending, config: &RouteConfig) -> RouteState {
        let key = &config.key;
        let spec = &config.spec;
        let limits_spec: LimitsSpec = (config.share, spec.per_user);
        let old = self.lookup(|r| r.limits.get(key).cloned());
        let limits = match old {
            Some((s, l)) if s == limits_spec => l,
            // A new share (the operator follows demand): what was used stays used.
            Some((_, l)) => Arc::new(l.reshared(
                key.to_string(),
                config.share,
                spec.per_user,
                tokio::time::Instant::now(),
            )),
            None => Arc::new(RouteLimits::new(key.to_string(), config.share, spec.per_user)),
        };
        pending.0.limits.insert(key.clone(), (limits_spec, limits.clone()));

        let picker_spec: PickerSpec = spec.backends.iter().map(|b| (b.name.clone(), b.weight)).collect();
        let picker = self
            .lookup(|r| {
                r.pickers
                    .get(key)
                    .filter(|(s, _)| *s == picker_spec)
                    .map(|(_, p)| p.clone())
            })
            .unwrap_or_else(|| Arc::new(Picker::new(spec.backends.len(), &key.to_string())));
        pending.0.pickers.insert(key.clone(), (picker_spec, picker.clone()));

        // Cached answers stay valid while the policy and every backend stay the same.
        let cache = spec.cache.map(|policy| {
            let cache_spec: CacheSpec = (policy, spec.backends.clone());
            let cache = self
                .lookup(|r| {
                    r.caches
                        .get(key)
                        .filter(|(s, _)| *s == cache_spec)
                        .map(|(_, c)| c.clone())
                })
                .unwrap_or_else(|| Arc::new(Cache::new(policy)));
            pending.0.caches.insert(key.clone(), (cache_spec, cache.clone()));
            cache
        });
        RouteState { limits, picker, cache }
    }

    fn lookup<T>(&self, f: impl FnOnce(&Registry) -> Option<T>) -> Option<T> {
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&registry)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_crds::{ConfigSnapshot, LimitShare, ModelRouteSpec};

    use super::*;
    use crate::route::{ClientCache, Route, RouteTable, testing::backend};

    fn compile(states: &StateRegistry, spec: serde_json::Value) -> Arc<Route> {
        let spec: ModelRouteSpec = serde_json::from_value(spec).unwrap();
        let config = RouteConfig {
            key: ObjectKey {
                namespace: "ns".into(),
                name: "chat".into(),
            },
            spec,
            credentials: Default::default(),
            header_values: Default::default(),
            share: LimitShare::default(),
        };
        let mut pending = states.begin();
        let table = RouteTable::compile(
            &ConfigSnapshot::new(vec![config], vec![]),
            &ClientCache::default(),
            states,
            &mut pending,
        )
        .unwrap();
        states.commit(pending);
        table.resolve("chat").unwrap().clone()
    }

    fn spec(models: &[&str], b_limits: serde_json::Value) -> serde_json::Value {
        json!({"models": models, "perUser": {"requestsPerMinute": 5}, "cache": {"ttl": "1m", "maxBytes": "1Mi"},
            "backends": [backend("a", json!({})), backend("b", json!({"limits": b_limits}))]})
    }

    #[tokio::test]
    async fn state_survives_a_reload_while_its_spec_is_unchanged() {
        let states = StateRegistry::default();
        let before = compile(&states, spec(&["chat"], json!({"requestsPerMinute": 10})));
        // A new alias and a changed limit on b: a keeps its state, b starts afresh.
        let after = compile(&states, spec(&["chat", "alias"], json!({"requestsPerMinute": 20})));
        assert!(Arc::ptr_eq(&before.backends[0].state, &after.backends[0].state));
        assert!(!Arc::ptr_eq(&before.backends[1].state, &after.backends[1].state));
        assert!(Arc::ptr_eq(&before.state.limits, &after.state.limits));
        assert!(Arc::ptr_eq(&before.state.picker, &after.state.picker));
        // The cache depends on every backend's spec: b changed, so its answers are dropped.
        assert!(!Arc::ptr_eq(
            before.state.cache.as_ref().unwrap(),
            after.state.cache.as_ref().unwrap()
        ));
        let again = compile(&states, spec(&["chat", "alias"], json!({"requestsPerMinute": 20})));
        assert!(Arc::ptr_eq(
            after.state.cache.as_ref().unwrap(),
            again.state.cache.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(&after.backends[1].state, &again.backends[1].state));
    }
}
