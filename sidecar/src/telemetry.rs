//! Traces of the request path (issue 22): one span per API request with the OpenTelemetry GenAI
//! attributes and Sluice's own, one child span per upstream attempt, W3C context continued from
//! the client and sent on to the provider. Export and the `OTEL_*` variables are
//! `sluice_telemetry`'s; this module only says what the spans are.
//!
//! The request's span travels in a tokio task-local set by the listener, so the pipeline, the
//! failover loop and the providers reach it without new arguments; a streamed answer carries it
//! on in its [`Served`](crate::pipeline::Served) and the span ends when the answer is recorded.
//! With tracing off the task-local is never set and every hook returns after one branch.
//! Prompt and completion text is never recorded (no route can opt in yet), nor any header.

pub mod attempt;
pub mod control;
pub mod genai;
pub mod streamed;

use std::{
    future::Future,
    sync::{Arc, OnceLock},
};

use futures::FutureExt as _;
use http::{HeaderMap, Method, StatusCode};
use opentelemetry::{
    Context, KeyValue,
    trace::{SpanKind, TraceContextExt, Tracer as _},
};

pub use genai::{Asked, Ending};
use sluice_crds::ObjectKey;
pub use streamed::StreamedAnswer;

/// The span of the API request a task serves, and its GenAI operation once known.
#[derive(Debug, Clone)]
struct Traced {
    cx: Context,
    operation: Arc<OnceLock<&'static str>>,
}

tokio::task_local! {
    /// The request this task serves.
    static REQUEST: Traced;
}

/// Starts the span of an API request (POSTs only: listing models is not an operation worth a
/// trace), under the caller's `traceparent` when it sent one; `None` when tracing is off.
pub fn start_request(method: &Method, path: &str, headers: &HeaderMap) -> Option<Context> {
    let tracer = sluice_telemetry::tracer()?;
    if method != Method::POST {
        return None;
    }
    let parent = sluice_telemetry::propagation::extract(headers);
    let span = tracer
        .span_builder(format!("POST {path}"))
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("url.path", path.to_owned()),
        ])
        .start_with_context(tracer, &parent);
    Some(parent.with_span(span))
}

/// Runs `served` with `cx` as its request span, then records the status it answered.
///
/// Not an `async fn`: one would hold `served` twice (as its argument and inside the scope it
/// is moved into), doubling the request handler's future, which the listener boxes (a copy of
/// its whole size) on every request, traced or not.
pub fn serve<F>(cx: Context, served: F) -> impl Future<Output = crate::response::Response>
where
    F: Future<Output = crate::response::Response>,
{
    let traced = Traced {
        cx: cx.clone(),
        operation: Arc::default(),
    };
    REQUEST.scope(traced, served).map(move |response| {
        answered(&cx, response.status());
        response
    })
}

/// The status the client got; `error.type` is the status for an error status, as the HTTP
/// conventions say when nothing more specific is known.
fn answered(cx: &Context, status: StatusCode) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
    if status.is_client_error() || status.is_server_error() {
        span.set_attribute(KeyValue::new("error.type", status.as_str().to_owned()));
        span.set_status(opentelemetry::trace::Status::error(""));
    }
}

/// The request span of the task, when tracing is on and one was started.
pub fn current() -> Option<Context> {
    sluice_telemetry::tracer()?;
    REQUEST.try_with(|t| t.cx.clone()).ok()
}

/// The request's GenAI operation (`chat` until the pipeline has read the body).
fn operation() -> &'static str {
    REQUEST
        .try_with(|t| t.operation.get().copied())
        .ok()
        .flatten()
        .unwrap_or("chat")
}

/// Where a request goes, as the request span names it.
#[derive(Debug, Clone, Copy)]
pub struct Routed<'a> {
    /// The route.
    pub route: &'a ObjectKey,
    /// The Budget it spends from.
    pub budget: Option<&'a ObjectKey>,
    /// The user, recorded only when `user_labels` (the metrics' opt-in) is on.
    pub user: Option<&'a str>,
    /// Whether users are labelled.
    pub user_labels: bool,
}

/// What the request asks, once its route is known: the span takes its GenAI name.
pub fn admitted(routed: Routed<'_>, model: &str, asked: Asked<'_>) {
    let Some(cx) = current() else { return };
    let span = cx.span();
    if !span.is_recording() {
        return;
    }
    let operation = genai::operation(asked);
    let _ = REQUEST.try_with(|t| t.operation.set(operation));
    span.update_name(format!("{operation} {model}"));
    span.set_attributes(genai::request_attributes(model, asked));
    span.set_attribute(KeyValue::new("sluice.route", routed.route.to_string()));
    if let Some(budget) = routed.budget {
        span.set_attribute(KeyValue::new("sluice.budget", budget.to_string()));
    }
    if let Some(user) = routed.user.filter(|_| routed.user_labels) {
        span.set_attribute(KeyValue::new("sluice.user", user.to_owned()));
    }
}

/// What a whole answer says of itself (`id`, `model`, finish reasons), read from its body only
/// when the request span records.
pub fn answer(body: &[u8]) {
    let Some(cx) = current() else { return };
    let span = cx.span();
    if span.is_recording() {
        span.set_attributes(genai::response_attributes(body));
    }
}

/// A collector for what a streamed answer says of itself, when the request span records.
pub fn streamed(cx: &Context) -> Option<StreamedAnswer> {
    cx.span().is_recording().then(StreamedAnswer::default)
}

/// Puts what a streamed answer said of itself on its request span.
pub fn streamed_answer(cx: &Context, answer: StreamedAnswer) {
    let span = cx.span();
    if span.is_recording() {
        span.set_attributes(answer.attributes());
    }
}

/// Ends the request span with what the request came to.
pub fn finished(cx: &Context, f: &Ending<'_>) {
    let span = cx.span();
    if span.is_recording() {
        span.set_attributes(genai::finished_attributes(f));
    }
    span.end();
}

/// The trace and span ids for the access log line.
pub fn ids(cx: Option<&Context>) -> (Option<String>, Option<String>) {
    cx.and_then(sluice_telemetry::ids).unzip()
}
