//! Backend health as the sidecars report it, aggregated over the pods into `status.backends`
//! (DESIGN §3, §6.4). Held in memory only: health is about now, so an operator that restarts
//! learns it again from the next reports (every second or so) instead of persisting it.
//!
//! Each report carries, per route × backend, the circuit as the sidecar sees it and what the
//! backend did since the sidecar's previous report (attempts, failures, median latency). Taken
//! once per `(pod, sequence)`, like usage: a report seen again (resent after a lost ack or a
//! failed persist) adds nothing. The rules:
//!
//! - **Window.** A sample counts for [`WINDOW`] after it arrived; a pod whose last word on a
//!   backend is older than that (gone, or silent) no longer counts at all.
//! - **Circuit.** `open` if any counting pod has it open, else `half-open` if any has it
//!   half-open, else `closed`: one pod seeing a backend down is worth knowing.
//! - **Latency.** The median of the pods' reported medians, each weighted by the answers it
//!   stands for (a request-weighted median; the lower one on a tie), so a busy pod counts
//!   for more than an idle one and one slow outlier pod does not move it.
//! - **Healthy.** The circuit is closed and at most half of the window's attempts failed; a
//!   backend no pod reported on lately is healthy and closed, with no latency.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use sluice_crds::{BackendHealth, CircuitState, ObjectKey};

/// How long a report's health counts.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The health of every reported backend.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per pod UID: the highest report sequence whose health was taken.
    sequences: HashMap<String, u64>,
    /// Deleted pods, with when: their reports (a final one may come late) say nothing of now.
    deleted: HashMap<String, Instant>,
    /// Per route, per backend name, per pod UID.
    routes: BTreeMap<ObjectKey, BTreeMap<String, BTreeMap<String, PodHealth>>>,
}

/// What one pod said of one backend lately.
#[derive(Debug, Clone)]
struct PodHealth {
    circuit: CircuitState,
    seen: Instant,
    samples: VecDeque<Sample>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    requests: u64,
    errors: u64,
    latency_p50_ms: Option<u64>,
}

/// One backend's health across the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregate {
    /// See the module's circuit rule.
    pub circuit: CircuitState,
    /// Attempts in the window.
    pub requests: u64,
    /// Failed attempts in the window.
    pub errors: u64,
    /// See the module's latency rule.
    pub latency_p50_ms: Option<u64>,
    /// See the module's rule.
    pub healthy: bool,
}

impl Aggregate {
    /// A backend nobody reported on lately.
    pub const UNREPORTED: Self = Self {
        circuit: CircuitState::Closed,
        requests: 0,
        errors: 0,
        latency_p50_ms: None,
        healthy: true,
    };
}

impl Health {
    /// Takes the health of report `sequence` of `pod_uid`, received `now`, unless a report of
    /// that pod numbered as high was taken already. Returns the routes it touched.
    pub fn apply(&self, pod_uid: &str, sequence: u64, health: &[BackendHealth], now: Instant) -> Vec<ObjectKey> {
        let mut inner = self.lock();
        if inner.deleted.contains_key(pod_uid) {
            return Vec::new();
        }
        let last = inner.sequences.entry(pod_uid.to_owned()).or_default();
        if sequence <= *last {
            return Vec::new();
        }
        *last = sequence;
        let mut touched: Vec<ObjectKey> = Vec::new();
        for h in health {
            let pods = inner
                .routes
                .entry(h.route.clone())
                .or_default()
                .entry(h.backend.to_string())
                .or_default();
            let pod = pods.entry(pod_uid.to_owned()).or_insert_with(|| PodHealth {
                circuit: h.circuit,
                seen: now,
                samples: VecDeque::new(),
            });
            pod.circuit = h.circuit;
            pod.seen = now;
            if h.requests > 0 {
                pod.samples.push_back(Sample {
                    at: now,
                    requests: h.requests,
                    errors: h.errors.min(h.requests),
                    latency_p50_ms: h.latency_p50_ms,
                });
            }
            if !touched.contains(&h.route) {
                touched.push(h.route.clone());
            }
        }
        touched
    }

