//! The OpenAI-compatible endpoints.

pub mod chat;
pub mod embeddings;
pub mod models;
mod sse_body;

use http::{HeaderName, HeaderValue};

use crate::{failover::Failed, response::Response, route::Route};

/// `x-sluice-route`: the `namespace/name` of the route that served.
pub const ROUTE_HEADER: HeaderName = HeaderName::from_static("x-sluice-route");
/// `x-sluice-backend`: the backend that answered (or failed last).
pub const BACKEND_HEADER: HeaderName = HeaderName::from_static("x-sluice-backend");
/// `x-sluice-attempts`: attempts made.
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-sluice-attempts");
/// `x-sluice-cost-usd`: what a non-streamed answer cost.
pub const COST_HEADER: HeaderName = HeaderName::from_static("x-sluice-cost-usd");

/// Sets the headers that say who served a request.
fn set_served_by(resp: &mut Response, route: &Route, backend: Option<&str>, attempts: u32) {
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::try_from(route.key.to_string()) {
        headers.insert(ROUTE_HEADER, v);
    }
    if let Some(v) = backend.and_then(|b| HeaderValue::try_from(b).ok()) {
        headers.insert(BACKEND_HEADER, v);
    }
    headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
}

/// The error response for a request that failed upstream, with who failed.
fn failed_response(route: &Route, failed: Failed) -> Response {
    let backend = failed.backend.as_ref().map(|b| b.name.to_string());
    tracing::warn!(target: "sluice::access", route = %route.key, backend = backend.as_deref().unwrap_or("-"),
        attempts = failed.attempts, error = %failed.error, "request failed upstream");
    let mut resp = crate::error::ApiError::Upstream(failed.error).into_response();
    set_served_by(&mut resp, route, backend.as_deref(), failed.attempts);
    resp
}
