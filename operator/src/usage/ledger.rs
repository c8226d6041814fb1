//! A namespace's usage ledger: totals per route and budget, and the highest report sequence
//! applied per pod, kept together so that one write persists both and a report is applied
//! exactly once (DESIGN §6.3).
//!
//! # Size
//!
//! A ConfigMap holds at most 1 MiB, so the ledger must stay bounded. Route and budget totals
//! are a few hundred bytes each and do not grow with traffic (by-model and backend maps grow
//! with the models and backends named in the specs). What grows with pods:
//!
//! - per pod that reported, its [`PodRecord`]: `"<uid>":{"name":"<pod name>","sequence":N},`,
//!   63 bytes plus the name and the sequence's digits (94 bytes for a 30-character name);
//! - per pod per budget it spends from, its [`PodGrant`]:
//!   `"<uid>":{"grantedUSD":"2.000000","spentUSD":"0.001000"},`, 87 bytes (more above $10).
//!
//! So 181 bytes per live pod with one budget, 268 with two: 5,000 live pods in one namespace
//! with one budget take 0.86 MiB, which is the scale one namespace's ledger is for. Departed pods leave nothing: their records are removed once nothing of theirs can
//! arrive any more ([`Ledger::forget`], called by [`crate::ledgers::Ledgers::reclaim_due`]),
//! so 5,000 pods churned through one route leave the ledger as it was before they came
//! (`the_ledger_of_5000_churned_pods_is_its_totals_only` measures it).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sluice_crds::{MicroUsd, ModelRouteSpec, Outcome, RouteUsage, UsageReport};

use crate::allowance::PodUse;

/// The ledgers are ConfigMaps in the operator's own namespace (`--lease-namespace`), where the
/// tenants have no rights, named this prefix and the tenant namespace (names allow 253
/// characters, namespaces 63).
pub const LEDGER_PREFIX: &str = "sluice-usage-";
/// The ledger ConfigMaps' label naming the namespace whose usage they hold.
pub const NAMESPACE_LABEL: &str = "sluice.dev/namespace";
/// Its data key.
pub const LEDGER_KEY: &str = "ledger.json";
/// Where earlier versions kept a namespace's ledger: the ConfigMap of this name in the
/// tenant namespace itself, writable by anyone with the `edit` role there. It is never read:
/// see [`crate::usage::load`].
pub const LEGACY_CONFIGMAP: &str = "sluice-usage";

/// The name of the ConfigMap holding `namespace`'s ledger.
pub fn configmap_name(namespace: &str) -> String {
    format!("{LEDGER_PREFIX}{namespace}")
}

/// Everything counted in one namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    /// Per pod UID: the highest applied report sequence.
    #[serde(default)]
    pub pods: BTreeMap<String, PodRecord>,
    /// Per route name.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteTotals>,
    /// Per budget name.
    #[serde(default)]
    pub budgets: BTreeMap<String, BudgetTotals>,
    /// Per route name: the spec last accepted, so a route that is invalid when the operator
    /// starts keeps being served as it last was (secrets are resolved again, never stored).
    #[serde(default)]
    pub accepted: BTreeMap<String, AcceptedSpec>,
    /// The last time the ledger's ConfigMap went missing, and how it was restored (shown as
    /// the Budgets' `UsageLedger` condition until the next such incident).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Incident>,
}

/// The ledger's ConfigMap went missing, and how it came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    /// How.
    pub kind: IncidentKind,
    /// When the operator found it missing.
    pub at: Timestamp,
}

/// How a missing ledger was restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IncidentKind {
    /// Deleted while the operator held it: written again from the operator's copy, which is
    /// what was last persisted (sequences included), so nothing counts twice.
    Recreated,
    /// Missing when the operator loaded it while status already showed usage (deleted while no
    /// operator held it, or written by a version that kept it in the tenant namespace): rebuilt
    /// from status without the pods' sequences.
    RebuiltFromStatus,
}

/// A route's spec as last accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedSpec {
    /// The generation accepted.
    pub generation: i64,
    /// Its spec.
    pub spec: ModelRouteSpec,
}

/// What is known of one reporting pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    /// The pod's name when it last reported.
    pub name: String,
    /// The highest report sequence applied.
    pub sequence: u64,
    /// That report was its sidecar's last (sent on SIGTERM): nothing of the pod is unreported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,
}

/// Whether a deleted pod's allowance may be taken back (DESIGN §6.3: only once its last
/// report is applied, or the wait for it is over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaim {
    /// Its sidecar's final report is applied, or it never reported and holds no grant.
    Now,
    /// Not yet: a report of it may still come.
    Wait,
    /// The wait is over without its final report: what it spent and did not report is missing.
    Unreported,
}

/// A route's usage since it was created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteTotals {
    /// Summed over every pod.
    pub usage: RouteUsage,
    /// Per backend name.
    #[serde(default)]
    pub backends: BTreeMap<String, BackendTotals>,
    /// Per pod UID: what it asked of the route, for sizing limit shares (not persisted: sizing
    /// restarts cold, with even shares).
    #[serde(skip)]
    pub demand: BTreeMap<String, PodDemand>,
}

