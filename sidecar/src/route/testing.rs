//! Routes built from a spec in JSON, for unit tests.

use std::sync::Arc;

use sluice_crds::{ConfigSnapshot, LimitShare, ModelRouteSpec, ObjectKey, RouteConfig};

use super::{ClientCache, Route, RouteTable, state::StateRegistry};

/// Compiles one route named `team-a/chat` (model `chat`) from `spec`; backends default to the
/// simulator so nothing touches the network.
pub fn route(spec: serde_json::Value) -> Arc<Route> {
    let spec: ModelRouteSpec = serde_json::from_value(spec).unwrap();
    let share = LimitShare {
        requests_per_minute: spec.rate_limit.and_then(|r| r.requests_per_minute),
        tokens_per_minute: spec.rate_limit.and_then(|r| r.tokens_per_minute),
    };
    let config = RouteConfig {
        key: ObjectKey {
            namespace: "team-a".into(),
            name: "chat".into(),
        },
        spec,
        credentials: Default::default(),
        header_values: Default::default(),
        share,
    };
    let snapshot = ConfigSnapshot::new(vec![config], vec![]);
    let states = StateRegistry::default();
    let mut pending = states.begin();
    let table = RouteTable::compile(&snapshot, &ClientCache::default(), &states, &mut pending).unwrap();
    table.resolve("chat").unwrap().clone()
}

/// A simulator backend named `name` with extra fields.
pub fn backend(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut b = serde_json::json!({"name": name, "provider": "simulator", "model": format!("sim-{name}")});
    if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(extra.clone());
    }
    b
}
