//! Loading a namespace's ledger: from its ConfigMap, or, when there is none (first start, or it
//! was deleted), rebuilt from what the routes' and budgets' `status` shows.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::ledger::{BackendTotals, BudgetTotals, LEDGER_CONFIGMAP, LEDGER_KEY, Ledger, RouteTotals};
use crate::{context::Context, error::Result, ledgers::NamespaceLedger};

/// Loads the ledger of `namespace` unless it is in memory.
pub async fn ensure_ledger(ctx: &Context, namespace: &str) -> Result<()> {
    if ctx.ledgers.contains(namespace) {
        return Ok(());
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let loaded = match api.get_opt(LEDGER_CONFIGMAP).await? {
        Some(cm) => {
            let ledger = match cm.data.as_ref().and_then(|d| d.get(LEDGER_KEY)) {
                Some(text) => serde_json::from_str(text)?,
                None => Ledger::default(),
            };
            NamespaceLedger {
                ledger,
                resource_version: cm.metadata.resource_version,
                dirty: false,
            }
        }
        None => NamespaceLedger {
            ledger: ledger_from_status(ctx, namespace),
            resource_version: None,
            dirty: false,
        },
    };
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
