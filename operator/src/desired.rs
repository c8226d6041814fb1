//! The desired config of one pod, computed purely from what the controllers accepted: the
//! routes of its namespace whose `podSelector` matches its labels, their resolved credentials,
//! the budgets they spend from with this pod's allowance, and this pod's share of route-wide
//! limits.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use sluice_crds::{
    ApiKey, BackendName, BudgetConfig, BudgetSpec, ConfigSnapshot, LimitShare, MicroUsd, ModelRouteSpec, ObjectKey,
    RouteConfig,
};

/// A route as last accepted: validated, with its Secrets resolved. A route that later turns
/// invalid keeps being served in this form until it is fixed or deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedRoute {
    /// The resource.
    pub key: ObjectKey,
    /// The generation that was accepted.
    pub generation: i64,
    /// The accepted spec.
    pub spec: ModelRouteSpec,
    /// API keys by backend, from Secrets of the route's namespace.
    pub credentials: BTreeMap<BackendName, ApiKey>,
    /// Header values given by `valueFrom`, by backend and header name, from the same Secrets.
    pub header_values: BTreeMap<BackendName, BTreeMap<String, ApiKey>>,
}

impl AcceptedRoute {
    /// A digest of what was accepted (spec, credentials and header values), shown as `status.configVersion`.
    pub fn digest(&self) -> String {
        let config = RouteConfig {
            key: self.key.clone(),
            spec: self.spec.clone(),
            credentials: self.credentials.clone(),
            header_values: self.header_values.clone(),
            share: LimitShare::default(),
        };
        ConfigSnapshot::new(vec![config], Vec::new()).version.to_string()
    }
}

/// Whether `selector` matches `labels`; no selector matches every pod.
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An operator the API server would have refused: match nothing rather than everything.
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// A pod's allowance in one budget, as its snapshot carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Grant {
    /// Money it may spend in the period (the persisted part of its grant).
    pub allowance: MicroUsd,
    /// The period the grant belongs to.
    pub period_start: Option<jiff::Timestamp>,
    /// The budget's money for the period is spent.
    pub exhausted: bool,
}

/// The inputs for one pod.
#[allow(missing_debug_implementations, reason = "closures have no Debug")]
pub struct PodInputs<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Accepted routes (any namespace; others are skipped).
    pub routes: &'a [&'a AcceptedRoute],
    /// Budget specs by key.
    pub budgets: &'a BTreeMap<ObjectKey, BudgetSpec>,
    /// This pod's allowance per budget.
    pub allowance: &'a dyn Fn(&ObjectKey) -> Grant,
    /// This pod's share of a route's `rateLimit`.
    pub share: &'a dyn Fn(&ObjectKey) -> LimitShare,
}

/// The pod's snapshot, and the routes left out because a model they claim is already served
/// by an earlier route (by name) for this pod.
pub fn snapshot_for(inputs: &PodInputs<'_>) -> (ConfigSnapshot, Vec<ObjectKey>) {
    let mut routes: Vec<&AcceptedRoute> = inputs
        .routes
        .iter()
        .copied()
        .filter(|r| r.key.namespace == inputs.namespace && selects(r.spec.pod_selector.as_ref(), inputs.labels))
        .collect();
    routes.sort_by(|a, b| a.key.cmp(&b.key));
    let mut claimed = BTreeSet::new();
    let mut conflicts = Vec::new();
    let mut configs = Vec::with_capacity(routes.len());
    let mut budget_keys = BTreeSet::new();
    for route in routes {
        if route.spec.models.iter().any(|m| claimed.contains(m.as_str())) {
            conflicts.push(route.key.clone());
            continue;
        }
        claimed.extend(route.spec.models.iter().map(|m| m.as_str()));
        if let Some(r) = &route.spec.budget_ref {
            budget_keys.insert(ObjectKey {
                namespace: route.key.namespace.clone(),
                name: r.name.clone(),
            });
        }
        configs.push(RouteConfig {
            key: route.key.clone(),
            spec: route.spec.clone(),
            credentials: route.credentials.clone(),
            header_values: route.header_values.clone(),
            share: (inputs.share)(&route.key),
        });
    }
    let budgets = budget_keys
        .into_iter()
        .filter_map(|key| {
            let spec = inputs.budgets.get(&key)?.clone();
            let grant = (inputs.allowance)(&key);
            Some(BudgetConfig {
                key,
                spec,
                allowance: grant.allowance,
                allowance_period_start: grant.period_start,
                exhausted: grant.exhausted,
            })
        })
        .collect();
    (ConfigSnapshot::new(configs, budgets), conflicts)
}

#[cfg(test)]
mod tests;
