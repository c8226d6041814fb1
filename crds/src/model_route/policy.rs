//! A route's policies: retries and backoff, the circuit breaker, rate limits, the cache.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ByteSize, Duration};

/// Retries across attempts and backends.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 1, max = 10))]
    pub attempts: u32,
    /// Exponential backoff with full jitter between attempts.
    #[serde(default)]
    pub backoff: Backoff,
    /// Which failures are retried.
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<RetryOn>,
}

fn default_attempts() -> u32 {
    3
}
fn default_retry_on() -> Vec<RetryOn> {
    vec![
        RetryOn::ConnectError,
        RetryOn::Timeout,
        RetryOn::TooManyRequests,
        RetryOn::ServerError,
    ]
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            backoff: Backoff::default(),
            retry_on: default_retry_on(),
        }
    }
}

/// Exponential backoff bounds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub struct Backoff {
    /// The first delay.
    #[serde(default = "default_backoff_base")]
    pub base: Duration,
    /// The largest delay.
    #[serde(default = "default_backoff_max")]
    pub max: Duration,
}

fn default_backoff_base() -> Duration {
    Duration::from_millis(200)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(10)
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: default_backoff_base(),
            max: default_backoff_max(),
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
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Consecutive failures that open the circuit.
    #[serde(default = "default_consecutive_failures")]
    #[schemars(range(min = 1, max = 1000))]
    pub consecutive_failures: u32,
    /// How long an open circuit stays open before one trial request.
    #[serde(default = "default_open_for")]
    pub open_for: Duration,
}

fn default_consecutive_failures() -> u32 {
    5
}
fn default_open_for() -> Duration {
    Duration::from_secs(60)
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            consecutive_failures: default_consecutive_failures(),
            open_for: default_open_for(),
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
#[serde(rename_all = "camelCase")]
pub struct CachePolicy {
    /// How long an answer stays.
    #[serde(default = "default_cache_ttl")]
    pub ttl: Duration,
    /// Bound on the bytes held.
    #[serde(default = "default_cache_bytes")]
    pub max_bytes: ByteSize,
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_cache_bytes() -> ByteSize {
    ByteSize::new(64 << 20)
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            ttl: default_cache_ttl(),
            max_bytes: default_cache_bytes(),
        }
    }
}
