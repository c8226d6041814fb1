//! Prometheus metrics of the sidecar. Names follow the OpenTelemetry GenAI conventions where
//! they exist (`gen_ai.client.operation.duration`, `gen_ai.client.token.usage`, in Prometheus
//! form); the rest are `sluice_*`. Labels are bounded by the config (routes, backends,
//! models) except `user`, which is only filled when enabled.

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_crds::Outcome;

use crate::budget::Budgets;

/// How a request ended, as a label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum OutcomeLabel {
    /// Answered by a backend.
    ok,
    /// Every allowed attempt failed upstream.
    upstream_error,
    /// Refused by a rate limit.
    rate_limited,
    /// Refused by a budget.
    budget_refused,
    /// Answered from the cache.
    cache_hit,
}

impl From<Outcome> for OutcomeLabel {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Ok => Self::ok,
            Outcome::UpstreamError => Self::upstream_error,
            Outcome::RateLimited => Self::rate_limited,
            Outcome::BudgetRefused => Self::budget_refused,
            Outcome::CacheHit => Self::cache_hit,
        }
    }
}

/// Labels of request counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `namespace/name` of the route.
    pub route: String,
    /// The backend that answered or failed last (empty when none was tried).
    pub backend: String,
    /// The upstream model.
    pub model: String,
    /// How it ended.
    pub outcome: OutcomeLabel,
    /// The user, when user labels are enabled.
    pub user: String,
}

/// Labels of token counters and histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// `namespace/name` of the route.
    pub route: String,
    /// The backend.
    pub backend: String,
    /// The upstream model.
    pub gen_ai_request_model: String,
    /// `input`, `output`, `cached_input` (read from the provider's cache) or `cache_write_input`
    /// (written to it); the last two are parts of `input`.
    pub gen_ai_token_type: &'static str,
    /// The user, when user labels are enabled.
    pub user: String,
}

/// Labels of latency histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// `chat`, `embeddings` or `messages`.
    pub gen_ai_operation_name: &'static str,
    /// `namespace/name` of the route.
    pub route: String,
    /// The backend.
    pub backend: String,
    /// The upstream model.
    pub gen_ai_request_model: String,
}

/// Labels of budget gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// `namespace/name` of the budget.
    pub budget: String,
}

/// Numbers [`Metrics`] instances, so that a series cached for one is never counted into another.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Every metric of the sidecar.
#[derive(Debug)]
pub struct Metrics {
    id: u64,
    registry: Registry,
    /// Requests by outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Tokens by type.
    pub tokens: Family<TokenLabels, Counter>,
    /// Micro-dollars spent.
    pub spend: Family<RequestLabels, Counter>,
    /// Attempts moved to another backend.
    pub failovers: Family<RequestLabels, Counter>,
    /// Request duration, arrival to last byte.
    pub duration: Family<LatencyLabels, Histogram>,
    /// Time to the first streamed chunk.
    pub time_to_first_token: Family<LatencyLabels, Histogram>,
    /// Tokens per request.
    pub token_usage: Family<TokenLabels, Histogram>,
    /// Usage reports the operator refused for good (403) and that were dropped.
    pub usage_reports_refused: Counter,
    /// Ended spans the trace export queue was too full to take.
    pub spans_dropped: Counter,
    circuit_open: Family<CircuitLabels, Gauge>,
    budget_spent: Family<BudgetLabels, Gauge>,
    budget_remaining: Family<BudgetLabels, Gauge>,
    budget_limit: Family<BudgetLabels, Gauge>,
    tokenizer_tables: Gauge,
}

