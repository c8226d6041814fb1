//! A route's policies: retries and backoff, the circuit breaker, rate limits, the cache.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ByteSize, Duration};

/// Retries across attempts and backends.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    #[schemars(range(min = 1, max = 10))]
    pub attempts: u32,
    /// Exponential backoff with full jitter between attempts.
    pub backoff: Backoff,
    /// Which failures are retried.
    pub retry_on: Vec<RetryOn>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Backoff::default(),
            retry_on: vec![
                RetryOn::ConnectError,
                RetryOn::Timeout,
                RetryOn::TooManyRequests,
                RetryOn::ServerError,
            ],
        }
    }
}

/// Exponential backoff bounds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(default)]
pub struct Backoff {
    /// The first delay.
    pub base: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

/// A class of failure that may be retried.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RetryOn {
    /// The connection could not be made.
    #[serde(rename = "connect-error")]
    ConnectError,
    /// No first byte within `timeouts.firstByte`.
    #[serde(rename = "timeout")]
    Timeout,
    /// HTTP 429.
    #[serde(rename = "429")]
    TooManyRequests,
    /// HTTP 500, 502, 503, 504 and 529.
    #[serde(rename = "5xx")]
    ServerError,
}

/// When a failing backend is taken out of rotation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the circuit.
    #[schemars(range(min = 1, max = 1000))]
    pub consecutive_failures: u32,
    /// How long an open circuit stays open before one trial request.
    pub open_for: Duration,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            open_for: Duration::from_secs(60),
        }
    }
}

/// Request and token rates for a route across all of its sidecars.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<u32>,
    /// Prompt plus completion tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u32>,
}

/// Limits applied to each user separately.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerUserLimit {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<u32>,
    /// Prompt plus completion tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u32>,
    /// Requests per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_day: Option<u32>,
}

/// The exact-match response cache.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CachePolicy {
    /// How long an answer stays.
    pub ttl: Duration,
    /// Bound on the bytes held.
    pub max_bytes: ByteSize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
            max_bytes: ByteSize::new(64 << 20),
        }
    }
}
