//! What the operator observes of a route and writes to its status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{BackendName, MicroUsd};

/// What the operator observed of a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelRouteStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`, `ResolvedRefs` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Version of the config last pushed for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
    /// How many selected sidecars run the current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecars: Option<SidecarCounts>,
    /// Usage summed over every sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<RouteUsage>,
    /// Health and traffic per backend.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendStatus>,
}

/// Sidecars selected by a route, and those that acked its current version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarCounts {
    /// Selected sidecars.
    pub desired: u32,
    /// Sidecars running the current version.
    pub in_sync: u32,
    /// Selected pods whose injected sidecar differs from what the webhook injects now
    /// (image, resources, ports): recreate them to update it.
    #[serde(default)]
    pub outdated: u32,
}

/// Usage of a route, summed over every sidecar.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteUsage {
    /// Requests served.
    pub requests: u64,
    /// Requests that ended in an error.
    pub errors: u64,
    /// Attempts moved to another backend.
    pub failovers: u64,
    /// Requests answered from the cache.
    pub cache_hits: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Prompt tokens written into the provider's cache (billed at `cacheWriteInputPerMTok`);
    /// absent while none was.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_input_tokens: u64,
    /// Money spent.
    #[serde(rename = "costUSD")]
    pub cost_usd: MicroUsd,
}

/// Health and traffic of one backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// The backend's name.
    pub name: BackendName,
    /// Its circuit is closed and at most half of its recent requests failed.
    pub healthy: bool,
    /// `open` when any sidecar that reported recently has it open, else `half-open` when any
    /// has it half-open, else `closed`.
    pub circuit: CircuitState,
    /// Requests sent since the route was created.
    pub requests: u64,
    /// Of those, the ones that failed.
    pub errors: u64,
    /// Median time to first byte over recent requests, in milliseconds (the request-weighted
    /// median of the sidecars' reported medians); absent without recent answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p50_ms: Option<u64>,
}

/// A circuit breaker's state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitState {
    /// Traffic flows.
    #[default]
    Closed,
    /// Traffic is refused until `openFor` passes.
    Open,
    /// One trial request is allowed.
    HalfOpen,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
