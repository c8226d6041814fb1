//! The live part of `/config`: circuits, limiter levels, latency and cache per route, read at
//! request time (the static part is rendered once per config version).

use serde::Serialize;
use sluice_crds::CircuitState;
use tokio::time::Instant;

use crate::{
    limits::{BucketLevel, ConcurrencyLevel},
    route::{BackendRuntime, Route, RouteTable},
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StateView {
    routes: Vec<RouteState>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RouteState {
    namespace: String,
    name: String,
    /// How prompt tokens are counted for rules, least-cost and token limits.
    tokenizer: &'static str,
    requests_per_minute: Option<Bucket>,
    tokens_per_minute: Option<Bucket>,
    users_tracked: usize,
    cache: Option<CacheState>,
    backends: Vec<BackendState>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bucket {
    available: f64,
    capacity: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CacheState {
    entries: u64,
    bytes: u64,
    max_bytes: u64,
    hits: u64,
    misses: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BackendState {
    name: String,
    circuit: CircuitState,
    consecutive_failures: u32,
    open_for_ms: Option<u128>,
    cooling_down_for_ms: Option<u128>,
    in_flight: u32,
    latency_ewma_ms: Option<f64>,
    requests_per_minute: Option<Bucket>,
    tokens_per_minute: Option<Bucket>,
    concurrency: Option<Concurrency>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Concurrency {
    limit: u32,
    in_flight: u32,
    queued: usize,
}

fn bucket(level: BucketLevel) -> Bucket {
    // Whole hundredths are plenty to read a bucket by eye.
    Bucket {
        available: (level.available * 100.0).floor() / 100.0,
        capacity: level.capacity,
    }
}

fn concurrency(level: ConcurrencyLevel) -> Concurrency {
    Concurrency {
        limit: level.limit,
        in_flight: level.in_flight,
        queued: level.queued,
    }
}

impl StateView {
    pub(super) fn of(routes: &RouteTable, now: Instant) -> Self {
        Self {
            routes: routes.routes().iter().map(|r| route(r, now)).collect(),
        }
    }
}

fn route(route: &Route, now: Instant) -> RouteState {
    let limits = route.state.limits.level(now);
    RouteState {
        namespace: route.key.namespace.clone(),
        name: route.key.name.clone(),
        tokenizer: route.tokenizer.name(),
        requests_per_minute: limits.requests.map(bucket),
        tokens_per_minute: limits.tokens.map(bucket),
        users_tracked: limits.users_tracked,
        cache: route.state.cache.as_ref().map(|c| {
            let level = c.level();
            CacheState {
                entries: level.entries,
                bytes: level.bytes,
                max_bytes: level.max_bytes,
                hits: level.hits,
                misses: level.misses,
            }
        }),
        backends: route.backends.iter().map(|b| backend(b, now)).collect(),
    }
}

fn backend(backend: &BackendRuntime, now: Instant) -> BackendState {
    let circuit = backend.state.circuit.view(now);
    let limits = backend.state.limits.level(now);
    BackendState {
        name: backend.name.to_string(),
        circuit: circuit.state,
        consecutive_failures: circuit.consecutive_failures,
        open_for_ms: circuit.open_for.map(|d| d.as_millis()),
        cooling_down_for_ms: circuit.cooling_down_for.map(|d| d.as_millis()),
        in_flight: backend.state.in_flight(),
        latency_ewma_ms: backend
            .state
            .latency
            .estimate(now)
            .map(|d| (d.as_secs_f64() * 1e4).round() / 10.0),
        requests_per_minute: limits.requests.map(bucket),
        tokens_per_minute: limits.tokens.map(bucket),
        concurrency: limits.concurrency.map(concurrency),
    }
}
