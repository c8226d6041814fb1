//! Where a finished request is counted: metrics, the usage ledger and the access log.

use std::time::Duration;

use sluice_crds::{MicroUsd, ObjectKey, Outcome};

use super::ledger::{Entry, UsageLedger};
use crate::{
    metrics::{LatencyLabels, Metrics, RequestLabels, TokenLabels},
    route::{
        BackendRuntime,
        series::{Labels, Series, TOKEN_TYPES},
    },
    wire::Usage,
};

/// Counts finished requests.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Usage not yet reported to the operator; `None` where no operator takes reports (local
    /// mode), since a ledger nobody drains grows with every new user.
    pub ledger: Option<UsageLedger>,
    /// Whether the `user` label is filled (it has unbounded cardinality, so it is opt-in).
    pub user_labels: bool,
}

/// Everything known of a request when it ends.
#[derive(Debug)]
pub struct Finished<'a> {
    /// `chat`, `embeddings` or `messages`.
    pub endpoint: &'static str,
    /// The route.
    pub route: &'a ObjectKey,
    /// The backend that answered or failed last, if any was tried.
    pub backend: Option<&'a BackendRuntime>,
    /// The user, when the client named one.
    pub user: Option<&'a str>,
    /// How it ended.
    pub outcome: Outcome,
    /// Tokens used, when known.
    pub usage: Option<Usage>,
    /// Money spent.
    pub cost: MicroUsd,
    /// Attempts made.
    pub attempts: u32,
    /// Arrival to the last byte.
    pub duration: Duration,
    /// Arrival to the first streamed chunk.
    pub time_to_first_token: Option<Duration>,
    /// Whether the answer was streamed.
    pub streamed: bool,
    /// `hit`, `miss` or `bypass` (`x-sluice-cache`); empty when the request got no answer.
    pub cache: &'static str,
    /// The final error, for the log.
    pub error: Option<String>,
    /// The request's span, when it is traced: ended here, and its ids go into the access log.
    pub trace: Option<&'a opentelemetry::Context>,
}

impl Recorder {
    /// Counts one finished request everywhere it is counted.
    pub fn record(&self, f: &Finished<'_>) {
        let usage = f.usage.unwrap_or_default();
        let cached = f.backend.filter(|_| !self.user_labels).and_then(|backend| {
            let labels = Labels {
                route: f.route,
                backend,
                endpoint: f.endpoint,
                outcome: f.outcome.into(),
            };
            backend
                .series
                .get(&self.metrics, &labels)
                .map(|series| (series, labels))
        });
        match cached {
            Some((series, labels)) => self.count_cached(f, series, &labels, usage),
            None => self.count(f, usage),
        }
        if let (Some(ledger), Some(backend_runtime)) = (&self.ledger, f.backend) {
            ledger.add(&Entry {
                route: f.route,
                backend: &backend_runtime.name,
                model: &backend_runtime.model,
                user: f.user,
                outcome: f.outcome,
                usage,
                cost: f.cost,
                failovers: f.attempts.saturating_sub(1),
            });
        }
        let (trace_id, span_id) = crate::telemetry::ids(f.trace);
        if let Some(trace) = f.trace {
            let ending = crate::telemetry::Ending {
                outcome: f.outcome,
                backend: f.backend.map(|b| (b.name.as_str(), b.provider)),
                usage: f.usage,
                cost: f.cost,
                attempts: f.attempts,
                time_to_first_token: f.time_to_first_token.filter(|_| f.streamed),
                cache: f.cache,
            };
            crate::telemetry::finished(trace, &ending);
        }
        let (backend, model) = f
            .backend
            .map(|b| (b.name.as_str(), b.model.as_str()))
            .unwrap_or_default();
        tracing::info!(target: "sluice::access", endpoint = f.endpoint, route = %f.route, backend, model,
            user = f.user.unwrap_or_default(), outcome = ?f.outcome, attempts = f.attempts, stream = f.streamed, cache = f.cache,
            latency_ms = f.duration.as_millis() as u64,
            ttft_ms = f.time_to_first_token.map(|t| t.as_millis() as u64),
            input_tokens = usage.input.0, cached_input_tokens = usage.cached_input.0,
            cache_write_input_tokens = usage.cache_write_input.0, output_tokens = usage.output.0,
            usage_estimated = usage.estimated, cost_usd = %f.cost, error = f.error.as_deref().unwrap_or_default(),
            trace_id = trace_id.as_deref(), span_id = span_id.as_deref(),
            "request finished");
    }
    /// Counts into the series cached for the request's backend.
    fn count_cached(&self, f: &Finished<'_>, series: &Series, labels: &Labels<'_>, usage: Usage) {
        let m = &self.metrics;
        series.requests.inc();
        series.spend.inc_by(f.cost.micros());
        let failovers = u64::from(f.attempts.saturating_sub(1));
        if failovers > 0 {
            m.failovers
                .get_or_create(&labels.request(String::new()))
                .inc_by(failovers);
        }
        series.duration.observe(f.duration.as_secs_f64());
        if let Some(ttft) = f.time_to_first_token {
            series.time_to_first_token(m, labels).observe(ttft.as_secs_f64());
        }
        if f.usage.is_some() {
            let (counters, histograms) = series.tokens(m, labels);
            let counts = [usage.input, usage.output, usage.cached_input, usage.cache_write_input];
            for (counter, count) in counters.iter().zip(counts) {
                counter.inc_by(count.0);
            }
            for (histogram, count) in histograms.iter().zip(counts) {
                histogram.observe(count.0 as f64);
            }
        }
    }

    /// Counts by looking each series up by its labels.
    fn count(&self, f: &Finished<'_>, usage: Usage) {
        let route = f.route.to_string();
        let (backend, model) = f
            .backend
            .map(|b| (b.name.to_string(), b.model.to_string()))
            .unwrap_or_default();
        let user = if self.user_labels {
            f.user.unwrap_or_default().to_owned()
        } else {
            String::new()
        };
        let labels = RequestLabels {
            route: route.clone(),
            backend: backend.clone(),
            model: model.clone(),
            outcome: f.outcome.into(),
            user: user.clone(),
        };
        let m = &self.metrics;
        m.requests.get_or_create(&labels).inc();
        m.spend.get_or_create(&labels).inc_by(f.cost.micros());
        let failovers = u64::from(f.attempts.saturating_sub(1));
        if failovers > 0 {
            m.failovers.get_or_create(&labels).inc_by(failovers);
        }
        if f.backend.is_some() {
            let latency = LatencyLabels {
                gen_ai_operation_name: f.endpoint,
                route: route.clone(),
                backend: backend.clone(),
                gen_ai_request_model: model.clone(),
            };
            m.duration.get_or_create(&latency).observe(f.duration.as_secs_f64());
            if let Some(ttft) = f.time_to_first_token {
                m.time_to_first_token
                    .get_or_create(&latency)
                    .observe(ttft.as_secs_f64());
            }
            if f.usage.is_some() {
                for (kind, count) in TOKEN_TYPES.into_iter().zip([
                    usage.input,
                    usage.output,
                    usage.cached_input,
                    usage.cache_write_input,
                ]) {
                    let labels = TokenLabels {
                        route: route.clone(),
                        backend: backend.clone(),
                        gen_ai_request_model: model.clone(),
                        gen_ai_token_type: kind,
                        user: user.clone(),
                    };
                    m.tokens.get_or_create(&labels).inc_by(count.0);
                    if kind == "input" || kind == "output" {
                        m.token_usage.get_or_create(&labels).observe(count.0 as f64);
                    }
                }
            }
        }
    }
}
