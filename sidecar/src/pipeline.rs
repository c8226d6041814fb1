//! The request path after parsing, shared by every API a request can arrive by: resolve the
//! route, pick candidates (rules, request constraints, strategy), admit (limits), look up the
//! cache, run the attempts, meter the answer. Endpoints only translate in and out.

pub mod asks;
mod served;
mod tap;
mod traced;

use std::{sync::Arc, time::Duration};

use http::HeaderMap;
use tokio::time::Instant;

use crate::{
    accounting::recorder::{Finished, Recorder},
    budget::{Account, Admission, BudgetHold, Refused as BudgetRefused},
    cache::{self, Lookup},
    config::ActiveConfig,
    error::ApiError,
    failover::{self, Attempts},
    formats::openai::{ChatRequest, CompletionsRequest, EmbeddingsRequest},
    limits::{ANONYMOUS, Charge},
    providers::{ChatCall, CompletionsCall, EmbeddingsCall, ResponsesCall},
    route::{
        BackendRuntime, Route,
        facts::{Body, Facts},
        plan::Plan,
    },
    wire::{CacheStatus, Complete, ProviderError, Reply, Usage},
};
use asks::Asks;
pub use served::Served;
use sluice_crds::{MicroUsd, Outcome, Pricing, Provider, Tokens};
use tap::{End, Holds};

/// The request's time bound when no candidate says otherwise (the spec's default `total`).
const DEFAULT_TOTAL: Duration = Duration::from_secs(600);

/// How long a request whose budget slice is spent waits for the operator to top it up
/// (DESIGN §6.3) before it is refused: long enough for an ask, a ledger write and a push on a
/// healthy control plane, short against a client's own timeout.
const ALLOWANCE_WAIT: Duration = Duration::from_secs(2);

/// Completion tokens a budget reserves for a request that sets no `max_tokens`: a cap, so one
/// open-ended request cannot hold a whole small budget. An answer longer than this can spend
/// past the reservation; the difference is bounded by what the model returns.
pub const WORST_CASE_OUTPUT_TOKENS: u64 = 4096;

/// A chat request served: the answer (a stream is metered and has yielded its first event).
#[derive(Debug)]
pub struct ChatServed {
    /// Who served it.
    pub served: Served,
    /// The answer in OpenAI's chat format, or (when `passed_through`) in the Responses format.
    pub reply: Reply,
    /// Whether an `openai` backend took a Responses request as it is.
    pub passed_through: bool,
}

/// An embeddings request served.
#[derive(Debug)]
pub struct EmbeddingsServed {
    /// Who served it.
    pub served: Served,
    /// The answer in OpenAI's format.
    pub reply: Complete,
}

/// A request that was not served, with what is known of who tried.
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub error: ApiError,
    /// The route, once resolved.
    pub route: Option<Arc<Route>>,
    /// The backend tried last.
    pub backend: Option<Arc<BackendRuntime>>,
    /// Attempts made.
    pub attempts: u32,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            route: None,
            backend: None,
            attempts: 0,
        }
    }
}

/// A request past admission: its route, candidates, bounds and charge.
struct Admitted<'a> {
    route: Arc<Route>,
    asks: Asks,
    facts: Facts<'a>,
    plan: Plan,
    started: Instant,
    deadline: Instant,
    charge: Charge,
    budget: Option<BudgetHold>,
}

impl Admitted<'_> {
    fn attempts(&self) -> Attempts<'_> {
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

    fn served(
        &self,
        backend: Arc<BackendRuntime>,
        attempts: u32,
        endpoint: &'static str,
        cache: CacheStatus,
    ) -> Served {
        Served {
            route: self.route.key.clone(),
            backend,
            attempts,
            started: self.started,
            endpoint,
            cache,
            trace: crate::telemetry::current(),
        }
    }

    /// Every attempt failed: counted, and the refusal to answer with.
    fn failed(
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
    /// carries the provider's usage, so the prompt need not be counted for an estimate (counting
    /// it with a BPE costs more than the rest of the request path).
    fn holds(
        self,
        served: Served,
        recorder: &Arc<Recorder>,
        guard: Option<failover::Guard>,
        usage_known: bool,
    ) -> Holds {
        let prompt_tokens = if usage_known {
            self.facts.counted_prompt_tokens().unwrap_or(0)
        } else {
            self.facts.prompt_tokens()
        };
        Holds {
            guard,
            charge: Some(self.charge),
            recording: None,
            budget: self.budget,
            served,
            recorder: recorder.clone(),
            user: self.asks.user,
            prompt_tokens,
        }
    }
}