fn seconds_buckets() -> Family<LatencyLabels, Histogram> {
    Family::new_with_constructor(|| {
        Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ])
    })
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        let tokens = Family::default();
        let spend = Family::default();
        let failovers = Family::default();
        let duration = seconds_buckets();
        let time_to_first_token = seconds_buckets();
        let token_usage: Family<TokenLabels, Histogram> = Family::new_with_constructor(|| {
            Histogram::new([
                1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
            ])
        });
        let (budget_spent, budget_remaining, budget_limit) = (Family::default(), Family::default(), Family::default());
        registry.register(
            "sluice_requests",
            "Requests by route, backend, model and outcome",
            requests.clone(),
        );
        registry.register(
            "sluice_tokens",
            "Tokens by route, backend, model and type",
            tokens.clone(),
        );
        registry.register(
            "sluice_spend_microdollars",
            "Money spent, in micro-dollars",
            spend.clone(),
        );
        registry.register(
            "sluice_failovers",
            "Attempts moved to another backend",
            failovers.clone(),
        );
        registry.register(
            "gen_ai_client_operation_duration_seconds",
            "Duration of GenAI operations",
            duration.clone(),
        );
        registry.register(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first streamed chunk",
            time_to_first_token.clone(),
        );
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens used per request",
            token_usage.clone(),
        );
        let usage_reports_refused = Counter::default();
        registry.register(
            "sluice_usage_reports_refused",
            "Usage reports the operator refused (403: a route outside this pod's) and that were dropped",
            usage_reports_refused.clone(),
        );
        let spans_dropped = Counter::default();
        registry.register(
            "sluice_trace_spans_dropped",
            "Ended spans dropped because the trace export queue was full",
            spans_dropped.clone(),
        );
        let circuit_open = Family::default();
        registry.register(
            "sluice_circuit_open",
            "1 while a backend's circuit breaker is open (or half-open with its probe in flight)",
            circuit_open.clone(),
        );
        registry.register(
            "sluice_budget_spent_microdollars",
            "Spend in the current period",
            budget_spent.clone(),
        );
        registry.register(
            "sluice_budget_remaining_microdollars",
            "Allowance left in the period",
            budget_remaining.clone(),
        );
        registry.register(
            "sluice_budget_limit_microdollars",
            "The budget's limit",
            budget_limit.clone(),
        );
        let tokenizer_tables = Gauge::default();
        registry.register(
            "sluice_tokenizer_tables_loaded",
            "BPE encodings this process has loaded to count prompts (tens of MiB each; 0 until a count needs one)",
            tokenizer_tables.clone(),
        );
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            requests,
            tokens,
            spend,
            failovers,
            duration,
            time_to_first_token,
            token_usage,
            usage_reports_refused,
            spans_dropped,
            circuit_open,
            budget_spent,
            budget_remaining,
            budget_limit,
            tokenizer_tables,
        }
    }
}

impl Metrics {
    /// This instance's number, unique in the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The text exposition, with budget, circuit and tokenizer gauges read fresh;
    /// `circuits` says, for each route's backend, whether its breaker is open now.
    pub fn encode(
        &self,
        budgets: &Budgets,
        circuits: impl IntoIterator<Item = (CircuitLabels, bool)>,
    ) -> Result<String, std::fmt::Error> {
        for (labels, open) in circuits {
            self.circuit_open.get_or_create(&labels).set(i64::from(open));
        }
        let now = jiff::Timestamp::now();
        for account in budgets.all() {
            let view = account.view(now);
            let labels = BudgetLabels {
                budget: view.budget.clone(),
            };
            let gauge = |m: sluice_crds::MicroUsd| i64::try_from(m.micros()).unwrap_or(i64::MAX);
            self.budget_spent.get_or_create(&labels).set(gauge(view.spent));
            self.budget_remaining.get_or_create(&labels).set(gauge(view.remaining));
            self.budget_limit.get_or_create(&labels).set(gauge(view.limit));
        }
        self.tokenizer_tables
            .set(i64::try_from(crate::tokenizer::tables_loaded()).unwrap_or(i64::MAX));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Labels of the circuit gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitLabels {
    /// The route (`namespace/name`).
    pub route: String,
    /// The backend within it.
    pub backend: String,
}
