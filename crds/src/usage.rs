//! Usage reports: what a sidecar sends the operator, applied exactly once per `(pod, sequence)`.

use std::{fmt, ops};

use serde::{Deserialize, Serialize};

use crate::{BackendName, CircuitState, MicroUsd, ModelName, ObjectKey};

/// A count of tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tokens(pub u64);

impl ops::Add for Tokens {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }
}

impl ops::AddAssign for Tokens {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl fmt::Display for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Answered by a backend.
    Ok,
    /// Every allowed attempt failed upstream.
    UpstreamError,
    /// Refused by a rate limit.
    RateLimited,
    /// Refused by a budget.
    BudgetRefused,
    /// Answered from the cache.
    CacheHit,
}

/// Usage added since the previous report, for one route × backend × model × user × outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageDelta {
    /// The route.
    pub route: ObjectKey,
    /// The backend that served (or last failed).
    pub backend: BackendName,
    /// The upstream model.
    pub model: ModelName,
    /// The user, when the client named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// How the requests ended.
    pub outcome: Outcome,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens, cached ones included.
    pub input_tokens: Tokens,
    /// Prompt tokens served from the provider's cache.
    pub cached_input_tokens: Tokens,
    /// Completion tokens.
    pub output_tokens: Tokens,
    /// Prompt tokens written into the provider's cache (Anthropic's `cache_creation_input_tokens`);
    /// absent (0) from sidecars that predate it.
    #[serde(default)]
    pub cache_write_input_tokens: Tokens,
    /// Money spent.
    pub cost: MicroUsd,
    /// Attempts moved to another backend.
    pub failovers: u64,
    /// Whether any token count here was estimated locally rather than reported by the provider.
    pub estimated: bool,
}

/// A batch of deltas from one sidecar; the operator applies each `(podUid, sequence)` once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// The reporting pod.
    pub pod_uid: String,
    /// Increases by one per report from this pod.
    pub sequence: u64,
    /// The deltas.
    pub deltas: Vec<UsageDelta>,
    /// The last report of a sidecar that is stopping (SIGTERM): once it is applied, nothing of
    /// the pod is left unreported, and a deleted pod's allowance can be taken back. Absent
    /// (false) from sidecars that predate it.
    #[serde(default, rename = "final", skip_serializing_if = "std::ops::Not::not")]
    pub final_report: bool,
    /// How the pod's backends look to its sidecar now; absent from sidecars that predate it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<BackendHealth>,
}

/// One route's backend as one sidecar sees it when it cuts a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendHealth {
    /// The route.
    pub route: ObjectKey,
    /// The backend.
    pub backend: BackendName,
    /// Its circuit now.
    pub circuit: CircuitState,
    /// Attempts that got an answer or failed since the previous report's health.
    pub requests: u64,
    /// Of those, the failed ones (a stream that broke after its first byte counts here too).
    pub errors: u64,
    /// Median time to the first byte of those answered, in milliseconds, at the resolution of
    /// the sidecar's latency buckets; absent when none was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p50_ms: Option<u64>,
}

/// The operator's answer: every report up to `sequence` is persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageAck {
    /// The highest persisted sequence.
    pub sequence: u64,
}
