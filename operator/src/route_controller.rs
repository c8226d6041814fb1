//! The ModelRoute controller: validate, resolve Secrets and the Budget, accept (or keep the
//! last accepted version), push to the sidecars, write conditions.
//!
//! Secrets, least privilege: they are watched as metadata only (`PartialObjectMeta<Secret>`,
//! a trigger), and a Secret a route names is read with a GET when the route is reconciled.
//! Of what that GET returns only the key the route names is kept, in the accepted route's
//! credentials (what sidecars are sent); the rest of the object is dropped at once. So the
//! operator holds no Secret of the cluster but the referenced keys, and a changed Secret
//! (its resourceVersion moves) still reaches the sidecars within about a second (DESIGN §6.1).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::{
    Api, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::{Event, EventType},
        reflector::{self, ObjectRef},
        watcher,
    },
};
use sluice_crds::{
    ApiKey, BackendName, Budget, ModelRoute, ModelRouteSpec, ObjectKey, SecretKeyRef,
    validation::{self, FieldError},
};
use tokio_util::sync::CancellationToken;

use crate::{
    conditions::{self, Reason, Type},
    context::{Context, key_of},
    desired::AcceptedRoute,
    error::{Error, Result},
    push, status,
    usage::{self, ledger::AcceptedSpec},
    verdicts::RouteVerdict,
};

/// Why a route is not accepted as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The spec breaks a rule.
    Invalid(String),
    /// A Secret is missing.
    SecretNotFound(String),
    /// A Secret lacks the key.
    SecretKeyNotFound(String),
    /// The Budget is missing or does not fit.
    BudgetNotFound(String),
}

impl Rejection {
    fn reason(&self) -> Reason {
        match self {
            Self::Invalid(_) => Reason::Invalid,
            Self::SecretNotFound(_) => Reason::SecretNotFound,
            Self::SecretKeyNotFound(_) => Reason::SecretKeyNotFound,
            Self::BudgetNotFound(_) => Reason::BudgetNotFound,
        }
    }

    fn message(&self) -> &str {
        match self {
            Self::Invalid(m) | Self::SecretNotFound(m) | Self::SecretKeyNotFound(m) | Self::BudgetNotFound(m) => m,
        }
    }

