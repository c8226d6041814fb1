//! Writing `status`: each write is the whole status, composed from what the controllers
//! decided and what the ledger counted, applied server-side under one field manager (so two
//! writers in this process never remove each other's fields).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
    runtime::{
        events::{Event, EventType},
        reflector::ObjectRef,
    },
};
use serde_json::json;
use sluice_crds::{
    BackendStatus, Budget, BudgetSpec, BudgetStatus, MicroUsd, ModelRoute, ModelRouteStatus, ObjectKey, SidecarCounts,
};

use crate::{
    FIELD_MANAGER,
    conditions::{self, Reason, Type},
    context::Context,
    desired,
    error::{Error, Result},
    health::Aggregate,
    period,
    usage::{
        configmap_name, ensure_ledger,
        ledger::{BudgetTotals, Incident, IncidentKind, RouteTotals},
    },
};

/// A budget's status figures for `now`: spend of the current period (zero once it rolled over).
pub fn budget_figures(spec: &BudgetSpec, totals: Option<&BudgetTotals>, now: Timestamp) -> BudgetStatus {
    let window = period::window_in(spec.period, &spec.time_zone, now).ok();
    let current = totals.filter(|t| window.is_some_and(|w| t.period_start == Some(w.start)));
    let spent = current.map_or(MicroUsd::ZERO, |t| t.spent);
    BudgetStatus {
        observed_generation: None,
        period_start: window.map(|w| period::display(w.start, &spec.time_zone)),
        spent_usd: spent,
        remaining_usd: spec.limit_usd.saturating_sub(spent),
        by_route: current.map(|t| t.by_route.clone()).unwrap_or_default(),
        by_model: current.map(|t| t.by_model.clone()).unwrap_or_default(),
        conditions: Vec::new(),
    }
}

/// The highest alert threshold (percent) that `spent` reached.
pub fn highest_crossed(thresholds: &[u32], spent: MicroUsd, limit: MicroUsd) -> Option<u32> {
    thresholds
        .iter()
        .copied()
        .filter(|t| u128::from(spent.micros()) * 100 >= u128::from(limit.micros()) * u128::from(*t))
        .max()
}

/// The threshold a `ThresholdReached` message records (`"80% of …"`).
fn recorded_threshold(message: &str) -> Option<u32> {
    message.split('%').next()?.trim().parse().ok()
}

/// Writes the status of every route and budget marked dirty.
pub async fn write_dirty(ctx: &Context) {
    // Health that aged out of its window changes the figures without any report.
    ctx.marks.routes(ctx.health.expire(std::time::Instant::now()));
    let (routes, budgets) = ctx.marks.take();
    for key in routes {
        if let Err(e) = write_route(ctx, &key).await {
            tracing::warn!(route = %key, error = %e, "status write failed; retrying at the next flush");
            ctx.marks.routes([key]);
        }
    }
    for key in budgets {
        if let Err(e) = write_budget(ctx, &key).await {
            tracing::warn!(budget = %key, error = %e, "status write failed; retrying at the next flush");
            ctx.marks.budgets([key]);
        }
    }
}

/// Marks the routes of `namespace` (every namespace with `None`) for the next status write:
/// a pod came, went or changed, so their sidecar counts may have too.
pub fn routes_changed(ctx: &Context, namespace: Option<&str>) {
    ctx.marks.routes(ctx.verdicts.keys(namespace));
}

/// How many sidecars a route selects, and how many run the version that has it.
pub fn sidecar_counts(ctx: &Context, route: &ObjectKey) -> SidecarCounts {
    let Some(accepted) = ctx.verdicts.accepted(route) else {
        return SidecarCounts::default();
    };
    let selector = accepted.spec.pod_selector.as_ref();
    let desired = ctx
        .pod_labels(&route.namespace)
        .values()
        .filter(|labels| desired::selects(selector, labels))
        .count();
    let in_sync = ctx.sessions.in_sync(route);
    // The same builder the webhook uses decides what "current" is.
    let outdated = ctx.settings.inject.as_deref().map_or(0, |config| {
        ctx.pods
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(route.namespace.as_str()))
            .filter(|p| desired::selects(selector, &p.metadata.labels.clone().unwrap_or_default()))
            .filter(|p| crate::webhook::inject::is_outdated(p, config))
            .count()
    });
    SidecarCounts {
        desired: u32::try_from(desired).unwrap_or(u32::MAX),
        in_sync: u32::try_from(in_sync).unwrap_or(u32::MAX),
        outdated: u32::try_from(outdated).unwrap_or(u32::MAX),
    }
}

