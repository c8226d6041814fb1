//! W3C trace context in and out of HTTP headers (`traceparent`, `tracestate`), with the SDK's
//! propagator: what a client sent becomes the parent, what an upstream gets names our span.

use http::HeaderMap;
use opentelemetry::{Context, propagation::TextMapPropagator};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The context a request's `traceparent`/`tracestate` carry; an empty context when it has none
/// (or an invalid one), so that the span started under it begins a new trace.
pub fn extract(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Adds `cx`'s `traceparent` (and `tracestate`, when it has one) to `headers`; nothing when `cx`
/// has no valid span.
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use opentelemetry::trace::TraceContextExt;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_is_read_and_written_back_unchanged() {
        let mut incoming = HeaderMap::new();
        incoming.insert("traceparent", PARENT.parse().unwrap());
        incoming.insert("tracestate", "vendor=1".parse().unwrap());
        let cx = extract(&incoming);
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut out = HeaderMap::new();
        inject(&cx, &mut out);
        assert_eq!(out["traceparent"], PARENT);
        assert_eq!(out["tracestate"], "vendor=1");
    }

    #[test]
    fn no_or_a_malformed_traceparent_gives_a_context_that_writes_nothing() {
        let mut malformed = HeaderMap::new();
        malformed.insert("traceparent", "00-not-a-trace-01".parse().unwrap());
        for headers in [HeaderMap::new(), malformed] {
            let cx = extract(&headers);
            assert!(!cx.span().span_context().is_valid());
            let mut out = HeaderMap::new();
            inject(&cx, &mut out);
            assert!(out.is_empty());
        }
    }
}
