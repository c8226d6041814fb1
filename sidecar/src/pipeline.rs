//! The request path after parsing, shared by every API a request can arrive by: resolve the
//! route, pick and call backends, meter the answer. Endpoints only translate in and out.

use std::sync::Arc;

use http::HeaderMap;
use tokio::time::Instant;

use crate::{
    accounting::{self, Served},
    config::ActiveConfig,
    error::ApiError,
    failover,
    providers::{ChatCall, Complete, EmbeddingsCall, Reply},
    request::{ChatRequest, EmbeddingsRequest},
    route::{BackendRuntime, Route},
};

/// A chat request served: the answer (a stream is metered and has yielded its first event).
#[derive(Debug)]
pub struct ChatServed {
    /// Who served it.
    pub served: Served,
    /// The answer in OpenAI's format.
    pub reply: Reply,
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

/// Serves a chat request through its route.
pub async fn chat(
    config: &ActiveConfig,
    request: &ChatRequest,
    _headers: &HeaderMap,
    endpoint: &'static str,
) -> Result<ChatServed, Refused> {
    let started = Instant::now();
    let route = config.routes.resolve(&request.model)?.clone();
    let attempt = failover::serve(&route, started, |backend, deadline| async move {
        backend
            .upstream
            .chat(&ChatCall {
                request,
                model: &backend.model,
                deadline,
            })
            .await
    })
    .await;
    let ok = attempt.map_err(|failed| refused(&route, failed))?;
    let served = Served {
        route: route.key.clone(),
        backend: ok.backend,
        attempts: ok.attempts,
        started,
        endpoint,
    };
    let reply = match ok.reply {
        Reply::Complete(complete) => {
            served.record(complete.usage, false, None);
            Reply::Complete(complete)
        }
        Reply::Stream(stream) => Reply::Stream(accounting::metered(stream, served.clone())),
    };
    Ok(ChatServed { served, reply })
}

/// Serves an embeddings request through its route.
pub async fn embeddings(
    config: &ActiveConfig,
    request: &EmbeddingsRequest,
    _headers: &HeaderMap,
) -> Result<EmbeddingsServed, Refused> {
    let started = Instant::now();
    let route = config.routes.resolve(&request.model)?.clone();
    let attempt = failover::serve(&route, started, |backend, deadline| async move {
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
    let ok = attempt.map_err(|failed| refused(&route, failed))?;
    let served = Served {
        route: route.key.clone(),
        backend: ok.backend,
        attempts: ok.attempts,
        started,
        endpoint: "embeddings",
    };
    served.record(ok.reply.usage, false, None);
    Ok(EmbeddingsServed {
        served,
        reply: ok.reply,
    })
}

fn refused(route: &Arc<Route>, failed: failover::Failed) -> Refused {
    let backend = failed.backend.as_ref().map(|b| b.name.as_str()).unwrap_or("-");
    tracing::warn!(target: "sluice::access", route = %route.key, backend, attempts = failed.attempts,
        error = %failed.error, "request failed upstream");
    Refused {
        error: ApiError::Upstream(failed.error),
        route: Some(route.clone()),
        backend: failed.backend,
        attempts: failed.attempts,
    }
}
