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
    route::{BackendRuntime, Route},
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
    set_headers(resp, &served.route, Some(served.backend.as_ref()), served.attempts);
    resp.headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(served.cache.as_str()));
}

/// The error response for a refused request, with who tried.
pub fn refused_response(refused: Refused) -> Response {
    let attempts = refused.attempts;
    let mut resp = refused.error.into_response();
    if let Some(route) = &refused.route {
        set_headers(&mut resp, route, refused.backend.as_deref(), attempts);
    }
    resp
}

/// Sets the route, backend and attempts headers, from the values the route compiled once.
fn set_headers(resp: &mut Response, route: &Route, backend: Option<&BackendRuntime>, attempts: u32) {
    let headers = resp.headers_mut();
    if let Some(v) = &route.key_header {
        headers.insert(ROUTE_HEADER, v.clone());
    }
    if let Some(v) = backend.and_then(|b| b.name_header.as_ref()) {
        headers.insert(BACKEND_HEADER, v.clone());
    }
    headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
}
