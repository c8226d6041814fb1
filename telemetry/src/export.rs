//! Batch export that never holds a request up: ended spans go into a bounded queue that a tokio
//! task drains to the OTLP exporter; a span that finds the queue full is dropped and counted.
//!
//! The SDK's batch processor already drops on a full queue but keeps the count to itself (it
//! only logs it at shutdown), so a gate in front of it counts what it lets through, the exporter
//! below it gives the count back as batches leave, and a span that would overflow the SDK's queue
//! is dropped at the gate, where the drop can be counted in a metric.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use opentelemetry::Context;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{Span, SpanData, SpanExporter, SpanProcessor},
};
use prometheus_client::metrics::counter::Counter;

/// How many ended spans wait for export at most (the SDK's default).
pub const MAX_QUEUE: usize = 2048;

/// Spans waiting for export, shared by the gate and the exporter that empties it.
#[derive(Debug, Default)]
pub struct Queued(AtomicUsize);

/// Lets an ended span through to the batch processor while the queue has room; drops and
/// counts it otherwise.
#[derive(Debug)]
pub struct Gate<P> {
    inner: P,
    queued: Arc<Queued>,
    capacity: usize,
    dropped: Counter,
}

/// Gives the gate its room back as batches leave for the collector.
pub struct Draining<E> {
    inner: E,
    queued: Arc<Queued>,
}

impl<E> fmt::Debug for Draining<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Draining")
            .field("queued", &self.queued.0.load(Ordering::Relaxed))
            .finish()
    }
}

impl<E: SpanExporter> Draining<E> {
    /// Wraps `exporter`; the count it drains is for the [`Gate`] in front of the processor.
    pub fn new(inner: E) -> (Self, Arc<Queued>) {
        let queued = Arc::new(Queued::default());
        (
            Self {
                inner,
                queued: queued.clone(),
            },
            queued,
        )
    }
}

impl<P: SpanProcessor> Gate<P> {
    /// Lets at most `capacity` spans wait in `inner`; each one past that adds to `dropped`.
    pub fn new(inner: P, queued: Arc<Queued>, capacity: usize, dropped: Counter) -> Self {
        Self {
            inner,
            queued,
            capacity,
            dropped,
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for Gate<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self.queued.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.capacity).then_some(n + 1)
        });
        if admitted.is_ok() {
            self.inner.on_end(span);
        } else {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: SpanExporter> SpanExporter for Draining<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        // The batch has left the queue whether or not the collector takes it.
        let n = batch.len();
        let _ = self
            .queued
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| Some(q.saturating_sub(n)));
        self.inner.export(batch)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    /// A processor whose queue never drains: what a collector that is down looks like.
    #[derive(Debug, Default)]
    struct Stuck(Mutex<Vec<String>>);

    impl SpanProcessor for Stuck {
        fn on_start(&self, _span: &mut Span, _cx: &Context) {}

        fn on_end(&self, span: SpanData) {
            self.0.lock().unwrap().push(span.name.into_owned());
        }

        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }

        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    #[test]
    fn spans_past_the_queue_are_dropped_and_counted_not_held() {
        let dropped = Counter::default();
        let queued = Arc::new(Queued::default());
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Gate::new(Stuck::default(), queued.clone(), 2, dropped.clone()))
            .build();
        let tracer = provider.tracer("test");
        for n in 0..5 {
            tracer.start(format!("span {n}")).end();
        }
        assert_eq!(dropped.get(), 3);
        assert_eq!(queued.0.load(Ordering::Relaxed), 2);
    }
}
