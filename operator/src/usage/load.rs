//! Loading a namespace's ledger from its ConfigMap in the operator's namespace, or, when there
//! is none, rebuilding it from what the routes' and budgets' `status` shows.
//!
//! A ledger that is missing while status already shows usage was lost (deleted while no
//! operator held it; one deleted while held is written again from memory by the flush): it is
//! rebuilt from status, without the pods' sequences, and the Budgets' `UsageLedger` condition
//! says so ([`super::ledger::IncidentKind::RebuiltFromStatus`]). A ConfigMap that exists and
//! is not a ledger (unparsable JSON, no `ledger.json`, the wrong shape) is never overwritten:
//! the namespace's reports are held (answered 503: the sidecar keeps them on disk and sends
//! them again, so nothing is lost) and the condition says so, until an administrator deletes
//! it; then it is rebuilt from status.
//!
//! A ledger left in the tenant namespace by an earlier version (`sluice-usage`,
//! [`super::ledger::LEGACY_CONFIGMAP`]) is not adopted, and never read. Adopting it would carry
//! the pods' sequences over the upgrade, but: anyone with `edit` in that namespace could write
//! it, so its figures are worth no more than the tampering this move ends (status, which they
//! cannot write, holds the same totals); reading it needs a right on every namespace's
//! ConfigMaps that the operator no longer has; and "adopt only once" needs a mark the tenants
//! cannot forge, or a ledger planted after an administrator deleted the real one would be
//! adopted. Without it, the first load after the upgrade rebuilds from status, exactly as
//! after a loss, and says so; the old operator acknowledged every report it applied before it
//! stopped (it flushes on SIGTERM), so normally nothing counts again. The old ConfigMap can be
//! deleted (`kubectl delete configmap sluice-usage -n <namespace>`).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use sluice_crds::{MicroUsd, ObjectKey};

use super::ledger::{
    BackendTotals, BudgetTotals, Incident, IncidentKind, LEDGER_KEY, Ledger, RouteTotals, configmap_name,
};
use crate::{
    context::Context,
    error::{Error, Result},
    ledgers::NamespaceLedger,
};

/// The ledger in a ConfigMap's data, or why it is not one.
pub fn parse(cm: &ConfigMap) -> std::result::Result<Ledger, String> {
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(LEDGER_KEY))
        .ok_or_else(|| format!("it has no key {LEDGER_KEY}"))?;
    serde_json::from_str(text).map_err(|e| format!("{LEDGER_KEY} is not a usage ledger: {e}"))
}

/// Whether the routes' or budgets' status of `namespace` shows usage: its ledger existed.
fn status_shows_usage(ctx: &Context, namespace: &str) -> bool {
    let in_ns = |ns: Option<&str>| ns == Some(namespace);
    ctx.routes
        .state()
        .iter()
        .any(|r| in_ns(r.metadata.namespace.as_deref()) && r.status.as_ref().is_some_and(|s| s.usage.is_some()))
        || ctx.budgets.state().iter().any(|b| {
            in_ns(b.metadata.namespace.as_deref()) && b.status.as_ref().is_some_and(|s| s.spent_usd > MicroUsd::ZERO)
        })
}

/// Marks every budget of `namespace` for the next status write (its `UsageLedger` condition).
fn budgets_changed(ctx: &Context, namespace: &str) {
    let keys = ctx
        .budgets
        .state()
        .iter()
        .filter(|b| b.metadata.namespace.as_deref() == Some(namespace))
        .map(|b| ObjectKey {
            namespace: namespace.to_owned(),
            name: b.metadata.name.clone().unwrap_or_default(),
        })
        .collect::<Vec<_>>();
    ctx.marks.budgets(keys);
}

/// Loads the ledger of `namespace` unless it is in memory.
pub async fn ensure_ledger(ctx: &Context, namespace: &str) -> Result<()> {
    if ctx.ledgers.contains(namespace) {
        return Ok(());
    }
    let name = configmap_name(namespace);
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.settings.ledger_namespace);
    let loaded = match api.get_opt(&name).await? {
        Some(cm) => match parse(&cm) {
            Ok(ledger) => NamespaceLedger {
                ledger,
                resource_version: cm.metadata.resource_version,
                dirty: false,
            },
            Err(reason) => {
                let unreadable = ctx.ledgers.mark_unreadable(namespace, reason);
                budgets_changed(ctx, namespace);
                tracing::error!(namespace, configmap = %format!("{}/{name}", ctx.settings.ledger_namespace),
                    reason = %unreadable.reason, "the usage ledger cannot be read: usage reports are held until an administrator deletes it");
                return Err(Error::LedgerUnreadable {
                    configmap: format!("{}/{name}", ctx.settings.ledger_namespace),
                    reason: unreadable.reason,
                    since: unreadable.since,
                });
            }
        },
        None => {
            let mut ledger = ledger_from_status(ctx, namespace);
            let lost = status_shows_usage(ctx, namespace);
            if lost {
                tracing::warn!(namespace, configmap = %format!("{}/{name}", ctx.settings.ledger_namespace),
                    "the usage ledger is missing while status shows usage: rebuilt from status; \
                     a report applied but not yet acknowledged when it went may count again (at most one per pod)");
                ledger.incident = Some(Incident {
                    kind: IncidentKind::RebuiltFromStatus,
                    at: Timestamp::now(),
                });
            }
            NamespaceLedger {
                ledger,
                resource_version: None,
                // Written at once, so the incident stays recorded.
                dirty: lost,
            }
        }
    };
    if ctx.ledgers.mark_readable(namespace) || loaded.ledger.incident.is_some() {
        budgets_changed(ctx, namespace);
    }
    ctx.ledgers.insert_if_absent(namespace, loaded);
    Ok(())
}

/// A ledger rebuilt from what `status` shows (no pod sequences: those are unknown).
fn ledger_from_status(ctx: &Context, namespace: &str) -> Ledger {
    let mut ledger = Ledger::default();
    for route in ctx.routes.state() {
        if route.metadata.namespace.as_deref() != Some(namespace) {
            continue;
        }
        let Some(status) = &route.status else { continue };
        let Some(usage) = &status.usage else { continue };
        let backends = status
            .backends
            .iter()
            .map(|b| {
                let totals = BackendTotals {
                    requests: b.requests,
                    errors: b.errors,
                };
                (b.name.to_string(), totals)
            })
            .collect();
        let name = route.metadata.name.clone().unwrap_or_default();
        ledger.routes.insert(
            name,
            RouteTotals {
                usage: usage.clone(),
                backends,
                ..RouteTotals::default()
            },
        );
    }
    for budget in ctx.budgets.state() {
        if budget.metadata.namespace.as_deref() != Some(namespace) {
            continue;
        }
        let Some(status) = &budget.status else { continue };
        let Some(start) = status.period_start.as_deref().and_then(|s| s.parse::<Timestamp>().ok()) else {
            continue;
        };
        let name = budget.metadata.name.clone().unwrap_or_default();
        ledger.budgets.insert(
            name,
            BudgetTotals {
                period_start: Some(start),
                spent: status.spent_usd,
                by_route: status.by_route.clone(),
                by_model: status.by_model.clone(),
                pods: BTreeMap::new(),
            },
        );
    }
    ledger
}