/// One pod's demand on one route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodDemand {
    /// In the last complete sizing window.
    pub recent: Demand,
    /// In the sizing window in progress.
    pub window: Demand,
}

/// Requests and tokens asked for, whether served or refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Requests.
    pub requests: u64,
    /// Prompt plus completion tokens.
    pub tokens: u64,
}

/// A backend's traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTotals {
    /// Requests it served or failed.
    pub requests: u64,
    /// Requests that failed upstream.
    pub errors: u64,
}

/// A budget's spend in its current period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetTotals {
    /// The period these figures belong to.
    pub period_start: Option<Timestamp>,
    /// Spent in the period.
    #[serde(rename = "spentUSD")]
    pub spent: MicroUsd,
    /// By route name.
    #[serde(default)]
    pub by_route: BTreeMap<String, MicroUsd>,
    /// By upstream model.
    #[serde(default)]
    pub by_model: BTreeMap<String, MicroUsd>,
    /// Per pod UID: granted allowance and reported spend in the period.
    #[serde(default)]
    pub pods: BTreeMap<String, PodGrant>,
}

/// One pod's allowance in one budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodGrant {
    /// Total it may have spent in the period.
    #[serde(rename = "grantedUSD")]
    pub granted: MicroUsd,
    /// What it reported spent in the period.
    #[serde(rename = "spentUSD")]
    pub spent: MicroUsd,
    /// Spent in the last complete sizing window (not persisted: sizing restarts cold).
    #[serde(skip)]
    pub recent: MicroUsd,
    /// Spent in the sizing window in progress.
    #[serde(skip)]
    pub window: MicroUsd,
    /// How much of `granted` is not persisted yet, and so not pushed (a next leader would not
    /// know it was granted). Zero as loaded: what was read is persisted.
    #[serde(skip)]
    pub unpersisted: MicroUsd,
    /// The grant the pod asked for (`POST /v1/allowance`), until planning answers it.
    #[serde(skip)]
    pub asked: MicroUsd,
    /// Sizing windows in a row it spent nothing in.
    #[serde(skip)]
    pub idle_windows: u32,
}

impl PodGrant {
    /// The figures allowance sizing takes.
    pub fn use_(&self) -> PodUse {
        PodUse {
            granted: self.granted,
            spent: self.spent,
            recent: self.recent,
        }
    }

    /// Changes the grant, keeping count of what is not persisted: a raise is held back from
    /// snapshots until the ledger is written; a cut is safe to push at once.
    pub fn set_granted(&mut self, granted: MicroUsd) {
        if granted > self.granted {
            self.unpersisted += granted.saturating_sub(self.granted);
        } else {
            self.unpersisted = self.unpersisted.saturating_sub(self.granted.saturating_sub(granted));
        }
        self.granted = granted;
    }

    /// The grant a snapshot may carry: what is persisted of it.
    pub fn pushable(&self) -> MicroUsd {
        self.granted.saturating_sub(self.unpersisted)
    }
}

/// What applying one report changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The report's sequence was already applied; nothing changed.
    pub duplicate: bool,
    /// Route names whose totals changed.
    pub routes: Vec<String>,
    /// Budget names whose totals changed.
    pub budgets: Vec<String>,
}

impl BudgetTotals {
    /// Starts the period beginning at `start` when the figures belong to an earlier one.
    /// Returns whether it reset.
    pub fn roll(&mut self, start: Timestamp) -> bool {
        if self.period_start == Some(start) {
            return false;
        }
        *self = Self {
            period_start: Some(start),
            ..Self::default()
        };
        true
    }
}

impl Ledger {
    /// The highest sequence applied for `pod_uid` (0 when none).
    pub fn sequence(&self, pod_uid: &str) -> u64 {
        self.pods.get(pod_uid).map_or(0, |p| p.sequence)
    }

