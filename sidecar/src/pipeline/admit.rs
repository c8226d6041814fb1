//! Admission: resolve the route, read what the client asks, plan the candidates, reserve the
//! budget and charge the limits; and what an admitted request holds once it is served.

use std::{sync::Arc, time::Duration};

use http::HeaderMap;
use sluice_crds::{MicroUsd, Outcome, Pricing, Provider, Tokens};
use tokio::time::Instant;

use super::{
    ALLOWANCE_WAIT, Refused, Served, WORST_CASE_OUTPUT_TOKENS, asks::Asks, passes_responses_through, tap::Holds, traced,
};
use crate::{
    accounting::recorder::{Finished, Recorder},
    budget::{Account, Admission, BudgetHold, Refused as BudgetRefused},
    config::ActiveConfig,
    error::ApiError,
    failover::{self, Attempts},
    limits::{ANONYMOUS, Charge},
    route::{
        BackendRuntime, Route,
        facts::{Body, Facts},
        plan::Plan,
    },
    tokenizer::Prompt,
    wire::{CacheStatus, Usage},
};

/// The request's time bound when no candidate says otherwise (the spec's default `total`).
const DEFAULT_TOTAL: Duration = Duration::from_secs(600);

/// A request past admission: its route, candidates, bounds and charge.
pub(super) struct Admitted<'a> {
    pub(super) route: Arc<Route>,
    pub(super) asks: Asks,
    pub(super) facts: Facts<'a>,
    pub(super) plan: Plan,
    pub(super) started: Instant,
    pub(super) deadline: Instant,
    pub(super) charge: Charge,
    pub(super) budget: Option<BudgetHold>,
}

impl Admitted<'_> {
    pub(super) fn attempts(&self) -> Attempts<'_> {
        Attempts {
            route: &self.route,
            candidates: &self.plan.candidates,
            deadline: self.deadline,
            priority: self.asks.priority,
            tokens: self.backend_tokens(),
        }
    }

    /// Tokens to charge backend token buckets: counted only if some candidate has such a bucket.
    fn backend_tokens(&self) -> u64 {
        if self.plan.candidates.iter().any(|b| b.state.limits.counts_tokens()) {
            self.facts.estimated_tokens()
        } else {
            0
        }
    }

    pub(super) fn served(
        &self,
        backend: Arc<BackendRuntime>,
        attempts: u32,
        endpoint: &'static str,
        cache: CacheStatus,
    ) -> Served {
        Served {
            route: self.route.clone(),
            backend,
            attempts,
            started: self.started,
            endpoint,
            cache,
            trace: crate::telemetry::current(),
        }
    }

    /// Every attempt failed: counted, and the refusal to answer with.
    pub(super) fn failed(
        &self,
        failed: failover::Failed,
        recorder: &Recorder,
        endpoint: &'static str,
        started: Instant,
    ) -> Refused {
        let refused = Refused {
            error: failed.error,
            route: Some(self.route.clone()),
            backend: failed.backend,
            attempts: failed.attempts,
        };
        record_refusal(recorder, &refused, endpoint, self.asks.user.as_deref(), started);
        refused
    }

    /// What the request holds until its answer ends. `usage_known`: the answer is whole and
    /// carries the provider's usage, so the prompt is never counted for an estimate. Otherwise
    /// the prompt is kept (or its count, if admission took one) and counted only if the answer
    /// ends without usage: a BPE count costs more than the rest of the request path, and its
    /// tables tens of MiB.
    pub(super) fn holds(
        self,
        served: Served,
        recorder: &Arc<Recorder>,
        guard: Option<failover::Guard>,
        usage_known: bool,
    ) -> Holds {
        let prompt = if usage_known {
            Prompt::counted(self.facts.counted_prompt_tokens().unwrap_or(0))
        } else {
            self.facts.kept_prompt()
        };
        Holds {
            guard,
            charge: Some(self.charge),
            recording: None,
            budget: self.budget,
            served,
            recorder: recorder.clone(),
            user: self.asks.user,
            prompt,
        }
    }
}

/// Counts a request that got no answer: refused by a limit or a budget, or failed upstream.
pub(super) fn record_refusal(
    recorder: &Recorder,
    refused: &Refused,
    endpoint: &'static str,
    user: Option<&str>,
    started: Instant,
) {
    let Some(route) = &refused.route else { return };
    let outcome = match &refused.error {
        ApiError::RateLimited { .. } | ApiError::AllowanceShort(_) => Outcome::RateLimited,
        ApiError::BudgetExceeded(_) => Outcome::BudgetRefused,
        ApiError::Upstream(_) | ApiError::NoBackendAvailable { .. } => Outcome::UpstreamError,
        // The client's own mistake (a malformed x-sluice-* header, say): logged, not counted as
        // an outcome of the route.
        _ => {
            tracing::info!(target: "sluice::access", route = %route.key, error = %refused.error, "request refused");
            return;
        }
    };
    tracing::warn!(target: "sluice::access", route = %route.key, error = %refused.error, "request refused");
    recorder.record(&Finished {
        endpoint,
        route: &route.key,
        backend: refused.backend.as_deref(),
        user,
        outcome,
        usage: None,
        cost: MicroUsd::ZERO,
        attempts: refused.attempts,
        duration: started.elapsed(),
        time_to_first_token: None,
        streamed: false,
        cache: "",
        error: Some(refused.error.to_string()),
        trace: crate::telemetry::current().as_ref(),
    });
}