    /// When to look again: an invalid spec only changes with an edit (which triggers a
    /// reconcile); a missing reference is also watched, with a slow safety net.
    fn requeue(&self) -> Action {
        match self {
            Self::Invalid(_) => Action::await_change(),
            _ => Action::requeue(Duration::from_secs(300)),
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Checks a route against the schema's rules, its Budget and its Secrets (read fresh).
pub async fn resolve(ctx: &Context, key: &ObjectKey, spec: &ModelRouteSpec) -> Result<Result<Resolved, Rejection>> {
    if let Err(invalid) = validation::validate_model_route(spec) {
        return Ok(Err(Rejection::Invalid(invalid.to_string())));
    }
    let budget = match &spec.budget_ref {
        None => None,
        Some(r) => match ctx
            .budgets
            .get(&ObjectRef::<Budget>::new(&r.name).within(&key.namespace))
        {
            Some(cached) => Some(cached),
            // The Budget watch that triggered this reconcile and the one filling the cache are
            // two streams: a Budget just created may be in the first and not yet in the second.
            // Ask the API server before calling it missing.
            None => Api::<Budget>::namespaced(ctx.client.clone(), &key.namespace)
                .get_opt(&r.name)
                .await?
                .map(Arc::new),
        },
    };
    if let Err(invalid) = validation::validate_references(spec, budget.as_ref().map(|b| &b.spec)) {
        let (refs, rules): (Vec<FieldError>, Vec<FieldError>) = invalid
            .0
            .into_iter()
            .partition(|e| e.path.starts_with("spec.budgetRef"));
        if !rules.is_empty() {
            return Ok(Err(Rejection::Invalid(join(&rules))));
        }
        return Ok(Err(Rejection::BudgetNotFound(join(&refs))));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &key.namespace);
    // Each Secret named is read once per reconcile and dropped at its end; only the named keys
    // are kept (in the credentials and header values).
    let mut read: BTreeMap<String, Option<Secret>> = BTreeMap::new();
    let mut resolved = Resolved::default();
    for (i, backend) in spec.backends.iter().enumerate() {
        if let Some(reference) = &backend.credentials_ref {
            let field = format!("spec.backends[{i}].credentialsRef");
            match secret_key(&secrets, &mut read, key, reference, &field).await? {
                Ok(value) => resolved.credentials.insert(backend.name.clone(), value),
                Err(rejection) => return Ok(Err(rejection)),
            };
        }
        for (h, header) in backend.headers.iter().enumerate() {
            let Some(reference) = &header.value_from else { continue };
            let field = format!("spec.backends[{i}].headers[{h}].valueFrom");
            match secret_key(&secrets, &mut read, key, reference, &field).await? {
                Ok(value) => resolved
                    .header_values
                    .entry(backend.name.clone())
                    .or_default()
                    .insert(header.name.clone(), value),
                Err(rejection) => return Ok(Err(rejection)),
            };
        }
    }
    Ok(Ok(resolved))
}

/// What a route's references resolved to: the Secret values its sidecars are sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// API keys by backend.
    pub credentials: BTreeMap<BackendName, ApiKey>,
    /// Header values given by `valueFrom`, by backend and header name.
    pub header_values: BTreeMap<BackendName, BTreeMap<String, ApiKey>>,
}

/// The non-empty value of `reference` (a Secret of the route's namespace, read at most once per
/// reconcile through `read`), or the rejection naming `field`.
async fn secret_key(
    secrets: &Api<Secret>,
    read: &mut BTreeMap<String, Option<Secret>>,
    key: &ObjectKey,
    reference: &SecretKeyRef,
    field: &str,
) -> Result<Result<ApiKey, Rejection>> {
    let secret = match read.entry(reference.name.clone()) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(e) => e.insert(secrets.get_opt(&reference.name).await?),
    };
    let Some(secret) = secret else {
        return Ok(Err(Rejection::SecretNotFound(format!(
            "{field}: Secret {:?} not found in namespace {}",
            reference.name, key.namespace
        ))));
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    match value {
        Some(value) => Ok(Ok(ApiKey::new(value))),
        None => Ok(Err(Rejection::SecretKeyNotFound(format!(
            "{field}: Secret {:?} has no non-empty key {:?}",
            reference.name, reference.key
        )))),
    }
}

/// The conditions for a verdict.
pub fn verdict_conditions(
    previous: &[Condition],
    outcome: &Result<(), Rejection>,
    generation: Option<i64>,
    serving: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut c = previous.to_vec();
    match outcome {
        Ok(()) => {
            conditions::set(&mut c, Type::Accepted, true, Reason::Accepted, "", generation, now);
            conditions::set(
                &mut c,
                Type::ResolvedRefs,
                true,
                Reason::ResolvedRefs,
                "",
                generation,
                now,
            );
            conditions::set(
                &mut c,
                Type::Ready,
                true,
                Reason::Pushed,
                "pushed to the selected sidecars",
                generation,
                now,
            );
        }
        Err(rejection) => {
            let refs = !matches!(rejection, Rejection::Invalid(_));
            if refs {
                conditions::set(&mut c, Type::Accepted, true, Reason::Accepted, "", generation, now);
                conditions::set(
                    &mut c,
                    Type::ResolvedRefs,
                    false,
                    rejection.reason(),
                    rejection.message(),
                    generation,
                    now,
                );
            } else {
                conditions::set(
                    &mut c,
                    Type::Accepted,
                    false,
                    Reason::Invalid,
                    rejection.message(),
                    generation,
                    now,
                );
            }
            let note = match serving {
                Some(g) => format!("not served as written; sidecars keep generation {g}"),
                None => "not served".to_owned(),
            };
            conditions::set(&mut c, Type::Ready, false, Reason::NotAccepted, note, generation, now);
        }
    }
    c
}

/// After a restart, a route that does not validate now is served as it was last accepted
/// (recorded in the namespace's ledger), if that version still resolves.
async fn restore_last_accepted(ctx: &Context, key: &ObjectKey) -> Result<()> {
    if ctx.verdicts.accepted(key).is_some() {
        return Ok(());
    }
    let Some(recorded) = ctx.ledgers.recorded_accepted(&key.namespace, &key.name) else {
        return Ok(());
    };
    if let Ok(resolved) = resolve(ctx, key, &recorded.spec).await? {
        tracing::info!(route = %key, generation = recorded.generation, "serving the last accepted generation");
        ctx.verdicts.accept_if_absent(AcceptedRoute {
            key: key.clone(),
            generation: recorded.generation,
            spec: recorded.spec,
            credentials: resolved.credentials,
            header_values: resolved.header_values,
        });
    }
    Ok(())
}

/// Records the verdict on a route (and the route, when accepted); returns the verdict, when to
/// look again, and whether the accepted generation recorded in the ledger changed.
fn decide(
    ctx: &Context,
    key: &ObjectKey,
    route: &ModelRoute,
    outcome: &Result<Resolved, Rejection>,
) -> (RouteVerdict, Action, bool) {
    let generation = route.metadata.generation;
    let now = Time(Timestamp::now());
    let previous = route.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let (accepted, action, record_changed) = match outcome {
        Ok(resolved) => {
            let record = AcceptedSpec {
                generation: generation.unwrap_or_default(),
                spec: route.spec.clone(),
            };
            let record_changed = ctx.ledgers.record_accepted(&key.namespace, &key.name, record);
            let accepted = AcceptedRoute {
                key: key.clone(),
                generation: generation.unwrap_or_default(),
                spec: route.spec.clone(),
                credentials: resolved.credentials.clone(),
                header_values: resolved.header_values.clone(),
            };
            // Credentials and budgets may change without an event reaching this route.
            (
                Some(accepted),
                Action::requeue(Duration::from_secs(3600)),
                record_changed,
            )
        }
        Err(rejection) => (None, rejection.requeue(), false),
    };
    let unit = outcome.as_ref().map(|_| ()).map_err(Clone::clone);
    let verdict = ctx.verdicts.decide(key, accepted, |serving| RouteVerdict {
        generation,
        conditions: verdict_conditions(&previous, &unit, generation, serving, &now),
    });
    (verdict, action, record_changed)
}

/// Publishes a Warning Event for a rejection whose `Ready` condition changed.
async fn report_rejection(
    ctx: &Context,
    route: &ModelRoute,
    key: &ObjectKey,
    rejection: &Rejection,
    verdict: &RouteVerdict,
) {
    let previous = route.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let changed = conditions::get(&previous, Type::Ready).map(|c| (&c.message, c.observed_generation))
        != conditions::get(&verdict.conditions, Type::Ready).map(|c| (&c.message, c.observed_generation));
    if changed {
        let event = Event {
            type_: EventType::Warning,
            reason: rejection.reason().as_str().to_owned(),
            note: Some(rejection.message().chars().take(1000).collect()),
            action: "Validate".to_owned(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &route.object_ref(&())).await {
            tracing::warn!(route = %key, error = %e, "could not publish an Event");
        }
    }
    tracing::warn!(route = %key, reason = rejection.reason().as_str(), message = rejection.message(), "route not accepted");
}

/// Reconciles one route.
pub async fn reconcile(route: Arc<ModelRoute>, ctx: Arc<Context>) -> Result<Action> {
    // A route is judged against the Budgets and Pods caches: before their first full list a
    // Budget that exists would read as missing, the route would be refused, and its sidecars
    // would be sent a config without it.
    ctx.wait_caches().await;
    ctx.metrics.reconciled("modelroute");
    let key = key_of(route.as_ref());
    if key.namespace.is_empty() {
        return Err(Error::NoNamespace(key.name));
    }
    usage::ensure_ledger(&ctx, &key.namespace).await?;
    let outcome = resolve(&ctx, &key, &route.spec).await?;
    if outcome.is_err() {
        restore_last_accepted(&ctx, &key).await?;
    }
    let (verdict, action, record_changed) = decide(&ctx, &key, &route, &outcome);
    if record_changed {
        // Record the accepted generation before sidecars get it, so a restarted operator that
        // finds the route broken serves what the sidecars already run.
        usage::flush_namespace(&ctx, &key.namespace).await;
    }
    ctx.check_synced();
    push::recompute(&ctx, &key.namespace);
    if let Err(rejection) = &outcome {
        report_rejection(&ctx, &route, &key, rejection, &verdict).await;
    }
    status::write_route(&ctx, &key).await?;
    Ok(action)
}

/// Retries failed reconciles after a short pause.
pub fn error_policy(route: Arc<ModelRoute>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed("modelroute");
    tracing::warn!(route = %route.name_any(), error = %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// The routes of `namespace` whose spec `uses` the object that changed.
fn routes_using(
    routes: &reflector::Store<ModelRoute>,
    namespace: &str,
    uses: impl Fn(&ModelRouteSpec) -> bool,
) -> Vec<ObjectRef<ModelRoute>> {
    routes
        .state()
        .iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(namespace))
        .filter(|r| uses(&r.spec))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// Whether a backend of `spec` takes its key or a header's value from Secret `name`.
fn names_secret(spec: &ModelRouteSpec, name: &str) -> bool {
    spec.backends.iter().any(|b| {
        b.credentials_ref.as_ref().is_some_and(|c| c.name == name)
            || b.headers
                .iter()
                .any(|h| h.value_from.as_ref().is_some_and(|r| r.name == name))
    })
}

/// Whether `spec`'s `budgetRef` names Budget `name`.
fn names_budget(spec: &ModelRouteSpec, name: &str) -> bool {
    spec.budget_ref.as_ref().is_some_and(|b| b.name == name)
}

/// The Secrets watched as triggers: metadata only (names, resourceVersions), never values.
fn secret_triggers(ctx: &Context) -> Api<PartialObjectMeta<Secret>> {
    ctx.watched::<PartialObjectMeta<Secret>>()
}

/// Runs the controller until `shutdown`. `routes` is the store `writer` fills.
pub async fn run(ctx: Arc<Context>, writer: reflector::store::Writer<ModelRoute>, shutdown: CancellationToken) {
    let deleted = ctx.clone();
    let stream = watcher(ctx.watched::<ModelRoute>(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                deleted.cache_filled(|c| c.routes = true);
            }
            if let Ok(watcher::Event::Delete(route)) = event {
                let key = key_of(route);
                deleted.verdicts.forget(&key);
                deleted.ledgers.forget_accepted(&key.namespace, &key.name);
                tracing::info!(route = %key, "route deleted");
                push::recompute(&deleted, &key.namespace);
            }
        })
        .applied_objects();
    let for_secrets = ctx.routes.clone();
    let for_budgets = ctx.routes.clone();
    Controller::for_stream(stream, ctx.routes.clone())
        // Metadata only: a Secret's values never reach the operator through the watch, only
        // through the GET of a referenced Secret in `resolve`, which keeps the one key a route
        // names. A change to a Secret's data changes its resourceVersion, so the event comes
        // all the same and the routes naming it are resolved again at once.
        .watches(
            secret_triggers(&ctx),
            watcher::Config::default(),
            move |secret: PartialObjectMeta<Secret>| {
                let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
                routes_using(&for_secrets, &ns, |spec| names_secret(spec, &name))
            },
        )
        .watches(
            ctx.watched::<Budget>(),
            watcher::Config::default(),
            move |budget: Budget| {
                let (ns, name) = (budget.namespace().unwrap_or_default(), budget.name_any());
                routes_using(&for_budgets, &ns, |spec| names_budget(spec, &name))
            },
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            |route, ctx| crate::telemetry::reconcile("ModelRoute", key_of(route.as_ref()), reconcile(route, ctx)),
            error_policy,
            ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "route controller");
            }
        })
        .await;
}

#[cfg(test)]
mod tests;
