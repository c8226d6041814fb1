//! The request path after parsing, shared by every API a request can arrive by: resolve the
//! route, pick candidates (rules, request constraints, strategy), admit (limits), look up the
//! cache, run the attempts, meter the answer. Endpoints only translate in and out.

mod admit;
pub mod asks;
mod served;
mod tap;
mod traced;

use std::{sync::Arc, time::Duration};

use http::HeaderMap;
use tokio::time::Instant;

use crate::{
    cache::{self, Lookup},
    config::ActiveConfig,
    error::ApiError,
    failover,
    formats::openai::{ChatRequest, CompletionsRequest, EmbeddingsRequest},
    providers::{ChatCall, CompletionsCall, EmbeddingsCall, ResponsesCall},
    route::{BackendRuntime, Route, facts::Body},
    wire::{CacheStatus, Complete, ProviderError, Reply, Usage},
};
use admit::{admit, record_refusal};
pub use served::Served;
use sluice_crds::Provider;
use tap::{End, Holds};

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
