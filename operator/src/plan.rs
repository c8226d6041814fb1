//! The planning function: from a namespace's accepted routes, valid budgets, ledger and pods, it
//! computes what every connected sidecar of that namespace should run (its snapshot, with its
//! allowances and rate-limit shares) and what the ledger's budget figures become (periods rolled
//! over, allowances granted). It reads no clock, no cache and no lock: the push
//! ([`crate::push`]) gathers the inputs, calls it and applies the result.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use jiff::Timestamp;
use sluice_crds::{BudgetSpec, ConfigSnapshot, LimitShare, MicroUsd, ObjectKey};

use crate::{
    allowance::{self, PodUse},
    desired::{self, AcceptedRoute, Grant, PodInputs},
    period,
    usage::ledger::{BudgetTotals, RouteTotals},
};

pub mod shares;

/// A connected sidecar, as planning sees it.
#[derive(Debug, Clone)]
pub struct Sidecar {
    /// Its pod's UID.
    pub uid: String,
    /// Its pod's name (for logs).
    pub name: String,
    /// Its pod's labels.
    pub labels: BTreeMap<String, String>,
}

/// What planning takes.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The namespace planned.
    pub namespace: &'a str,
    /// The time periods are judged at.
    pub now: Timestamp,
    /// The namespace's accepted routes.
    pub routes: &'a [Arc<AcceptedRoute>],
    /// The namespace's valid budgets.
    pub budgets: &'a BTreeMap<ObjectKey, BudgetSpec>,
    /// The labels of every pod of the namespace (stored or connected), by UID: they share the
    /// routes' limits and the budgets' remaining money.
    pub pods: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// The connected sidecars, in the order allowances are granted.
    pub sidecars: &'a [Sidecar],
    /// The ledger's route totals by route name: each pod's recent demand sizes its limit share.
    pub route_totals: &'a BTreeMap<String, RouteTotals>,
}

/// One sidecar's planned config.
#[derive(Debug, Clone)]
pub struct SidecarPlan {
    /// Its pod's UID.
    pub uid: String,
    /// What it should run (shared with every other sidecar planned the same snapshot).
    pub snapshot: Arc<ConfigSnapshot>,
    /// Routes left out because an earlier route serves one of their models for it.
    pub conflicts: Vec<ObjectKey>,
}

/// The result of planning a namespace.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every connected sidecar's config, in the order of the inputs.
    pub sidecars: Vec<SidecarPlan>,
    /// The ledger's budget figures after planning.
    pub budgets: BTreeMap<String, BudgetTotals>,
    /// Whether a period rolled over or a grant changed (the ledger must be written).
    pub ledger_changed: bool,
    /// Each budget's outstanding allowance (the overspend bound).
    pub outstanding: BTreeMap<String, MicroUsd>,
}

/// Plans a namespace from its ledger's budget figures.
pub fn plan(inputs: &Inputs<'_>, budgets: &BTreeMap<String, BudgetTotals>) -> Plan {
    let budget_pods = count_pods(inputs);
    let shares = limit_shares(inputs);
    let mut grants = Grants {
        inputs,
        budget_pods: &budget_pods,
        totals: budgets.clone(),
        outstanding: HashMap::new(),
        windows: HashMap::new(),
        changed: false,
    };
    let route_refs: Vec<&AcceptedRoute> = inputs.routes.iter().map(Arc::as_ref).collect();
    let mut sidecars = Vec::with_capacity(inputs.sidecars.len());
    // Sidecars planned alike share one snapshot, built (and digested) once.
    let mut built: HashMap<Variant, (Arc<ConfigSnapshot>, Vec<ObjectKey>)> = HashMap::new();
    for sidecar in inputs.sidecars {
        let granted = grants.for_sidecar(sidecar);
        let share = |k: &ObjectKey| {
            shares
                .get(k)
                .and_then(|by_pod| by_pod.get(sidecar.uid.as_str()))
                .copied()
                .unwrap_or_default()
        };
        let variant = Variant::of(inputs.namespace, &route_refs, sidecar, &share, &granted);
        let (snapshot, conflicts) = built
            .entry(variant)
            .or_insert_with(|| {
                let allowance = |k: &ObjectKey| granted.get(k).copied().unwrap_or_default();
                let (snapshot, conflicts) = desired::snapshot_for(&PodInputs {
                    namespace: inputs.namespace,
                    labels: &sidecar.labels,
                    routes: &route_refs,
                    budgets: inputs.budgets,
                    allowance: &allowance,
                    share: &share,
                });
                (Arc::new(snapshot), conflicts)
            })
            .clone();
        sidecars.push(SidecarPlan {
            uid: sidecar.uid.clone(),
            snapshot,
            conflicts,
        });
    }
    let outstanding = grants
        .totals
        .iter()
        .map(|(name, t)| (name.clone(), outstanding_of(t)))
        .collect();
    Plan {
        sidecars,
        budgets: grants.totals,
        ledger_changed: grants.changed,
        outstanding,
    }
}

