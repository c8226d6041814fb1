//! The metric series one backend's requests count into, looked up once instead of on every
//! request: a lookup builds its labels (a dozen strings) and hashes them under the family's
//! lock, which cost more than the counting itself.
//!
//! A series is cached per (endpoint, outcome) in the [`BackendRuntime`] it labels, for the
//! [`Metrics`] instance that made it; a request with a user label, an endpoint not listed here
//! or another `Metrics` takes the lookup as before. Series that a request may never touch
//! (time to first token, tokens) are created on first use, as the lookup does, so `/metrics`
//! shows the same series either way.

use std::sync::OnceLock;

use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
use sluice_crds::ObjectKey;

use super::BackendRuntime;
use crate::metrics::{LatencyLabels, Metrics, OutcomeLabel, RequestLabels, TokenLabels};

/// The endpoints a series is cached for.
const ENDPOINTS: [&str; 3] = ["chat", "embeddings", "messages"];
/// Outcomes, in [`OutcomeLabel`] order.
const OUTCOMES: usize = 5;
/// Token types of `sluice_tokens`; the first two also have a `gen_ai_client_token_usage` histogram.
pub const TOKEN_TYPES: [&str; 4] = ["input", "output", "cached_input", "cache_write_input"];

/// Cached series of one backend.
#[derive(Debug, Default)]
pub struct SeriesCache {
    cells: [[OnceLock<Series>; OUTCOMES]; ENDPOINTS.len()],
}

/// The series of one (route, backend, model, endpoint, outcome) with no user label.
#[derive(Debug)]
pub struct Series {
    metrics: u64,
    route: ObjectKey,
    /// `sluice_requests`.
    pub requests: Counter,
    /// `sluice_spend_microdollars`.
    pub spend: Counter,
    /// `gen_ai_client_operation_duration_seconds`.
    pub duration: Histogram,
    time_to_first_token: OnceLock<Histogram>,
    tokens: OnceLock<([Counter; 4], [Histogram; 2])>,
}

/// How to name a request's series when one must be created.
#[derive(Debug)]
pub struct Labels<'a> {
    /// The route.
    pub route: &'a ObjectKey,
    /// The backend.
    pub backend: &'a BackendRuntime,
    /// The endpoint.
    pub endpoint: &'static str,
    /// How it ended.
    pub outcome: OutcomeLabel,
}

impl Labels<'_> {
    /// The request labels, as [`crate::accounting::recorder::Recorder`] builds them.
    pub fn request(&self, user: String) -> RequestLabels {
        RequestLabels {
            route: self.route.to_string(),
            backend: self.backend.name.to_string(),
            model: self.backend.model.to_string(),
            outcome: self.outcome,
            user,
        }
    }

    /// The latency labels.
    pub fn latency(&self) -> LatencyLabels {
        LatencyLabels {
            gen_ai_operation_name: self.endpoint,
            route: self.route.to_string(),
            backend: self.backend.name.to_string(),
            gen_ai_request_model: self.backend.model.to_string(),
        }
    }

    /// The token labels of `kind`.
    pub fn tokens(&self, kind: &'static str, user: String) -> TokenLabels {
        TokenLabels {
            route: self.route.to_string(),
            backend: self.backend.name.to_string(),
            gen_ai_request_model: self.backend.model.to_string(),
            gen_ai_token_type: kind,
            user,
        }
    }
}

impl SeriesCache {
    /// The series of `labels` (without a user label) in `metrics`, looked up the first time;
    /// `None` when this cache cannot hold it (an endpoint not listed, or a series cached for
    /// another route or another `Metrics`).
    pub fn get(&self, metrics: &Metrics, labels: &Labels<'_>) -> Option<&Series> {
        let endpoint = ENDPOINTS.iter().position(|e| *e == labels.endpoint)?;
        let cell = self.cells.get(endpoint)?.get(labels.outcome as usize)?;
        let series = cell.get_or_init(|| {
            let request = labels.request(String::new());
            Series {
                metrics: metrics.id(),
                route: labels.route.clone(),
                requests: metrics.requests.get_or_create(&request).clone(),
                spend: metrics.spend.get_or_create(&request).clone(),
                duration: metrics.duration.get_or_create(&labels.latency()).clone(),
                time_to_first_token: OnceLock::new(),
                tokens: OnceLock::new(),
            }
        });
        (series.metrics == metrics.id() && series.route == *labels.route).then_some(series)
    }
}

