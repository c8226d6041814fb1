//! `POST /v1/embeddings`.

use http::StatusCode;
use tokio::time::Instant;

use super::{failed_response, set_served_by};
use crate::{
    config::ActiveConfig,
    error::ApiError,
    failover,
    providers::{Complete, EmbeddingsCall},
    request::parse_embeddings,
    response::{self, Response},
};

/// Serves one embeddings request.
pub async fn handle(config: &ActiveConfig, body: &[u8]) -> Result<Response, ApiError> {
    let started = Instant::now();
    let request = parse_embeddings(body)?;
    let route = config.routes.resolve(&request.model)?;
    let request = &request;
    let served = failover::serve(route, started, |backend, deadline| async move {
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
    let served = match served {
        Ok(s) => s,
        Err(failed) => return Ok(failed_response(route, failed)),
    };
    let Complete { body, usage } = served.reply;
    tracing::info!(target: "sluice::access", route = %route.key, backend = %served.backend.name,
        model = %served.backend.model, status = 200, attempts = served.attempts,
        latency_ms = started.elapsed().as_millis() as u64, input_tokens = usage.map_or(0, |u| u.input.0), "embeddings");
    let mut resp = response::json(StatusCode::OK, body);
    set_served_by(&mut resp, route, Some(served.backend.name.as_str()), served.attempts);
    Ok(resp)
}
