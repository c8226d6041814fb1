//! The HTTP endpoints: each translates its API's request into the pipeline's and the
//! pipeline's answer back into its API's format.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod messages;
pub mod models;
pub mod responses;
mod sse_body;
pub mod translated_sse;

use http::{HeaderName, HeaderValue};

use crate::{
    pipeline::{Refused, Served},
    response::Response,
};

/// `x-sluice-route`: the `namespace/name` of the route that served.
pub const ROUTE_HEADER: HeaderName = HeaderName::from_static("x-sluice-route");
/// `x-sluice-backend`: the backend that answered (or failed last).
pub const BACKEND_HEADER: HeaderName = HeaderName::from_static("x-sluice-backend");
/// `x-sluice-attempts`: attempts made.
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-sluice-attempts");
/// `x-sluice-cache`: `hit`, `miss` or `bypass`.
pub const CACHE_HEADER: HeaderName = HeaderName::from_static("x-sluice-cache");
/// `x-sluice-cost-usd`: what a non-streamed answer cost.
pub const COST_HEADER: HeaderName = HeaderName::from_static("x-sluice-cost-usd");

/// `x-sluice-token-count`: who counted a count_tokens answer, `provider` or (locally) `estimate`.
pub const TOKEN_COUNT_HEADER: HeaderName = HeaderName::from_static("x-sluice-token-count");

/// Sets the headers that say who served a request.
pub fn set_served_by(resp: &mut Response, served: &Served) {
    set_headers(
        resp,
        Some(&served.route.key.to_string()),
        Some(served.backend.name.as_str()),
        served.attempts,
    );
    resp.headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(served.cache.as_str()));
}

/// The error response for a refused request, with who tried.
pub fn refused_response(refused: Refused) -> Response {
    let route = refused.route.as_ref().map(|r| r.key.to_string());
    let backend = refused.backend.as_ref().map(|b| b.name.to_string());
    let attempts = refused.attempts;
    let mut resp = refused.error.into_response();
    if route.is_some() {
        set_headers(&mut resp, route.as_deref(), backend.as_deref(), attempts);
    }
    resp
}

fn set_headers(resp: &mut Response, route: Option<&str>, backend: Option<&str>, attempts: u32) {
    let headers = resp.headers_mut();
    if let Some(v) = route.and_then(|r| HeaderValue::try_from(r).ok()) {
        headers.insert(ROUTE_HEADER, v);
    }
    if let Some(v) = backend.and_then(|b| HeaderValue::try_from(b).ok()) {
        headers.insert(BACKEND_HEADER, v);
    }
    headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
}