/// Everything a sidecar's snapshot is made of besides what is the same for the whole namespace:
/// which routes select it, its share of each, its grant in each budget. Two sidecars with equal
/// variants get equal snapshots ([`desired::snapshot_for`] reads nothing else of a pod).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Variant {
    /// Indices of the routes that select the sidecar, with its share of each.
    routes: Vec<(usize, Option<u32>, Option<u32>)>,
    /// Its grant in each budget.
    grants: Vec<(ObjectKey, Grant)>,
}

impl Variant {
    fn of(
        namespace: &str,
        routes: &[&AcceptedRoute],
        sidecar: &Sidecar,
        share: &dyn Fn(&ObjectKey) -> LimitShare,
        granted: &BTreeMap<ObjectKey, Grant>,
    ) -> Self {
        let routes = routes
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.key.namespace == namespace && desired::selects(r.spec.pod_selector.as_ref(), &sidecar.labels)
            })
            .map(|(i, r)| {
                let s = share(&r.key);
                (i, s.requests_per_minute, s.tokens_per_minute)
            })
            .collect();
        let grants = granted.iter().map(|(k, g)| (k.clone(), *g)).collect();
        Self { routes, grants }
    }
}

/// How many pods use each budget (through any route).
fn count_pods(inputs: &Inputs<'_>) -> HashMap<String, usize> {
    let mut budget_pods: HashMap<String, usize> = HashMap::new();
    for labels in inputs.pods.values() {
        let mut budgets_here = BTreeSet::new();
        for r in inputs.routes {
            if desired::selects(r.spec.pod_selector.as_ref(), labels)
                && let Some(b) = &r.spec.budget_ref
            {
                budgets_here.insert(b.name.clone());
            }
        }
        for b in budgets_here {
            *budget_pods.entry(b).or_default() += 1;
        }
    }
    budget_pods
}

/// Each route's `rateLimit` split over the pods it selects (stored or connected), by UID,
/// following each pod's demand in the last sizing window ([`shares::split`]).
pub fn limit_shares<'a>(inputs: &Inputs<'a>) -> HashMap<ObjectKey, BTreeMap<&'a str, LimitShare>> {
    // Every connected sidecar is in `pods` already, unless it connected before the pod cache
    // saw it: it still takes part, so that no sidecar is left without a share (no limit).
    let mut pods: BTreeMap<&str, &BTreeMap<String, String>> =
        inputs.pods.iter().map(|(uid, labels)| (uid.as_str(), labels)).collect();
    for s in inputs.sidecars {
        pods.entry(s.uid.as_str()).or_insert(&s.labels);
    }
    let mut out = HashMap::new();
    for r in inputs.routes {
        let Some(limit) = r.spec.rate_limit else { continue };
        let selected: Vec<&str> = pods
            .iter()
            .filter(|(_, labels)| desired::selects(r.spec.pod_selector.as_ref(), labels))
            .map(|(uid, _)| *uid)
            .collect();
        let demand = inputs.route_totals.get(&r.key.name).map(|t| &t.demand);
        let recent = |uid: &str| demand.and_then(|d| d.get(uid)).map(|d| d.recent).unwrap_or_default();
        let requests: Vec<u64> = selected.iter().map(|uid| recent(uid).requests).collect();
        let tokens: Vec<u64> = selected.iter().map(|uid| recent(uid).tokens).collect();
        let requests = limit.requests_per_minute.map(|l| shares::split(l, &requests));
        let tokens = limit.tokens_per_minute.map(|l| shares::split(l, &tokens));
        let by_pod = selected
            .iter()
            .enumerate()
            .map(|(i, uid)| {
                let share = LimitShare {
                    requests_per_minute: requests.as_ref().map(|p| p[i]),
                    tokens_per_minute: tokens.as_ref().map(|p| p[i]),
                };
                (*uid, share)
            })
            .collect();
        out.insert(r.key.clone(), by_pod);
    }
    out
}

fn outstanding_of(totals: &BudgetTotals) -> MicroUsd {
    allowance::outstanding(totals.pods.values().map(|g| g.use_()).collect::<Vec<_>>().iter())
}

/// Allowance granting across the sidecars of one plan.
struct Grants<'p, 'a> {
    inputs: &'p Inputs<'a>,
    budget_pods: &'p HashMap<String, usize>,
    /// The budget figures as they change.
    totals: BTreeMap<String, BudgetTotals>,
    /// Each budget's outstanding allowance, summed once and then kept current as grants change:
    /// summing every pod's grant again for every sidecar would be quadratic in the sidecars.
    outstanding: HashMap<String, MicroUsd>,
    /// Each budget's current period, found once per plan (`now` does not move during one).
    windows: HashMap<String, Option<period::Window>>,
    changed: bool,
}