/// A route's whole status: verdict, sidecar counts, usage.
fn route_status(ctx: &Context, key: &ObjectKey, route: &ModelRoute) -> ModelRouteStatus {
    let mut status = route.status.clone().unwrap_or_default();
    if let Some(v) = ctx.verdicts.verdict(key) {
        status.conditions = v.conditions;
        status.observed_generation = v.generation;
    }
    if let Some(a) = ctx.verdicts.accepted(key) {
        status.config_version = Some(a.digest());
    }
    status.sidecars = Some(sidecar_counts(ctx, key));
    let totals = ctx
        .ledgers
        .read(&key.namespace, |l| l.routes.get(&key.name).cloned())
        .flatten();
    let now = std::time::Instant::now();
    let health: Vec<Aggregate> = route
        .spec
        .backends
        .iter()
        .map(|b| ctx.health.backend(key, b.name.as_str(), now))
        .collect();
    if let Some(t) = &totals {
        status.usage = Some(t.usage.clone());
    }
    if totals.is_some() || health.iter().any(|h| *h != Aggregate::UNREPORTED) {
        status.backends = backend_statuses(route, totals.as_ref(), &health);
    }
    status
}

/// Each backend's lifetime traffic from the ledger with its recent `health` from the sidecars.
fn backend_statuses(route: &ModelRoute, totals: Option<&RouteTotals>, health: &[Aggregate]) -> Vec<BackendStatus> {
    route
        .spec
        .backends
        .iter()
        .zip(health)
        .map(|(b, h)| {
            let counts = totals
                .and_then(|t| t.backends.get(b.name.as_str()).copied())
                .unwrap_or_default();
            BackendStatus {
                name: b.name.clone(),
                healthy: h.healthy,
                circuit: h.circuit,
                requests: counts.requests,
                errors: counts.errors,
                latency_p50_ms: h.latency_p50_ms,
            }
        })
        .collect()
}

/// Writes a route's whole status: verdict, sidecar counts, usage.
pub async fn write_route(ctx: &Context, key: &ObjectKey) -> Result<()> {
    let Some(route) = ctx.routes.get(&ObjectRef::new(&key.name).within(&key.namespace)) else {
        return Ok(());
    };
    let status = route_status(ctx, key, &route);
    if route.status.as_ref() == Some(&status) {
        return Ok(());
    }
    apply_status::<ModelRoute>(ctx, key, "ModelRoute", &status).await
}

/// Sets a budget status's conditions from its figures and the previous status; returns the
/// Events to emit (reason, note) for thresholds newly crossed and a newly exhausted budget.
pub fn budget_conditions(
    budget: &Budget,
    status: &mut BudgetStatus,
    invalid: Option<String>,
    now: &Time,
) -> Vec<(&'static str, String)> {
    let previous = budget.status.clone().unwrap_or_default();
    status.conditions = previous.conditions.clone();
    status.observed_generation = budget.metadata.generation;
    let generation = budget.metadata.generation;
    let c = &mut status.conditions;
    match invalid {
        Some(why) => conditions::set(c, Type::Ready, false, Reason::Invalid, why, generation, now),
        None => conditions::set(c, Type::Ready, true, Reason::Counting, "", generation, now),
    }
    let (spent, limit) = (status.spent_usd, budget.spec.limit_usd);
    let exhausted = spent >= limit;
    let was_exhausted = conditions::get(&previous.conditions, Type::Exhausted).is_some_and(|c| c.status == "True");
    let figures = format!("{spent} of {limit} USD spent");
    let reason = if exhausted {
        Reason::LimitReached
    } else {
        Reason::WithinLimit
    };
    conditions::set(c, Type::Exhausted, exhausted, reason, figures.clone(), generation, now);
    let crossed = highest_crossed(&budget.spec.alert_thresholds, spent, limit);
    let before = conditions::get(&previous.conditions, Type::ThresholdReached)
        .filter(|c| c.status == "True")
        .and_then(|c| recorded_threshold(&c.message));
    match crossed {
        Some(t) => conditions::set(
            c,
            Type::ThresholdReached,
            true,
            Reason::ThresholdCrossed,
            format!("{t}% of the limit reached: {figures}"),
            generation,
            now,
        ),
        None => conditions::set(
            c,
            Type::ThresholdReached,
            false,
            Reason::BelowThresholds,
            figures.clone(),
            generation,
            now,
        ),
    }
    let mut events = Vec::new();
    if let Some(t) = crossed.filter(|t| before.is_none_or(|b| *t > b)) {
        events.push((
            "ThresholdCrossed",
            format!("Budget crossed {t}% of its limit: {figures}"),
        ));
    }
    if exhausted && !was_exhausted {
        events.push(("Exhausted", format!("Budget exhausted: {figures}")));
    }
    events
}

