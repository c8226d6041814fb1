//! Which routes a pod may report usage for (DESIGN §6.3: "only for routes that select their
//! pod; anything else is refused"). Without this rule any pod of a namespace could post usage
//! for any route of it, spend a shared Budget to its hard limit and lock every other pod out.
//!
//! A delta for route `R` from pod `P` is accepted when `R` is in `P`'s namespace and either
//!
//! - a snapshot sent to `P` held `R` (kept until `P` is deleted): a sidecar serves a route
//!   until it applies a snapshot without it and reports that usage afterwards, so a pod that
//!   was relabelled, or whose route changed its selector or was deleted, still reports what it
//!   served while the route was its own. No time window would be sound here: the operator does
//!   not know when a sidecar that was cut off stopped serving. The pod held that route's config
//!   and key all along, so this lets it do nothing it could not do before; or
//! - `R` as accepted (what the push serves) selects `P` by the labels the operator knows for it
//!   now: after an operator restart nothing has been sent yet, and a sidecar resends its unacked
//!   report before its stream is back.
//!
//! A delta names no Budget: the spend is charged to the Budget its route's `budgetRef` names,
//! so a pod reaches a Budget only through a route of its own. One delta out of scope refuses
//! the whole report (403) and nothing of it is applied; a report is applied whole or not at
//! all, so that a sequence is never half-counted.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use sluice_crds::ObjectKey;

use crate::desired::{AcceptedRoute, selects};

/// What the operator knows of the reporting pod.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The pod's namespace (from its token).
    pub namespace: &'a str,
    /// The pod's name, for the message.
    pub pod: &'a str,
    /// Its labels as the operator knows them now (`None`: unknown, so no route selects it).
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// Every route a snapshot sent to it held.
    pub sent: &'a BTreeSet<ObjectKey>,
    /// The accepted routes of its namespace.
    pub routes: &'a [Arc<AcceptedRoute>],
}

/// Why a report was refused: the first delta outside the pod's routes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfScope {
    /// The route is in another namespace.
    #[error("route {route} is not in the pod's namespace {namespace}; the report is refused, nothing of it applied")]
    OtherNamespace {
        /// The route named.
        route: ObjectKey,
        /// The pod's namespace.
        namespace: String,
    },
    /// No such route is served, and none was sent to the pod.
    #[error(
        "route {route} is not an accepted route and was never sent to pod {pod}; the report is refused, nothing of it applied"
    )]
    UnknownRoute {
        /// The route named.
        route: ObjectKey,
        /// The pod.
        pod: String,
    },
    /// The route does not select the pod and was never sent to it.
    #[error(
        "route {route} does not select pod {pod} and was never sent to it{}: a pod reports usage only for its own routes; the report is refused, nothing of it applied",
        budget.as_ref().map(|b| format!(", so it may not spend from Budget {b}")).unwrap_or_default()
    )]
    NotSelected {
        /// The route named.
        route: ObjectKey,
        /// The pod.
        pod: String,
        /// The Budget the route names, if any.
        budget: Option<String>,
    },
}

/// Accepts a report naming `routes` (its deltas' and its health's) when every one is a route
/// of the pod (see the module's rule).
pub fn check<'r>(scope: &Scope<'_>, routes: impl IntoIterator<Item = &'r ObjectKey>) -> Result<(), OutOfScope> {
    let mut checked: BTreeSet<&ObjectKey> = BTreeSet::new();
    for route in routes {
        if !checked.insert(route) {
            continue;
        }
        if route.namespace != scope.namespace {
            return Err(OutOfScope::OtherNamespace {
                route: route.clone(),
                namespace: scope.namespace.to_owned(),
            });
        }
        if scope.sent.contains(route) {
            continue;
        }
        let Some(accepted) = scope.routes.iter().find(|r| r.key == *route) else {
            return Err(OutOfScope::UnknownRoute {
                route: route.clone(),
                pod: scope.pod.to_owned(),
            });
        };
        let selected = scope
            .labels
            .is_some_and(|labels| selects(accepted.spec.pod_selector.as_ref(), labels));
        if !selected {
            return Err(OutOfScope::NotSelected {
                route: route.clone(),
                pod: scope.pod.to_owned(),
                budget: accepted.spec.budget_ref.as_ref().map(|b| b.name.clone()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
