//! Traces of the operator (issue 22): a span per reconcile of a ModelRoute or a Budget, a span
//! per config push that the reconcile caused, and a span per sidecar ack, so that a route
//! change can be followed from its reconcile to each sidecar's ack. Export and the `OTEL_*`
//! variables are `sluice_telemetry`'s.
//!
//! The push's trace context reaches the sidecar as a `traceparent` member of the snapshot's
//! line on the watch stream (the stream is one long response, so a header could not carry one
//! per snapshot); a sidecar that does not know the member ignores it, as it ignores any unknown
//! member. The sidecar's apply span continues it, and its ack carries the apply span's
//! `traceparent` header, under which the ack span is recorded.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{Mutex, PoisonError},
    time::SystemTime,
};

use http::HeaderMap;
use opentelemetry::{
    Context, KeyValue,
    trace::{FutureExt as _, SpanKind, Status, TraceContextExt, Tracer as _},
};
use sluice_crds::{ConfigVersion, ObjectKey, control::PodIdentity};

/// How many pushed versions keep their trace context for the stream and the ack to find.
const REMEMBERED: usize = 1024;

/// The trace context of recently pushed versions, newest last.
static PUSHED: Mutex<VecDeque<(ConfigVersion, Context)>> = Mutex::new(VecDeque::new());

/// Runs one reconcile of `kind` `key` inside its span (the current context while it runs, so
/// the push it causes is its child); only awaits `reconcile` when tracing is off.
pub async fn reconcile<T, E: std::fmt::Display>(
    kind: &'static str,
    key: ObjectKey,
    reconcile: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let Some(tracer) = sluice_telemetry::tracer() else {
        return reconcile.await;
    };
    let span = tracer
        .span_builder(format!("reconcile {kind}"))
        .with_kind(SpanKind::Internal)
        .with_attributes([
            KeyValue::new("k8s.namespace.name", key.namespace.clone()),
            KeyValue::new("sluice.kind", kind),
            KeyValue::new("sluice.object", key.to_string()),
        ])
        .start_with_context(tracer, &Context::new());
    let cx = Context::new().with_span(span);
    let result = reconcile.with_context(cx.clone()).await;
    if let Err(e) = &result {
        cx.span().set_status(Status::error(e.to_string()));
    }
    cx.span().end();
    result
}

/// One recompute's push: its span starts with the first snapshot sent, as a child of the
/// reconcile running (if any).
#[derive(Debug)]
pub struct Push {
    namespace: String,
    started: SystemTime,
    parent: Context,
    span: Option<Context>,
    sent: i64,
}

impl Push {
    /// A push of `namespace`'s snapshots about to be planned; `None` when tracing is off.
    pub fn begin(namespace: &str) -> Option<Self> {
        sluice_telemetry::tracer()?;
        Some(Self {
            namespace: namespace.to_owned(),
            started: SystemTime::now(),
            parent: Context::current(),
            span: None,
            sent: 0,
        })
    }

    /// A snapshot of `version` is about to go to `pod`: remembered under the push's context.
    pub fn sending(&mut self, version: &ConfigVersion) {
        let Some(tracer) = sluice_telemetry::tracer() else {
            return;
        };
        let cx = self.span.get_or_insert_with(|| {
            let span = tracer
                .span_builder("push config")
                .with_kind(SpanKind::Producer)
                .with_start_time(self.started)
                .with_attributes([KeyValue::new("k8s.namespace.name", self.namespace.clone())])
                .start_with_context(tracer, &self.parent);
            self.parent.with_span(span)
        });
        cx.span().add_event(
            "sent",
            vec![KeyValue::new("sluice.config_version", version.to_string())],
        );
        self.sent += 1;
        let mut pushed = PUSHED.lock().unwrap_or_else(PoisonError::into_inner);
        pushed.retain(|(v, _)| v != version);
        if pushed.len() >= REMEMBERED {
            pushed.pop_front();
        }
        pushed.push_back((version.clone(), cx.clone()));
    }

    /// Ends the push span, if anything was sent.
    pub fn end(self) {
        if let Some(cx) = self.span {
            cx.span().set_attribute(KeyValue::new("sluice.sidecars", self.sent));
            cx.span().end();
        }
    }
}

/// The push context of `version`, if it was pushed recently while tracing.
fn pushed(version: &ConfigVersion) -> Option<Context> {
    sluice_telemetry::tracer()?;
    let pushed = PUSHED.lock().unwrap_or_else(PoisonError::into_inner);
    pushed
        .iter()
        .rev()
        .find(|(v, _)| v == version)
        .map(|(_, cx)| cx.clone())
}

/// The `traceparent` (and `tracestate`) that go with `version` on the watch stream.
pub fn carried(version: &ConfigVersion) -> Option<HeaderMap> {
    let cx = pushed(version)?;
    let mut headers = HeaderMap::new();
    sluice_telemetry::propagation::inject(&cx, &mut headers);
    Some(headers)
}

/// Records a sidecar's ack of `version`: under the sidecar's apply span when its request
/// carries one, else under the push.
pub fn acked(headers: &HeaderMap, pod: &PodIdentity, version: &ConfigVersion) {
    let Some(tracer) = sluice_telemetry::tracer() else {
        return;
    };
    let sent = sluice_telemetry::propagation::extract(headers);
    let parent = if sent.span().span_context().is_valid() {
        sent
    } else {
        match pushed(version) {
            Some(cx) => cx,
            None => return,
        }
    };
    let mut span = tracer
        .span_builder("config ack")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("k8s.namespace.name", pod.namespace.clone()),
            KeyValue::new("k8s.pod.name", pod.name.clone()),
            KeyValue::new("sluice.config_version", version.to_string()),
        ])
        .start_with_context(tracer, &parent);
    opentelemetry::trace::Span::end(&mut span);
}