/// Sets (or removes) a budget's `UsageLedger` condition from the ledger's last incident.
pub fn ledger_condition(
    c: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    incident: Option<Incident>,
    configmap: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let Some(Incident { kind, at }) = incident else {
        conditions::remove(c, Type::UsageLedger);
        return;
    };
    let (reason, message) = match kind {
        IncidentKind::Recreated => (
            Reason::Recreated,
            format!(
                "ConfigMap {configmap} was found deleted at {at} and written again from the operator's copy \
                 (the pods' report sequences included): nothing was lost or counted twice"
            ),
        ),
        IncidentKind::RebuiltFromStatus => (
            Reason::RebuiltFromStatus,
            format!(
                "ConfigMap {configmap} was missing at {at} while status already showed usage (deleted while no \
                 operator held it, or kept in this namespace by an earlier version): rebuilt from status; a usage \
                 report applied but not yet acknowledged at that moment may count again (at most one per pod)"
            ),
        ),
    };
    conditions::set(c, Type::UsageLedger, true, reason, message, generation, now);
}

/// Writes a budget's whole status, emitting an Event for each threshold newly crossed.
pub async fn write_budget(ctx: &Context, key: &ObjectKey) -> Result<()> {
    let Some(budget) = ctx.budgets.get(&ObjectRef::new(&key.name).within(&key.namespace)) else {
        return Ok(());
    };
    let configmap = format!("{}/{}", ctx.settings.ledger_namespace, configmap_name(&key.namespace));
    match ensure_ledger(ctx, &key.namespace).await {
        Ok(()) => {}
        Err(Error::LedgerUnreadable { reason, since, .. }) => {
            return write_budget_held(ctx, key, &budget, &configmap, &reason, since).await;
        }
        Err(e) => return Err(e),
    }
    let now = Timestamp::now();
    let figures = ctx.ledgers.read(&key.namespace, |l| {
        budget_figures(&budget.spec, l.budgets.get(&key.name), now)
    });
    let mut status = figures.unwrap_or_else(|| budget_figures(&budget.spec, None, now));
    let invalid = ctx.verdicts.budget_invalid(key);
    let events = budget_conditions(&budget, &mut status, invalid, &Time(now));
    let incident = ctx.ledgers.read(&key.namespace, |l| l.incident).flatten();
    let generation = budget.metadata.generation;
    ledger_condition(&mut status.conditions, incident, &configmap, generation, &Time(now));
    if budget.status.as_ref() != Some(&status) {
        apply_status::<Budget>(ctx, key, "Budget", &status).await?;
    }
    let reference = budget.object_ref(&());
    for (reason, note) in events {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Account".to_owned(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(budget = %key, error = %e, "could not publish an Event");
        }
    }
    Ok(())
}

/// Writes a budget's status while its namespace's ledger cannot be read: the figures as last
/// written (nothing is counted meanwhile), and a `UsageLedger` condition saying why and since when.
async fn write_budget_held(
    ctx: &Context,
    key: &ObjectKey,
    budget: &Budget,
    configmap: &str,
    reason: &str,
    since: Timestamp,
) -> Result<()> {
    let mut status = budget.status.clone().unwrap_or_default();
    let message = format!(
        "ConfigMap {configmap} cannot be read since {since} ({reason}): usage reports of this namespace are \
         held (answered 503; sidecars keep them on disk and send them again, so nothing is lost) and spend here \
         stays as last counted until an administrator deletes the ConfigMap; it is then rebuilt from status"
    );
    let now = Time(Timestamp::now());
    let generation = budget.metadata.generation;
    conditions::set(
        &mut status.conditions,
        Type::UsageLedger,
        false,
        Reason::Unreadable,
        message,
        generation,
        &now,
    );
    if budget.status.as_ref() != Some(&status) {
        apply_status::<Budget>(ctx, key, "Budget", &status).await?;
    }
    Ok(())
}

/// Writes `status` by server-side apply as the operator's field manager, and counts the write.
async fn apply_status<K>(ctx: &Context, key: &ObjectKey, kind: &str, status: &impl serde::Serialize) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let patch = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": kind, "status": status});
    let result = api
        .patch_status(
            &key.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await;
    ctx.metrics.wrote(&kind.to_ascii_lowercase(), result.is_ok());
    result?;
    Ok(())
}

#[cfg(test)]
mod tests;