    /// Drops what is older than [`WINDOW`] at `now`; returns the routes whose figures changed.
    pub fn expire(&self, now: Instant) -> Vec<ObjectKey> {
        let mut inner = self.lock();
        let Inner {
            sequences,
            deleted,
            routes,
        } = &mut *inner;
        deleted.retain(|uid, at| {
            let keep = now.saturating_duration_since(*at) < WINDOW;
            if !keep {
                sequences.remove(uid);
            }
            keep
        });
        let mut changed = Vec::new();
        routes.retain(|route, backends| {
            let mut dropped = false;
            backends.retain(|_, pods| {
                pods.retain(|_, pod| {
                    let before = pod.samples.len();
                    pod.samples.retain(|s| now.saturating_duration_since(s.at) < WINDOW);
                    dropped |= pod.samples.len() != before;
                    let fresh = now.saturating_duration_since(pod.seen) < WINDOW;
                    dropped |= !fresh;
                    fresh
                });
                !pods.is_empty()
            });
            if dropped {
                changed.push(route.clone());
            }
            !backends.is_empty()
        });
        changed
    }

    /// A pod was deleted at `now`: it stops counting at once. Returns the routes it counted in.
    pub fn pod_deleted(&self, pod_uid: &str, now: Instant) -> Vec<ObjectKey> {
        let mut inner = self.lock();
        inner.deleted.insert(pod_uid.to_owned(), now);
        let mut touched = Vec::new();
        for (route, backends) in &mut inner.routes {
            for pods in backends.values_mut() {
                if pods.remove(pod_uid).is_some() && !touched.contains(route) {
                    touched.push(route.clone());
                }
            }
        }
        touched
    }

    /// The health of `backend` of `route` at `now`, over the pods that count.
    pub fn backend(&self, route: &ObjectKey, backend: &str, now: Instant) -> Aggregate {
        let inner = self.lock();
        let Some(pods) = inner.routes.get(route).and_then(|b| b.get(backend)) else {
            return Aggregate::UNREPORTED;
        };
        aggregate(pods.values(), now)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn aggregate<'a>(pods: impl Iterator<Item = &'a PodHealth>, now: Instant) -> Aggregate {
    let fresh = |at: Instant| now.saturating_duration_since(at) < WINDOW;
    let mut open = false;
    let mut half_open = false;
    let (mut requests, mut errors) = (0u64, 0u64);
    let mut medians: Vec<(u64, u64)> = Vec::new();
    for pod in pods.filter(|p| fresh(p.seen)) {
        open |= pod.circuit == CircuitState::Open;
        half_open |= pod.circuit == CircuitState::HalfOpen;
        for s in pod.samples.iter().filter(|s| fresh(s.at)) {
            requests = requests.saturating_add(s.requests);
            errors = errors.saturating_add(s.errors);
            if let Some(p50) = s.latency_p50_ms {
                // The median stands for the answered attempts; one at least, as it exists.
                medians.push((p50, (s.requests - s.errors).max(1)));
            }
        }
    }
    let circuit = if open {
        CircuitState::Open
    } else if half_open {
        CircuitState::HalfOpen
    } else {
        CircuitState::Closed
    };
    Aggregate {
        circuit,
        requests,
        errors,
        latency_p50_ms: weighted_median(medians),
        healthy: circuit == CircuitState::Closed && errors.saturating_mul(2) <= requests,
    }
}

/// The lower weighted median of `(value, weight)` pairs.
fn weighted_median(mut values: Vec<(u64, u64)>) -> Option<u64> {
    values.sort_unstable();
    let total: u64 = values.iter().map(|(_, w)| w).sum();
    let mut seen = 0u64;
    for (value, weight) in values {
        seen = seen.saturating_add(weight);
        if seen.saturating_mul(2) >= total {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests;