impl Grants<'_, '_> {
    /// This sidecar's allowance in every budget one of its routes uses, topped up as needed.
    fn for_sidecar(&mut self, sidecar: &Sidecar) -> BTreeMap<ObjectKey, Grant> {
        let mut grants: BTreeMap<ObjectKey, Grant> = BTreeMap::new();
        for r in self.inputs.routes {
            let Some(b) = &r.spec.budget_ref else { continue };
            if !desired::selects(r.spec.pod_selector.as_ref(), &sidecar.labels) {
                continue;
            }
            let key = ObjectKey {
                namespace: self.inputs.namespace.to_owned(),
                name: b.name.clone(),
            };
            let Some(spec) = self.inputs.budgets.get(&key) else {
                continue;
            };
            if grants.contains_key(&key) {
                continue;
            }
            if let Some(granted) = self.grant(&b.name, spec, &sidecar.uid) {
                grants.insert(key, granted);
            }
        }
        grants
    }

    /// Rolls the budget's period if it ended, then sizes `uid`'s allowance: shrunk to its spend
    /// when it has been idle, else topped up (to its target, and to what it asked for) out of
    /// money neither spent nor granted. Returns what its snapshot may carry: the persisted part
    /// of the grant. `None` when the budget's period cannot be computed.
    fn grant(&mut self, name: &str, spec: &BudgetSpec, uid: &str) -> Option<Grant> {
        let now = self.inputs.now;
        // Looked up before inserting: a key is copied only the first time, not for every pod.
        if !self.windows.contains_key(name) {
            let window = period::window_in(spec.period, &spec.time_zone, now).ok();
            self.windows.insert(name.to_owned(), window);
        }
        let window = self.windows.get(name).copied().flatten()?;
        if !self.totals.contains_key(name) {
            self.totals.insert(name.to_owned(), BudgetTotals::default());
        }
        let totals = self.totals.get_mut(name)?;
        if totals.roll(window.start) {
            self.changed = true;
            self.outstanding.remove(name);
        }
        let out = match self.outstanding.get(name) {
            Some(out) => *out,
            None => {
                let out = outstanding_of(totals);
                self.outstanding.insert(name.to_owned(), out);
                out
            }
        };
        let free = allowance::free(spec.limit_usd, totals.spent, out);
        let active = self.budget_pods.get(name).copied().unwrap_or(1);
        let spent = totals.spent;
        if !totals.pods.contains_key(uid) {
            totals.pods.insert(uid.to_owned(), Default::default());
        }
        let grant = totals.pods.get_mut(uid)?;
        let asked = std::mem::take(&mut grant.asked);
        if asked > MicroUsd::ZERO {
            grant.idle_windows = 0;
        }
        let pod = grant.use_();
        let next = match allowance::idle_grant(&pod, grant.idle_windows) {
            Some(shrunk) => shrunk,
            None => {
                let target = allowance::target_headroom(spec.limit_usd, spent, grant.recent, active);
                let sized = allowance::next_grant(&pod, target, free);
                let left = free.saturating_sub(sized.saturating_sub(pod.granted));
                allowance::top_up(&PodUse { granted: sized, ..pod }, asked, left)
            }
        };
        if next != grant.granted {
            let before = pod.headroom();
            grant.set_granted(next);
            self.changed = true;
            if let Some(sum) = self.outstanding.get_mut(name) {
                // `out` includes `before`, so this is the sum over the pods as they are now.
                *sum = out.saturating_sub(before) + grant.use_().headroom();
            }
        }
        Some(Grant {
            allowance: grant.pushable(),
            period_start: totals.period_start,
            exhausted: is_exhausted(totals, spec),
        })
    }
}

/// Whether a budget's money for the period is spent, as the reports applied so far tell.
pub fn is_exhausted(totals: &BudgetTotals, spec: &BudgetSpec) -> bool {
    totals.spent >= spec.limit_usd
}

/// The grants of a ledger as it is written: per budget, its period and each pod's grant.
pub type Written = BTreeMap<String, (Option<Timestamp>, BTreeMap<String, MicroUsd>)>;

/// What [`mark_persisted`] needs to know of the ledger about to be written.
pub fn written(budgets: &BTreeMap<String, BudgetTotals>) -> Written {
    budgets
        .iter()
        .map(|(name, t)| {
            let pods = t.pods.iter().map(|(uid, g)| (uid.clone(), g.granted)).collect();
            (name.clone(), (t.period_start, pods))
        })
        .collect()
}

/// Once `written` is persisted, what of each grant may be pushed: up to the persisted figure
/// of the same period. Grants raised since the write stay held back by the difference.
pub fn mark_persisted(budgets: &mut BTreeMap<String, BudgetTotals>, written: &Written) {
    for (name, totals) in budgets.iter_mut() {
        let Some((period, pods)) = written.get(name) else {
            continue;
        };
        if *period != totals.period_start {
            continue;
        }
        for (uid, grant) in &mut totals.pods {
            if let Some(persisted) = pods.get(uid) {
                grant.unpersisted = grant.granted.saturating_sub(*persisted);
            }
        }
    }
}

#[cfg(test)]
mod tests;