    /// Applies `report` unless its sequence was already applied. `budget_of` names the budget
    /// a route spends from now, with its current period's start.
    pub fn apply(
        &mut self,
        pod_name: &str,
        report: &UsageReport,
        budget_of: &dyn Fn(&str) -> Option<(String, Timestamp)>,
    ) -> Applied {
        let record = self.pods.entry(report.pod_uid.clone()).or_default();
        if report.sequence <= record.sequence {
            return Applied {
                duplicate: true,
                ..Applied::default()
            };
        }
        record.sequence = report.sequence;
        record.name = pod_name.to_owned();
        record.finished = report.final_report;
        let mut applied = Applied::default();
        for d in &report.deltas {
            let route = &d.route.name;
            let totals = self.routes.entry(route.clone()).or_default();
            let failed = d.outcome == Outcome::UpstreamError;
            let u = &mut totals.usage;
            u.requests = u.requests.saturating_add(d.requests);
            if failed {
                u.errors = u.errors.saturating_add(d.requests);
            }
            if d.outcome == Outcome::CacheHit {
                u.cache_hits = u.cache_hits.saturating_add(d.requests);
            }
            u.failovers = u.failovers.saturating_add(d.failovers);
            u.input_tokens = u.input_tokens.saturating_add(d.input_tokens.0);
            u.output_tokens = u.output_tokens.saturating_add(d.output_tokens.0);
            u.cache_write_input_tokens = u.cache_write_input_tokens.saturating_add(d.cache_write_input_tokens.0);
            // Refused requests are demand too: a pod refused for want of a share asks for more.
            let demand = totals.demand.entry(report.pod_uid.clone()).or_default();
            demand.window.requests = demand.window.requests.saturating_add(d.requests);
            demand.window.tokens = demand
                .window
                .tokens
                .saturating_add(d.input_tokens.0.saturating_add(d.output_tokens.0));
            u.cost_usd += d.cost;
            // Refusals never reached a backend; cache hits did not either.
            if matches!(d.outcome, Outcome::Ok | Outcome::UpstreamError) {
                let b = totals.backends.entry(d.backend.to_string()).or_default();
                b.requests = b.requests.saturating_add(d.requests);
                if failed {
                    b.errors = b.errors.saturating_add(d.requests);
                }
            }
            push_unique(&mut applied.routes, route);
            if d.cost == MicroUsd::ZERO {
                continue;
            }
            let Some((budget, period_start)) = budget_of(route) else {
                continue;
            };
            let b = self.budgets.entry(budget.clone()).or_default();
            b.roll(period_start);
            b.spent += d.cost;
            *b.by_route.entry(route.clone()).or_default() += d.cost;
            *b.by_model.entry(d.model.to_string()).or_default() += d.cost;
            let grant = b.pods.entry(report.pod_uid.clone()).or_default();
            grant.spent += d.cost;
            grant.window += d.cost;
            push_unique(&mut applied.budgets, &budget);
        }
        applied
    }

    /// Whether the allowance of `pod_uid`, deleted `waited` ago, may be taken back, when a
    /// report of it may come up to `wait` after its deletion.
    pub fn reclaim_due(&self, pod_uid: &str, waited: std::time::Duration, wait: std::time::Duration) -> Reclaim {
        let record = self.pods.get(pod_uid);
        let granted = self.budgets.values().any(|b| b.pods.contains_key(pod_uid));
        if record.is_some_and(|r| r.finished) || (record.is_none() && !granted) {
            Reclaim::Now
        } else if waited < wait {
            Reclaim::Wait
        } else {
            Reclaim::Unreported
        }
    }

    /// Takes back what a deleted pod was granted and did not report spent, so the other pods
    /// can have it. Its token no longer authenticates, so it cannot report or be granted again.
    /// Returns whether anything was taken back.
    pub fn reclaim(&mut self, pod_uid: &str) -> bool {
        let mut changed = false;
        for budget in self.budgets.values_mut() {
            if let Some(grant) = budget.pods.get_mut(pod_uid)
                && grant.granted > grant.spent
            {
                grant.set_granted(grant.spent);
                changed = true;
            }
        }
        changed
    }

    /// Removes every record of a departed pod: its sequence and its grant in every budget.
    /// Only for a pod of which nothing can arrive any more (see
    /// [`crate::ledgers::Ledgers::reclaim_due`]): a report of it applied after this would find
    /// no sequence and count again. Its spend stays in the route and budget totals, and its
    /// allowance was taken back first (granted = spent), so the outstanding allowance does
    /// not change. Returns whether anything was removed.
    pub fn forget(&mut self, pod_uid: &str) -> bool {
        let mut changed = self.pods.remove(pod_uid).is_some();
        for budget in self.budgets.values_mut() {
            changed |= budget.pods.remove(pod_uid).is_some();
        }
        // Its demand is in memory only: gone with it, without a write.
        for route in self.routes.values_mut() {
            route.demand.remove(pod_uid);
        }
        changed
    }

    /// Every pod UID the ledger holds a record or a grant of.
    pub fn pod_uids(&self) -> std::collections::BTreeSet<String> {
        let mut uids: std::collections::BTreeSet<String> = self.pods.keys().cloned().collect();
        for budget in self.budgets.values() {
            uids.extend(budget.pods.keys().cloned());
        }
        uids
    }

    /// Closes the sizing window of every pod: what it spent in it becomes `recent`, and so
    /// does what it asked of each route.
    pub fn close_sizing_window(&mut self) {
        for route in self.routes.values_mut() {
            // A pod silent for a whole window has no demand left to remember.
            route.demand.retain(|_, d| d.window != Demand::default());
            for demand in route.demand.values_mut() {
                demand.recent = std::mem::take(&mut demand.window);
            }
        }
        for budget in self.budgets.values_mut() {
            for grant in budget.pods.values_mut() {
                grant.recent = std::mem::take(&mut grant.window);
                grant.idle_windows = if grant.recent == MicroUsd::ZERO {
                    grant.idle_windows.saturating_add(1)
                } else {
                    0
                };
            }
        }
    }
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|i| i == item) {
        list.push(item.to_owned());
    }
}
