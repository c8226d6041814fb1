//! The active configuration: compiled once per snapshot, swapped atomically, read lock-free.

mod state_view;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use sluice_crds::{BudgetSpec, ConfigSnapshot, ConfigVersion, MicroUsd, ModelRouteSpec, ObjectKey};
use tokio::time::Instant;

use crate::{
    accounting::recorder::Recorder,
    budget::Budgets,
    route::{ClientCache, CompileError, RouteTable, state::StateRegistry},
};

/// One compiled config version.
#[derive(Debug)]
pub struct ActiveConfig {
    /// The snapshot's version.
    pub version: ConfigVersion,
    /// Routes by model.
    pub routes: RouteTable,
    /// The static part of `/config`, rendered once, without secrets.
    spec_view: Value,
    /// Budget accounts; they outlive config versions.
    pub budgets: Arc<Budgets>,
    /// Where finished requests are counted; it outlives config versions.
    pub recorder: Arc<Recorder>,
}

impl ActiveConfig {
    /// The `/config` document: the config as loaded, without secrets, and under `state` the
    /// live circuits, limiter levels, latency estimates and caches.
    pub fn view(&self) -> Bytes {
        let mut doc = self.spec_view.clone();
        if let Value::Object(map) = &mut doc {
            let state = serde_json::to_value(state_view::StateView::of(&self.routes, Instant::now()));
            map.insert("state".into(), state.unwrap_or(Value::Null));
        }
        // Plain data always serializes; an empty document would only hide the view, never a secret.
        Bytes::from(serde_json::to_vec_pretty(&doc).unwrap_or_default())
    }
}

/// Holds the active config; requests take a cheap snapshot of it.
#[derive(Debug, Default)]
pub struct ConfigStore {
    active: ArcSwapOption<ActiveConfig>,
    clients: ClientCache,
    /// Circuits, buckets and caches, handed from each version to the next.
    states: StateRegistry,
    budgets: Arc<Budgets>,
    recorder: Arc<Recorder>,
}

/// `/config`: what is running, with every credential left out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigView<'a> {
    version: &'a ConfigVersion,
    routes: Vec<RouteView<'a>>,
    budgets: Vec<BudgetView<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RouteView<'a> {
    namespace: &'a str,
    name: &'a str,
    /// Backends whose API key was resolved; the keys themselves are never shown.
    credentials_resolved: Vec<&'a str>,
    spec: &'a ModelRouteSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BudgetView<'a> {
    namespace: &'a str,
    name: &'a str,
    allowance_usd: MicroUsd,
    spec: &'a BudgetSpec,
}

impl ConfigStore {
    /// A store counting into `recorder`.
    pub fn new(recorder: Recorder) -> Self {
        Self {
            recorder: Arc::new(recorder),
            ..Self::default()
        }
    }

    /// Budget accounts, kept across config versions.
    pub fn budgets(&self) -> &Arc<Budgets> {
        &self.budgets
    }

    /// Metrics and the usage ledger, kept across config versions.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// Told when any backend's circuit opens or closes.
    pub fn circuit_changed(&self) -> &Arc<tokio::sync::Notify> {
        self.states.circuit_changed()
    }

    /// The active config, if one is loaded.
    pub fn current(&self) -> Option<Arc<ActiveConfig>> {
        self.active.load_full()
    }

    /// Compiles and activates a snapshot; on error the running config stays.
    /// Returns `false` when this version is already active.
    pub fn apply(&self, snapshot: &ConfigSnapshot) -> Result<bool, CompileError> {
        if self
            .active
            .load()
            .as_ref()
            .is_some_and(|a| a.version == snapshot.version)
        {
            return Ok(false);
        }
        let mut pending = self.states.begin();
        let routes = RouteTable::compile(snapshot, &self.clients, &self.states, &mut pending)?;
        self.budgets.apply(&snapshot.budgets, jiff::Timestamp::now())?;
        for route in routes.routes() {
            tracing::debug!(route = %route.key, strategy = ?route.strategy, tokenizer = route.tokenizer.name(),
                "route compiled");
        }
        self.active.store(Some(Arc::new(ActiveConfig {
            version: snapshot.version.clone(),
            routes,
            spec_view: render_view(snapshot),
            budgets: self.budgets.clone(),
            recorder: self.recorder.clone(),
        })));
        self.states.commit(pending);
        Ok(true)
    }
}

fn render_view(snapshot: &ConfigSnapshot) -> Value {
    fn key(k: &ObjectKey) -> (&str, &str) {
        (k.namespace.as_str(), k.name.as_str())
    }
    let view = ConfigView {
        version: &snapshot.version,
        routes: snapshot
            .routes
            .iter()
            .map(|r| {
                let (namespace, name) = key(&r.key);
                let credentials_resolved = r.credentials.keys().map(|b| b.as_str()).collect();
                RouteView {
                    namespace,
                    name,
                    credentials_resolved,
                    spec: &r.spec,
                }
            })
            .collect(),
        budgets: snapshot
            .budgets
            .iter()
            .map(|b| {
                let (namespace, name) = key(&b.key);
                BudgetView {
                    namespace,
                    name,
                    allowance_usd: b.allowance,
                    spec: &b.spec,
                }
            })
            .collect(),
    };
    // Plain data always serializes; an empty document would only hide the view, never a secret.
    serde_json::to_value(&view).unwrap_or(Value::Null)
}
