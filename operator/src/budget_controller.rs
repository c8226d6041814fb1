//! The Budget controller: validate the spec, push changes to the sidecars that spend from it,
//! write its status, and wake up again at the next period boundary.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use jiff::Timestamp;
use kube::{
    ResourceExt,
    runtime::{Controller, WatchStreamExt, controller::Action, reflector, watcher},
};
use sluice_crds::{Budget, validation};
use tokio_util::sync::CancellationToken;

use crate::{
    context::{Context, key_of},
    error::{Error, Result},
    period, push, status, usage,
};

/// The longest a budget waits between reconciles.
const AT_MOST: Duration = Duration::from_secs(3600);

/// How long until the period of `budget` ends, capped at [`AT_MOST`].
pub fn until_next_period(budget: &Budget, now: Timestamp) -> Duration {
    let end = period::window_in(budget.spec.period, &budget.spec.time_zone, now)
        .ok()
        .and_then(|w| w.end);
    match end {
        Some(end) => {
            let secs = end.as_second().saturating_sub(now.as_second()).max(1);
            // One extra second so the reconcile lands inside the new period.
            Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX).saturating_add(1)).min(AT_MOST)
        }
        None => AT_MOST,
    }
}

/// Reconciles one budget.
pub async fn reconcile(budget: Arc<Budget>, ctx: Arc<Context>) -> Result<Action> {
    // Snapshots computed here read every cache: wait until each holds its first full list.
    ctx.wait_caches().await;
    ctx.metrics.reconciled("budget");
    let key = key_of(budget.as_ref());
    if key.namespace.is_empty() {
        return Err(Error::NoNamespace(key.name));
    }
    if let Err(e) = usage::ensure_ledger(&ctx, &key.namespace).await {
        if let Error::LedgerUnreadable { .. } = e {
            // Its status says so; tried again (`error_policy`) until an administrator deletes it.
            status::write_budget(&ctx, &key).await?;
        }
        return Err(e);
    }
    let validity = validation::validate_budget(&budget.spec).map_err(|invalid| {
        tracing::warn!(budget = %key, error = %invalid, "budget not accepted");
        invalid.to_string()
    });
    ctx.verdicts.judge_budget(&key, validity);
    push::recompute(&ctx, &key.namespace);
    status::write_budget(&ctx, &key).await?;
    Ok(Action::requeue(until_next_period(&budget, Timestamp::now())))
}

/// Retries failed reconciles after a short pause.
pub fn error_policy(budget: Arc<Budget>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed("budget");
    tracing::warn!(budget = %budget.name_any(), error = %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, writer: reflector::store::Writer<Budget>, shutdown: CancellationToken) {
    let deleted = ctx.clone();
    let stream = watcher(ctx.watched::<Budget>(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                deleted.cache_filled(|c| c.budgets = true);
            }
            if let Ok(watcher::Event::Delete(budget)) = event {
                let key = key_of(budget);
                deleted.verdicts.judge_budget(&key, Ok(()));
                push::recompute(&deleted, &key.namespace);
            }
        })
        .applied_objects();
    Controller::for_stream(stream, ctx.budgets.clone())
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            |budget, ctx| crate::telemetry::reconcile("Budget", key_of(budget.as_ref()), reconcile(budget, ctx)),
            error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "budget controller");
            }
        })
        .await;
}

#[cfg(test)]
mod tests;