/// The most a request can cost on any of its candidates: prompt tokens plus the completion
/// cap (or [`WORST_CASE_OUTPUT_TOKENS`]) for each choice asked for (`n`), at the dearest prices.
fn worst_case_cost(facts: &Facts<'_>, candidates: &[Arc<BackendRuntime>]) -> MicroUsd {
    let output = match facts.body() {
        Body::Chat(r) => r
            .completion_cap()
            .map_or(WORST_CASE_OUTPUT_TOKENS, u64::from)
            .saturating_mul(r.choices()),
        Body::Completions(r) => u64::from(r.completion_cap()).saturating_mul(r.choices()),
        Body::Embeddings(_) => 0,
    };
    let usage = Usage {
        input: Tokens(facts.prompt_tokens()),
        cached_input: Tokens(0),
        cache_write_input: Tokens(0),
        output: Tokens(output),
        estimated: true,
    };
    candidates
        .iter()
        .filter_map(|b| b.pricing.as_ref())
        .map(|p: &Pricing| usage.cost(p))
        .max()
        .unwrap_or(MicroUsd::ZERO)
}

/// Reserves the worst case in a budget; a request that finds this pod's slice spent waits up to
/// [`ALLOWANCE_WAIT`] for the top-up it asked for.
async fn reserve(account: &Arc<Account>, worst_case: MicroUsd) -> Result<Admission, ApiError> {
    let deadline = Instant::now() + ALLOWANCE_WAIT;
    loop {
        // Taken before the check, so a grant that lands in between still ends the wait.
        let generation = account.generation();
        match account.admit(worst_case, jiff::Timestamp::now()) {
            Ok(admission) => return Ok(admission),
            Err(BudgetRefused::Exhausted(exhausted)) => return Err(ApiError::BudgetExceeded(exhausted)),
            Err(BudgetRefused::Short(short)) => {
                let changed = account.changed_since(generation);
                if !short.asked || tokio::time::timeout_at(deadline, changed).await.is_err() {
                    return Err(ApiError::AllowanceShort(short));
                }
            }
        }
    }
}

/// Resolves the route, plans the candidates and admits the request under the route's limits.
/// A request that continues a stored response (`stored_response`) keeps only the candidates
/// that take Responses requests as they are.
pub(super) async fn admit<'a>(
    config: &ActiveConfig,
    model: &str,
    body: Body<'a>,
    headers: &'a HeaderMap,
    body_user: Option<&str>,
    stored_response: bool,
) -> Result<Admitted<'a>, Refused> {
    let started = Instant::now();
    let route = config.routes.resolve(model)?.clone();
    let refuse = |error: ApiError| Refused {
        error,
        route: Some(route.clone()),
        backend: None,
        attempts: 0,
    };
    traced::admitted(config, &route, model, body, body_user);
    let asks = Asks::read(headers, body_user).map_err(refuse)?;
    let facts = Facts::new(body, headers, route.tokenizer);
    let plan = route
        .plan(&facts, asks.constraints, started)
        .map_err(|e| refuse(ApiError::NoBackendAvailable { reason: e.to_string() }))?;
    let mut plan = plan;
    if let Body::Completions(_) = facts.body() {
        plan.candidates.retain(|b| serves_completions(b.provider));
        if plan.candidates.is_empty() {
            return Err(refuse(ApiError::Unsupported(format!(
                "model {model:?} is served by no openai or openai-compatible backend here, and only those \
                 serve legacy /v1/completions; use /v1/chat/completions"
            ))));
        }
    }
    if stored_response {
        plan.candidates.retain(|b| passes_responses_through(b.provider));
        if plan.candidates.is_empty() {
            let message = format!(
                "previous_response_id names a response stored by OpenAI, and no openai backend of route {} may                  serve this request (this gateway stores no responses); send the whole conversation in input instead",
                route.key
            );
            return Err(refuse(ApiError::bad_request(message, Some("previous_response_id"))));
        }
    }
    let budget = match route.budget.as_ref().and_then(|key| config.budgets.get(key)) {
        None => None,
        Some(account) => match reserve(&account, worst_case_cost(&facts, &plan.candidates)).await {
            Ok(Admission::Reserved(reservation)) => Some(BudgetHold::Reserved(reservation)),
            Ok(Admission::OverSoftLimit) => {
                tracing::warn!(route = %route.key, budget = %account.key(), "soft budget exceeded; serving");
                Some(BudgetHold::Unreserved(account))
            }
            Ok(Admission::Downgrade(allowed)) => {
                plan.candidates.retain(|b| allowed.contains(&b.name));
                if plan.candidates.is_empty() {
                    let reason = format!(
                        "budget {} is spent and downgrades to backends this request cannot use",
                        account.key()
                    );
                    return Err(refuse(ApiError::NoBackendAvailable { reason }));
                }
                Some(BudgetHold::Unreserved(account))
            }
            Err(error) => return Err(refuse(error)),
        },
    };
    let total = plan
        .candidates
        .first()
        .map_or(DEFAULT_TOTAL, |b| b.timeouts.total.get());
    let limits = &route.state.limits;
    let tokens = if limits.counts_tokens() {
        facts.estimated_tokens()
    } else {
        0
    };
    let user = asks.user.as_deref().unwrap_or(ANONYMOUS);
    let charge = limits.admit(user, tokens, Instant::now()).map_err(|r| {
        refuse(ApiError::RateLimited {
            limit: r.limit,
            retry_after: r.retry_after,
        })
    })?;
    Ok(Admitted {
        route: route.clone(),
        asks,
        facts,
        plan,
        started,
        deadline: started + total,
        charge,
        budget,
    })
}

/// Whether a provider has OpenAI's legacy `/v1/completions`.
fn serves_completions(provider: Provider) -> bool {
    matches!(
        provider,
        Provider::Openai | Provider::OpenaiCompatible | Provider::AzureOpenai
    )
}