/// Counts a request that got no answer: refused by a limit or a budget, or failed upstream.
fn record_refusal(
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
async fn admit<'a>(
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

/// Serves a legacy completions request through its route's OpenAI-protocol backends (never
/// cached: the cache keys chat requests).
pub async fn completions(
    config: &ActiveConfig,
    request: &CompletionsRequest,
    headers: &HeaderMap,
) -> Result<ChatServed, Refused> {
    const ENDPOINT: &str = "completions";
    let started = Instant::now();
    let user = request.user.as_deref();
    let admitted = admit(config, &request.model, Body::Completions(request), headers, user, false)
        .await
        .inspect_err(|refused| record_refusal(&config.recorder, refused, ENDPOINT, user, started))?;
    let attempt = failover::serve(admitted.attempts(), |backend, deadline| async move {
        backend
            .upstream
            .completions(&CompletionsCall {
                request,
                model: &backend.model,
                deadline,
            })
            .await
    })
    .await;
    let ok = attempt.map_err(|failed| admitted.failed(failed, &config.recorder, ENDPOINT, started))?;
    let served = admitted.served(ok.backend.clone(), ok.attempts, ENDPOINT, CacheStatus::Bypass);
    let usage = match &ok.reply {
        Reply::Complete(c) => {
            crate::telemetry::answer(&c.body);
            c.usage
        }
        Reply::Stream(_) => None,
    };
    let holds = admitted.holds(served.clone(), &config.recorder, Some(ok.guard), usage.is_some());
    Ok(ChatServed {
        served,
        reply: settle_or_tap(ok.reply, holds, usage),
        passed_through: false,
    })
}

/// Serves a chat request through its route.
pub async fn chat(
    config: &ActiveConfig,
    request: &ChatRequest,
    headers: &HeaderMap,
    endpoint: &'static str,
) -> Result<ChatServed, Refused> {
    serve_chat(config, request, headers, endpoint, None).await
}

/// A Responses request as the client sent it, for the backends that take it as it is.
#[derive(Debug, Clone, Copy)]
pub struct Passthrough<'a> {
    /// The client's body.
    pub body: &'a bytes::Bytes,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether only a backend that takes it as it is may serve it (it names a stored response):
    /// the route's other backends are then left out of the candidates.
    pub required: bool,
}

/// Serves a Responses request through its route: `openai` backends take it as it is (the
/// reply is then in the Responses format: see [`ChatServed::passed_through`]); every other
/// backend takes `request`, its chat translation. Passed-through answers are not cached (the
/// cache holds chat answers).
pub async fn responses(
    config: &ActiveConfig,
    request: &ChatRequest,
    passthrough: Passthrough<'_>,
    headers: &HeaderMap,
) -> Result<ChatServed, Refused> {
    serve_chat(config, request, headers, "responses", Some(passthrough)).await
}

/// Whether a backend takes Responses requests as they are: OpenAI itself and Azure OpenAI (an
/// OpenAI-compatible server may serve chat only). Azure serves them on the v1 API and, on
/// deployment URLs, from api-version 2025-03-01-preview on.
pub fn passes_responses_through(provider: Provider) -> bool {
    matches!(provider, Provider::Openai | Provider::AzureOpenai)
}

