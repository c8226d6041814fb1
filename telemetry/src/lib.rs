//! OpenTelemetry traces for the Sluice sidecar and operator, shared so that both read the same
//! standard `OTEL_*` variables the same way and export the same way: OTLP over gRPC or
//! HTTP/protobuf, off unless an endpoint is configured, a bounded queue that drops (and counts)
//! rather than blocks, W3C context in and out of headers.
//!
//! The binaries use the OpenTelemetry API directly, not through a `tracing` layer: a
//! `tracing-opentelemetry` layer would sit in every `tracing` span and event of the process
//! whether or not a collector is configured, while here a request costs one load of
//! [`tracer`] and a branch when tracing is off.

pub mod export;
pub mod propagation;
pub mod settings;

use std::{sync::OnceLock, time::Duration};

use opentelemetry::{
    Context, KeyValue,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::{
    Resource, runtime,
    trace::{BatchConfigBuilder, SdkTracerProvider, Tracer, span_processor_with_async_runtime::BatchSpanProcessor},
};
use prometheus_client::metrics::counter::Counter;

pub use settings::{Protocol, Settings, SettingsError};

/// The process's tracer, once [`init`] has turned tracing on.
static TRACER: OnceLock<Tracer> = OnceLock::new();

/// The tracer when tracing is on; `None` (one atomic load) when it is off.
pub fn tracer() -> Option<&'static Tracer> {
    TRACER.get()
}

/// Why tracing could not be started.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The variables ask for something this build cannot do.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The exporter could not be built from them.
    #[error("the OTLP exporter could not be built: {0}")]
    Exporter(String),
    /// Tracing was already started in this process.
    #[error("tracing was already started in this process")]
    AlreadyStarted,
}

/// Tracing while it runs: flush it with [`Telemetry::shutdown`] before the process exits.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    settings: Settings,
}

/// Starts tracing if the `OTEL_*` variables ask for it (inside a tokio runtime: the export runs
/// as a task on it). `service` names the process when `OTEL_SERVICE_NAME` (or `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`) does not; `dropped` counts spans the full queue turned away.
pub fn init(service: &'static str, dropped: Counter) -> Result<Option<Telemetry>, InitError> {
    let Some(settings) = settings::from_env()? else {
        return Ok(None);
    };
    let exporter = match settings.protocol {
        Protocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_protocol(opentelemetry_otlp::Protocol::Grpc)
            .build(),
        Protocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
    }
    .map_err(|e| InitError::Exporter(e.to_string()))?;
    let (exporter, queued) = export::Draining::new(exporter);
    let batch = BatchSpanProcessor::builder(exporter, runtime::Tokio)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(export::MAX_QUEUE)
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(export::Gate::new(batch, queued, export::MAX_QUEUE, dropped))
        .with_sampler(settings.sampler.to_sdk())
        .with_resource(resource(service))
        .build();
    TRACER
        .set(provider.tracer("sluice"))
        .map_err(|_| InitError::AlreadyStarted)?;
    Ok(Some(Telemetry { provider, settings }))
}

/// The SDK's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, the SDK's own), named
/// `service` unless those name it.
fn resource(service: &'static str) -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|v| v.split(',').any(|kv| kv.trim().starts_with("service.name=")));
    let builder = Resource::builder();
    if named {
        builder.build()
    } else {
        builder.with_service_name(service).build()
    }
}

impl Telemetry {
    /// What the variables asked for (for the startup log line).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Exports what is queued and stops, giving up after `within` (the shutdown grace's share):
    /// a collector that does not answer cannot hold the process past its grace.
    pub async fn shutdown(self, within: Duration) {
        let provider = self.provider;
        // The SDK waits for its export task with a blocking call: off the runtime's workers.
        let flushing = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(within));
        match tokio::time::timeout(within, flushing).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "traces were not all exported at shutdown"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the trace flush failed at shutdown"),
            Err(_) => tracing::warn!(?within, "the trace flush did not finish within the grace"),
        }
    }
}

/// The trace and span ids of `cx`'s span, as the access log writes them; `None` without a
/// valid span.
pub fn ids(cx: &Context) -> Option<(String, String)> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// A `KeyValue` for a count that OpenTelemetry carries as a signed integer.
pub fn count(key: &'static str, n: u64) -> KeyValue {
    KeyValue::new(key, i64::try_from(n).unwrap_or(i64::MAX))
}
