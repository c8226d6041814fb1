//! The route controller's and budget controller's decisions: the routes as last accepted (what
//! sidecars are served), the verdict on each route, the budgets whose spec is invalid, and which
//! routes were reconciled since start. One lock, never held across an await.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use sluice_crds::{BudgetSpec, ObjectKey};

use crate::desired::AcceptedRoute;

/// What the route controller decided about one route.
#[derive(Debug, Clone)]
pub struct RouteVerdict {
    /// The generation it describes.
    pub generation: Option<i64>,
    /// `Accepted`, `ResolvedRefs`, `Ready`.
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Routes as last accepted, served to sidecars.
    accepted: HashMap<ObjectKey, Arc<AcceptedRoute>>,
    /// The route controller's last verdict per route.
    verdicts: HashMap<ObjectKey, RouteVerdict>,
    /// Budgets whose spec failed validation, with why.
    invalid_budgets: HashMap<ObjectKey, String>,
    /// Routes reconciled at least once since start (gates the first snapshots).
    reconciled: BTreeSet<ObjectKey>,
}

/// The accepted routes and the verdicts.
#[derive(Debug, Default)]
pub struct Verdicts {
    inner: Mutex<Inner>,
}

impl Verdicts {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic under this lock leaves maps that are still consistent enough to serve.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The route as last accepted.
    pub fn accepted(&self, key: &ObjectKey) -> Option<Arc<AcceptedRoute>> {
        self.lock().accepted.get(key).cloned()
    }

    /// Serves `route` unless a version of it is accepted already (a restored generation).
    pub fn accept_if_absent(&self, route: AcceptedRoute) {
        self.lock()
            .accepted
            .entry(route.key.clone())
            .or_insert_with(|| Arc::new(route));
    }

    /// Records a reconcile: `accepted` (when the route is accepted as written) replaces what is
    /// served, then `verdict` is made from the generation served and recorded.
    pub fn decide(
        &self,
        key: &ObjectKey,
        accepted: Option<AcceptedRoute>,
        verdict: impl FnOnce(Option<i64>) -> RouteVerdict,
    ) -> RouteVerdict {
        let mut inner = self.lock();
        if let Some(route) = accepted {
            inner.accepted.insert(key.clone(), Arc::new(route));
        }
        let verdict = verdict(inner.accepted.get(key).map(|a| a.generation));
        inner.verdicts.insert(key.clone(), verdict.clone());
        inner.reconciled.insert(key.clone());
        verdict
    }

    /// Forgets a deleted route.
    pub fn forget(&self, key: &ObjectKey) {
        let mut inner = self.lock();
        inner.accepted.remove(key);
        inner.verdicts.remove(key);
        inner.reconciled.remove(key);
    }

    /// The last verdict on a route.
    pub fn verdict(&self, key: &ObjectKey) -> Option<RouteVerdict> {
        self.lock().verdicts.get(key).cloned()
    }

    /// The accepted routes of `namespace`, by key.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<AcceptedRoute>> {
        let mut routes: Vec<Arc<AcceptedRoute>> = self
            .lock()
            .accepted
            .values()
            .filter(|r| r.key.namespace == namespace)
            .cloned()
            .collect();
        routes.sort_by(|a, b| a.key.cmp(&b.key));
        routes
    }

    /// The keys of the accepted routes of `namespace` (every namespace with `None`).
    pub fn keys(&self, namespace: Option<&str>) -> Vec<ObjectKey> {
        self.lock()
            .accepted
            .keys()
            .filter(|k| namespace.is_none_or(|ns| k.namespace == ns))
            .cloned()
            .collect()
    }

    /// Whether every route in `keys` has been reconciled since start.
    pub fn all_reconciled(&self, mut keys: impl Iterator<Item = ObjectKey>) -> bool {
        let inner = self.lock();
        keys.all(|k| inner.reconciled.contains(&k))
    }

    /// Records whether a budget's spec is valid (`Err` says why not).
    pub fn judge_budget(&self, key: &ObjectKey, validity: Result<(), String>) {
        let mut inner = self.lock();
        match validity {
            Ok(()) => inner.invalid_budgets.remove(key),
            Err(why) => inner.invalid_budgets.insert(key.clone(), why),
        };
    }

    /// Why a budget is invalid, if it is.
    pub fn budget_invalid(&self, key: &ObjectKey) -> Option<String> {
        self.lock().invalid_budgets.get(key).cloned()
    }

    /// `budgets` without the invalid ones.
    pub fn valid_budgets(&self, budgets: BTreeMap<ObjectKey, BudgetSpec>) -> BTreeMap<ObjectKey, BudgetSpec> {
        let inner = self.lock();
        budgets
            .into_iter()
            .filter(|(k, _)| !inner.invalid_budgets.contains_key(k))
            .collect()
    }
}