async fn serve_chat(
    config: &ActiveConfig,
    request: &ChatRequest,
    headers: &HeaderMap,
    endpoint: &'static str,
    passthrough: Option<Passthrough<'_>>,
) -> Result<ChatServed, Refused> {
    let started = Instant::now();
    let user = request.user.as_deref();
    let stored_response = passthrough.is_some_and(|p| p.required);
    let admitted = admit(
        config,
        &request.model,
        Body::Chat(request),
        headers,
        user,
        stored_response,
    )
    .await
    .inspect_err(|refused| record_refusal(&config.recorder, refused, endpoint, user, started))?;
    let may_pass_through = passthrough.is_some()
        && admitted
            .plan
            .candidates
            .iter()
            .any(|b| passes_responses_through(b.provider));
    let (status, fill) = match &admitted.route.state.cache {
        Some(cache) if !admitted.asks.bypass_cache && !may_pass_through && cache::key::is_deterministic(request) => {
            let key = cache::key::key(&admitted.route.key, request);
            match cache.lookup(key, admitted.deadline).await {
                Lookup::Hit(entry) => match replay(&admitted.route, request, &entry) {
                    Some((backend, reply)) => {
                        let served = admitted.served(backend, 0, endpoint, CacheStatus::Hit);
                        let usage_known = matches!(reply, Reply::Complete(_)) && entry.usage.is_some();
                        let holds = admitted.holds(served.clone(), &config.recorder, None, usage_known);
                        return Ok(ChatServed {
                            served,
                            reply: settle_or_tap(reply, holds, entry.usage),
                            passed_through: false,
                        });
                    }
                    None => (CacheStatus::Miss, None),
                },
                Lookup::Miss(fill) => (CacheStatus::Miss, Some(fill)),
            }
        }
        _ => (CacheStatus::Bypass, None),
    };
    let attempt = failover::serve(admitted.attempts(), |backend, deadline| async move {
        match passthrough {
            Some(p) if passes_responses_through(backend.provider) => {
                let call = ResponsesCall {
                    body: p.body,
                    stream: p.stream,
                    model: &backend.model,
                    deadline,
                };
                backend.upstream.responses(&call).await
            }
            Some(p) if p.required => Err(ProviderError::Unsupported(format!(
                "previous_response_id names a response stored by OpenAI, and backend {} is not an openai \
                 backend; send the whole conversation in input instead",
                backend.name
            ))),
            _ => {
                let call = ChatCall {
                    request,
                    model: &backend.model,
                    deadline,
                };
                backend.upstream.chat(&call).await
            }
        }
    })
    .await;
    let ok = attempt.map_err(|failed| admitted.failed(failed, &config.recorder, endpoint, started))?;
    let passed_through = passthrough.is_some() && passes_responses_through(ok.backend.provider);
    let served = admitted.served(ok.backend.clone(), ok.attempts, endpoint, status);
    let usage_known = matches!(&ok.reply, Reply::Complete(c) if c.usage.is_some());
    let mut holds = admitted.holds(served.clone(), &config.recorder, Some(ok.guard), usage_known);
    let reply = match ok.reply {
        Reply::Complete(complete) => {
            crate::telemetry::answer(&complete.body);
            if let Some(fill) = fill {
                fill.complete(ok.backend.name.clone(), complete.body.clone(), complete.usage);
            }
            let usage = complete.usage;
            settle_or_tap(Reply::Complete(complete), holds, usage)
        }
        Reply::Stream(stream) => {
            holds.recording = fill.map(|f| f.record(ok.backend.name.clone()));
            settle_or_tap(Reply::Stream(stream), holds, None)
        }
    };
    Ok(ChatServed {
        served,
        reply,
        passed_through,
    })
}

/// Settles a whole answer now, or a stream when it ends.
fn settle_or_tap(reply: Reply, holds: Holds, usage: Option<Usage>) -> Reply {
    match reply {
        Reply::Complete(complete) => {
            holds.settle(usage, End::Complete, 0, None);
            Reply::Complete(complete)
        }
        Reply::Stream(stream) => Reply::Stream(tap::tap(stream, holds)),
    }
}

/// A cached entry in the form the client asked for, and the backend that gave it (if the
/// route still has it: the headers name it); `None` if it cannot be read.
fn replay(route: &Route, request: &ChatRequest, entry: &cache::Entry) -> Option<(Arc<BackendRuntime>, Reply)> {
    let backend = route
        .backends
        .iter()
        .find(|b| b.name == entry.backend)
        .or_else(|| route.backends.first())?
        .clone();
    let reply = if request.is_stream() {
        Reply::Stream(cache::replay::stream(entry, request.wants_stream_usage())?)
    } else {
        Reply::Complete(Complete {
            body: cache::replay::complete(entry)?,
            usage: entry.usage,
        })
    };
    Some((backend, reply))
}

/// Serves an embeddings request through its route (never cached: see DESIGN §5.6, which
/// caches chat answers that asked for determinism).
pub async fn embeddings(
    config: &ActiveConfig,
    request: &EmbeddingsRequest,
    headers: &HeaderMap,
) -> Result<EmbeddingsServed, Refused> {
    let started = Instant::now();
    let user = request.user.as_deref();
    let admitted = admit(config, &request.model, Body::Embeddings(request), headers, user, false)
        .await
        .inspect_err(|refused| record_refusal(&config.recorder, refused, "embeddings", user, started))?;
    let attempt = failover::serve(admitted.attempts(), |backend, deadline| async move {
        backend
            .upstream
            .embeddings(&EmbeddingsCall {
                request,
                model: &backend.model,
                deadline,
            })
            .await
    })
    .await;
    let ok = attempt.map_err(|failed| admitted.failed(failed, &config.recorder, "embeddings", started))?;
    crate::telemetry::answer(&ok.reply.body);
    let served = admitted.served(ok.backend.clone(), ok.attempts, "embeddings", CacheStatus::Bypass);
    admitted
        .holds(
            served.clone(),
            &config.recorder,
            Some(ok.guard),
            ok.reply.usage.is_some(),
        )
        .settle(ok.reply.usage, End::Complete, 0, None);
    Ok(EmbeddingsServed {
        served,
        reply: ok.reply,
    })
}
