//! Ordering the candidates of one request by the route's strategy.
//!
//! Every strategy returns all candidates: the first is tried first, the rest are the fallback
//! order (DESIGN §5.2). Ties keep priority order, so results are deterministic.

use std::{
    cmp::Ordering,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_crds::{MicroUsd, Pricing, Strategy};
use tokio::time::Instant;

use super::{BackendRuntime, facts::Facts};

/// A route's mutable choice state: smooth weighted round-robin counters and a seeded generator.
#[derive(Debug)]
pub struct Picker {
    /// nginx's `current_weight` per backend, indexed by the backend's position in the spec.
    current: Mutex<Vec<i64>>,
    rng: Mutex<ChaCha8Rng>,
}

impl Picker {
    /// A picker for `backends` backends whose generator is seeded by `seed` (the route's name),
    /// so a given sequence of requests always makes the same choices.
    pub fn new(backends: usize, seed: &str) -> Self {
        Self {
            current: Mutex::new(vec![0; backends]),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(fnv1a(seed.as_bytes()))),
        }
    }

    /// A uniform draw from `0..n` (n > 0).
    pub fn below(&self, n: u64) -> u64 {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        rng.random_range(0..n.max(1))
    }

    /// Smooth weighted round robin over `candidates` (nginx): each gains its weight, the
    /// largest is picked and loses the total. Over any run of `sum(weights)` picks each
    /// backend is picked exactly `weight` times, interleaved rather than in bursts.
    fn smooth_weighted(&self, candidates: &[Arc<BackendRuntime>]) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let total: i64 = candidates.iter().map(|b| i64::from(b.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut best: Option<(usize, i64)> = None;
        for (i, backend) in candidates.iter().enumerate() {
            if backend.weight == 0 {
                continue;
            }
            let Some(slot) = current.get_mut(backend.index) else {
                continue;
            };
            *slot += i64::from(backend.weight);
            if best.is_none_or(|(_, w)| *slot > w) {
                best = Some((i, *slot));
            }
        }
        let (i, _) = best?;
        if let Some(slot) = current.get_mut(candidates[i].index) {
            *slot -= total;
        }
        Some(i)
    }
}

/// Orders `candidates` (given in priority order) for one request.
pub fn order(
    strategy: Strategy,
    picker: &Picker,
    mut candidates: Vec<Arc<BackendRuntime>>,
    facts: &Facts<'_>,
    now: Instant,
) -> Vec<Arc<BackendRuntime>> {
    if candidates.len() < 2 {
        return candidates;
    }
    match strategy {
        Strategy::Priority => {}
        Strategy::Weighted => {
            if let Some(first) = picker.smooth_weighted(&candidates) {
                let chosen = candidates.remove(first);
                candidates.insert(0, chosen);
            }
        }
        Strategy::LeastLatency => {
            let first = two_choices(picker, &candidates, now);
            let chosen = candidates.remove(first);
            candidates.sort_by(|a, b| by_load(a, b, now));
            candidates.insert(0, chosen);
        }
        Strategy::LeastCost => {
            candidates.sort_by(|a, b| match (estimated_cost(a, facts), estimated_cost(b, facts)) {
                (Some(x), Some(y)) => x.cmp(&y),
                // Without prices a backend's cost is unknown: it goes after every priced one.
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            });
        }
    }
    candidates
}

/// Power of two choices: two distinct candidates at random, the one with the lower load wins.
fn two_choices(picker: &Picker, candidates: &[Arc<BackendRuntime>], now: Instant) -> usize {
    let n = candidates.len() as u64;
    let a = picker.below(n) as usize;
    let b = (a + 1 + picker.below(n - 1) as usize) % candidates.len();
    let (first, second) = (a.min(b), a.max(b));
    match by_load(&candidates[first], &candidates[second], now) {
        Ordering::Greater => second,
        _ => first,
    }
}

fn by_load(a: &Arc<BackendRuntime>, b: &Arc<BackendRuntime>, now: Instant) -> Ordering {
    load(a, now).total_cmp(&load(b, now))
}

/// Peak-EWMA latency times (requests in flight + 1); an unmeasured backend counts as free so
/// that it gets measured.
pub fn load(backend: &BackendRuntime, now: Instant) -> f64 {
    let latency = backend.state.latency.estimate(now).unwrap_or(Duration::ZERO);
    latency.as_secs_f64() * f64::from(backend.state.in_flight() + 1)
}

/// The estimated cost of this request at `backend`'s prices: prompt tokens at the input price
/// plus the expected completion at the output price. `None` when the backend has no prices.
pub fn estimated_cost(backend: &BackendRuntime, facts: &Facts<'_>) -> Option<MicroUsd> {
    backend
        .pricing
        .as_ref()
        .map(|p| cost_of(p, facts.prompt_tokens(), facts.expected_output()))
}

/// `input` and `output` tokens at `pricing`, rounded up to the micro-dollar.
pub fn cost_of(pricing: &Pricing, input: u64, output: u64) -> MicroUsd {
    let millionths = u128::from(input) * u128::from(pricing.input_per_m_tok.micros())
        + u128::from(output) * u128::from(pricing.output_per_m_tok.micros());
    MicroUsd::new(u64::try_from(millionths.div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

/// FNV-1a: a stable seed from a name (std's hasher is randomized per process).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
