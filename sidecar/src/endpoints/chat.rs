//! `POST /v1/chat/completions`.

use http::{HeaderValue, StatusCode};
use tokio::time::Instant;

use super::{COST_HEADER, failed_response, set_served_by, sse_body::SseBody};
use crate::{
    config::ActiveConfig,
    error::ApiError,
    failover,
    providers::{ChatCall, Complete, Reply},
    request::parse_chat,
    response::{self, Response},
};

/// Serves one chat completion, plain or streamed.
pub async fn handle(config: &ActiveConfig, body: &[u8]) -> Result<Response, ApiError> {
    let started = Instant::now();
    let request = parse_chat(body)?;
    let route = config.routes.resolve(&request.model)?;
    let request = &request;
    let served = failover::serve(route, started, |backend, deadline| async move {
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
    let served = match served {
        Ok(s) => s,
        Err(failed) => return Ok(failed_response(route, failed)),
    };
    let backend = served.backend;
    let mut resp = match served.reply {
        Reply::Complete(Complete { body, usage }) => {
            let cost = usage.zip(backend.pricing.as_ref()).map(|(u, p)| u.cost(p));
            tracing::info!(target: "sluice::access", route = %route.key, backend = %backend.name,
                model = %backend.model, status = 200, attempts = served.attempts,
                latency_ms = started.elapsed().as_millis() as u64,
                input_tokens = usage.map_or(0, |u| u.input.0), output_tokens = usage.map_or(0, |u| u.output.0),
                cost_usd = %cost.map(|c| c.to_string()).unwrap_or_default(), "chat completion");
            let mut resp = response::json(StatusCode::OK, body);
            if let Some(v) = cost.and_then(|c| HeaderValue::try_from(c.to_string()).ok()) {
                resp.headers_mut().insert(COST_HEADER, v);
            }
            resp
        }
        Reply::Stream(stream) => {
            let body = SseBody::new(stream, route.key.clone(), backend.clone(), started);
            response::event_stream(body.boxed())
        }
    };
    set_served_by(&mut resp, route, Some(backend.name.as_str()), served.attempts);
    Ok(resp)
}
