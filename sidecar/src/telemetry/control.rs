//! The sidecar's side of a traced config push: the snapshot's line may carry the operator's push
//! context (`traceparent`, `tracestate` members), which the span of applying it continues; the
//! ack then carries the apply span's `traceparent` so that the operator records it in the trace.

use opentelemetry::{
    Context, KeyValue,
    trace::{SpanKind, Status, TraceContextExt, Tracer as _},
};
use serde::Deserialize;
use sluice_crds::ConfigVersion;

/// The trace members of a watch line; any other member is the event's.
#[derive(Deserialize)]
struct Carried {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

/// Starts the span of applying `version`, under the push context `line` carries (a new trace
/// when it carries none); `None` when tracing is off.
pub fn applying(line: &[u8], version: &ConfigVersion) -> Option<Context> {
    let tracer = sluice_telemetry::tracer()?;
    let mut headers = http::HeaderMap::new();
    if let Ok(carried) = serde_json::from_slice::<Carried>(line) {
        for (name, value) in [("traceparent", carried.traceparent), ("tracestate", carried.tracestate)] {
            if let Some(value) = value.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
                headers.insert(name, value);
            }
        }
    }
    let parent = sluice_telemetry::propagation::extract(&headers);
    let span = tracer
        .span_builder("apply config")
        .with_kind(SpanKind::Consumer)
        .with_attributes([KeyValue::new("sluice.config_version", version.to_string())])
        .start_with_context(tracer, &parent);
    Some(parent.with_span(span))
}

/// Ends the apply span: `refused` is why the snapshot was not applied, if it was not.
pub fn applied(cx: Option<&Context>, refused: Option<&str>) {
    let Some(cx) = cx else { return };
    let span = cx.span();
    match refused {
        Some(why) => {
            span.set_attribute(KeyValue::new("error.type", "config_refused"));
            span.set_status(Status::error(why.to_owned()));
        }
        None => span.set_attribute(KeyValue::new("sluice.applied", true)),
    }
    span.end();
}
