//! What one backend did since the previous usage report: attempts, failures and a latency
//! histogram, counted with atomics on the request path and taken whole at each report cut
//! (DESIGN §6.4: the operator turns these into `status.backends`).
//!
//! The median comes from fixed buckets (about 25% apart) rather than from the samples: the
//! request path only increments two counters, and the report carries the upper bound of the
//! bucket holding the median. A take swaps each counter to zero one at a time, so an attempt
//! finishing meanwhile may land in this window or the next, never in both or neither.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

/// Upper bounds of the latency buckets, in milliseconds; beyond the last is one more bucket.
const BOUNDS_MS: [u64; 44] = [
    1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300, 400, 500, 600, 800,
    1_000, 1_200, 1_500, 2_000, 2_500, 3_000, 4_000, 5_000, 6_000, 8_000, 10_000, 12_000, 15_000, 20_000, 30_000,
    60_000, 120_000,
];

/// One backend's counts since the last take.
#[derive(Debug)]
pub struct HealthWindow {
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; BOUNDS_MS.len() + 1],
    /// The circuit was not closed at the last take.
    unclosed: AtomicBool,
}

/// What a take found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Attempts answered or failed.
    pub requests: u64,
    /// Of those, the failed ones.
    pub errors: u64,
    /// Median time to the first byte of the answered ones, in milliseconds (bucket upper bound).
    pub latency_p50_ms: Option<u64>,
}

impl Default for HealthWindow {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            unclosed: AtomicBool::new(false),
        }
    }
}

impl HealthWindow {
    /// An attempt answered after `latency` (to its first byte).
    pub fn answered(&self, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MS.partition_point(|bound| *bound < ms);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt failed (the breaker counted a failure).
    pub fn failed(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// An answered attempt's stream broke after its first byte: already a request, now an error.
    pub fn broke(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes whether the circuit is closed now; returns whether it was not at the previous
    /// note, so the report after a circuit closed says so even without traffic.
    pub fn note_circuit(&self, closed: bool) -> bool {
        self.unclosed.swap(!closed, Ordering::Relaxed)
    }

    /// The counts since the previous take, leaving zero.
    pub fn take(&self) -> WindowCounts {
        let requests = self.requests.swap(0, Ordering::Relaxed);
        // A stream that broke in this window may have been answered in the previous one.
        let errors = self.errors.swap(0, Ordering::Relaxed).min(requests);
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.swap(0, Ordering::Relaxed)).collect();
        WindowCounts {
            requests,
            errors,
            latency_p50_ms: median_bucket(&counts),
        }
    }
}

/// The upper bound of the bucket holding the median (the lower median for an even count); the
/// open last bucket reports twice the last bound.
fn median_bucket(counts: &[u64]) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let mut seen = 0u64;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen.saturating_mul(2) >= total {
            return Some(BOUNDS_MS.get(i).copied().unwrap_or(BOUNDS_MS[BOUNDS_MS.len() - 1] * 2));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_take_reports_the_median_bucket_and_starts_a_new_window() {
        let w = HealthWindow::default();
        for ms in [7, 90, 95, 99, 2_000] {
            w.answered(Duration::from_millis(ms));
        }
        w.failed();
        assert_eq!(
            w.take(),
            WindowCounts {
                requests: 6,
                errors: 1,
                latency_p50_ms: Some(100),
            }
        );
        assert_eq!(w.take(), WindowCounts::default());
    }

    #[test]
    fn a_latency_on_a_bound_falls_in_that_bucket_and_one_beyond_every_bound_in_the_last() {
        let w = HealthWindow::default();
        w.answered(Duration::from_millis(150));
        assert_eq!(w.take().latency_p50_ms, Some(150));
        w.answered(Duration::from_secs(600));
        assert_eq!(w.take().latency_p50_ms, Some(240_000));
        w.answered(Duration::ZERO);
        assert_eq!(w.take().latency_p50_ms, Some(1));
    }

    #[test]
    fn failures_alone_have_no_median_and_a_late_break_never_makes_errors_exceed_requests() {
        let w = HealthWindow::default();
        w.failed();
        w.failed();
        assert_eq!(
            w.take(),
            WindowCounts {
                requests: 2,
                errors: 2,
                latency_p50_ms: None,
            }
        );
        w.broke();
        assert_eq!(w.take(), WindowCounts::default());
    }
}
