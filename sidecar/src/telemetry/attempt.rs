//! The span of one upstream attempt, a child of the request's: which backend, which provider,
//! where it went (`server.address`/`server.port`) and how it ended. Its context travels in a
//! task-local around the provider call so that [`traced`] can send it on as `traceparent`
//! without the providers taking a new argument.

use std::future::Future;

use futures::future::Either;
use opentelemetry::{
    Context, KeyValue,
    trace::{SpanKind, Status, TraceContextExt, Tracer as _},
};

use sluice_crds::Provider;

use super::genai;
use crate::wire::ProviderError;

/// The backend an attempt goes to.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Its name in the route.
    pub name: &'a str,
    /// Its provider.
    pub provider: Provider,
    /// The model it is asked for.
    pub model: &'a str,
}

tokio::task_local! {
    /// The attempt this task is making.
    static ATTEMPT: Context;
}

/// Starts the span of attempt number `number` on `backend`, when the request has a span.
pub fn start(backend: Target<'_>, number: u32) -> Option<Context> {
    let request = super::current()?;
    let tracer = sluice_telemetry::tracer()?;
    let operation = super::operation();
    let span = tracer
        .span_builder(format!("{operation} {}", backend.model))
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", operation),
            KeyValue::new("gen_ai.provider.name", genai::provider_name(backend.provider)),
            KeyValue::new("gen_ai.request.model", backend.model.to_owned()),
            KeyValue::new("sluice.backend", backend.name.to_owned()),
            KeyValue::new("sluice.attempt", i64::from(number)),
        ])
        .start_with_context(tracer, &request);
    Some(request.with_span(span))
}

/// Runs the provider call with `attempt` as the context [`traced`] sends on.
///
/// Not an `async fn`: one would hold `call` twice (as its argument and inside the scope),
/// doubling the attempt's future and every future around it.
pub fn scope<F: Future>(attempt: Option<Context>, call: F) -> impl Future<Output = F::Output> {
    match attempt {
        Some(cx) => Either::Left(ATTEMPT.scope(cx, call)),
        None => Either::Right(call),
    }
}

/// Ends an attempt that got its first byte.
pub fn answered(attempt: Option<Context>) {
    if let Some(cx) = attempt {
        let span = cx.span();
        span.set_attribute(KeyValue::new("sluice.attempt.outcome", "answered"));
        span.end();
    }
}

/// Ends an attempt that failed; `fails_over` says whether the request goes on to another try.
pub fn failed(attempt: Option<Context>, error: &ProviderError, fails_over: bool) {
    let Some(cx) = attempt else { return };
    let span = cx.span();
    if let ProviderError::Status { status, .. } = error {
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
    }
    span.set_attributes([
        KeyValue::new("error.type", genai::error_type(error)),
        KeyValue::new("sluice.attempt.outcome", "failed"),
        KeyValue::new("sluice.attempt.failed_over", fails_over),
    ]);
    span.set_status(Status::error(""));
    span.end();
}

/// Adds the current attempt's `traceparent` (and `tracestate`) to an upstream model call and
/// records where it goes; leaves `request` untouched when no attempt is traced.
pub fn traced_request<B>(request: &mut http::Request<B>) {
    if sluice_telemetry::tracer().is_none() {
        return;
    }
    let Ok(cx) = ATTEMPT.try_with(Context::clone) else {
        return;
    };
    let span = cx.span();
    if span.is_recording() {
        let uri = request.uri();
        if let Some(host) = uri.host() {
            // A URI keeps an IPv6 host in brackets; a URL's host does not.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            span.set_attribute(KeyValue::new("server.address", host.to_owned()));
        }
        let known = match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        };
        if let Some(port) = uri.port_u16().or(known) {
            span.set_attribute(KeyValue::new("server.port", i64::from(port)));
        }
    }
    sluice_telemetry::propagation::inject(&cx, request.headers_mut());
}

/// [`traced_request`] for a reqwest request (the control plane's).
pub fn traced(builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    if sluice_telemetry::tracer().is_none() {
        return builder;
    }
    let Ok(cx) = ATTEMPT.try_with(Context::clone) else {
        return builder;
    };
    let span = cx.span();
    // A clone of a JSON body shares its bytes; only a streamed body cannot be cloned.
    if span.is_recording()
        && let Some(Ok(request)) = builder.try_clone().map(reqwest::RequestBuilder::build)
    {
        let url = request.url();
        if let Some(host) = url.host_str() {
            span.set_attribute(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = url.port_or_known_default() {
            span.set_attribute(KeyValue::new("server.port", i64::from(port)));
        }
    }
    let mut headers = http::HeaderMap::new();
    sluice_telemetry::propagation::inject(&cx, &mut headers);
    builder.headers(headers)
}