impl Series {
    /// `gen_ai_server_time_to_first_token_seconds`, created on first use.
    pub fn time_to_first_token(&self, metrics: &Metrics, labels: &Labels<'_>) -> &Histogram {
        self.time_to_first_token
            .get_or_init(|| metrics.time_to_first_token.get_or_create(&labels.latency()).clone())
    }

    /// `sluice_tokens` by [`TOKEN_TYPES`] and `gen_ai_client_token_usage` for the first two,
    /// created on first use.
    pub fn tokens(&self, metrics: &Metrics, labels: &Labels<'_>) -> &([Counter; 4], [Histogram; 2]) {
        self.tokens.get_or_init(|| {
            let [input, output, cached, written] = TOKEN_TYPES.map(|kind| labels.tokens(kind, String::new()));
            (
                [&input, &output, &cached, &written].map(|l| metrics.tokens.get_or_create(l).clone()),
                [&input, &output].map(|l| metrics.token_usage.get_or_create(l).clone()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_crds::{MicroUsd, Outcome, Tokens};

    use crate::{
        accounting::recorder::{Finished, Recorder},
        budget::Budgets,
        route::testing::{backend, route},
        wire::Usage,
    };

    /// The same requests counted by a recorder whose series the backend caches and by one it
    /// does not (another `Metrics`) expose the same text.
    #[test]
    fn cached_series_count_what_a_lookup_counts() {
        let route = route(serde_json::json!({"models": ["chat"], "backends": [backend("a", serde_json::json!({}))]}));
        let backend = route.backends.first().unwrap();
        let (cached, looked_up) = (Recorder::default(), Recorder::default());
        let usage = Usage {
            input: Tokens(12),
            cached_input: Tokens(4),
            cache_write_input: Tokens(2),
            output: Tokens(9),
            estimated: false,
        };
        let requests = [
            (Outcome::Ok, Some(usage), None, 1, "chat"),
            (Outcome::Ok, Some(usage), Some(Duration::from_millis(3)), 2, "chat"),
            (Outcome::UpstreamError, None, None, 3, "messages"),
            (Outcome::Ok, Some(usage), None, 1, "embeddings"),
            (
                Outcome::CacheHit,
                Some(usage),
                Some(Duration::from_millis(1)),
                0,
                "chat",
            ),
        ];
        for recorder in [&cached, &looked_up] {
            for (outcome, usage, ttft, attempts, endpoint) in requests {
                recorder.record(&Finished {
                    endpoint,
                    route: &route.key,
                    backend: Some(backend),
                    user: Some("u"),
                    outcome,
                    usage,
                    cost: MicroUsd::new(7),
                    attempts,
                    duration: Duration::from_millis(20),
                    time_to_first_token: ttft,
                    streamed: ttft.is_some(),
                    cache: "bypass",
                    error: None,
                    trace: None,
                });
            }
        }
        let budgets = Budgets::default();
        let (a, b) = (
            cached.metrics.encode(&budgets, []).unwrap(),
            looked_up.metrics.encode(&budgets, []).unwrap(),
        );
        let sorted = |text: &str| {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(sorted(&a), sorted(&b));
        assert!(a.contains("sluice_failovers_total"), "{a}");
        // The first recorder's series were cached; the second's were looked up every time.
        assert_eq!(
            backend.series.cells[0][0].get().map(|s| s.metrics),
            Some(cached.metrics.id())
        );
    }
}
