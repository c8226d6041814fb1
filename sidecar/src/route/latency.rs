//! Peak-EWMA latency of one backend: jumps up to a slow answer at once, decays slowly back.
//!
//! The estimate follows Finagle and tower's `PeakEwma`: an answer slower than the estimate
//! replaces it; a faster one is averaged in, weighted by how long ago the last update was; and
//! reading the estimate decays it toward zero, so a backend that had one slow answer and then no
//! traffic is tried again after a while instead of being shunned forever.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

/// How fast old observations fade: after `DECAY`, an observation weighs about 37%.
const DECAY: Duration = Duration::from_secs(10);

/// One backend's latency estimate.
#[derive(Debug, Default)]
pub struct PeakEwma {
    state: Mutex<Option<Estimate>>,
}

#[derive(Debug, Clone, Copy)]
struct Estimate {
    nanos: f64,
    at: Instant,
}

impl Estimate {
    fn decay(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (-elapsed / DECAY.as_secs_f64()).exp()
    }
}

impl PeakEwma {
    /// Adds one observed latency (time to the first byte of an answer).
    pub fn observe(&self, latency: Duration, now: Instant) {
        let rtt = latency.as_secs_f64() * 1e9;
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let nanos = match *state {
            None => rtt,
            Some(e) if rtt > e.nanos => rtt,
            Some(e) => {
                let decay = e.decay(now);
                e.nanos * decay + rtt * (1.0 - decay)
            }
        };
        *state = Some(Estimate { nanos, at: now });
    }

    /// The estimate now, decayed since the last observation; `None` before the first one.
    pub fn estimate(&self, now: Instant) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.map(|e| Duration::from_secs_f64((e.nanos * e.decay(now)).max(0.0) / 1e9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_raises_the_estimate_at_once_and_fast_ones_bring_it_down_slowly() {
        let ewma = PeakEwma::default();
        let now = Instant::now();
        assert_eq!(ewma.estimate(now), None);
        ewma.observe(Duration::from_millis(100), now);
        assert_eq!(ewma.estimate(now), Some(Duration::from_millis(100)));
        ewma.observe(Duration::from_millis(500), now);
        assert_eq!(ewma.estimate(now), Some(Duration::from_millis(500)));
        // One second later a 100 ms answer moves the estimate only part of the way down.
        let later = now + Duration::from_secs(1);
        ewma.observe(Duration::from_millis(100), later);
        let e = ewma.estimate(later).unwrap();
        assert!(
            e > Duration::from_millis(400) && e < Duration::from_millis(500),
            "{e:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_estimate_decays_without_traffic() {
        let ewma = PeakEwma::default();
        let now = Instant::now();
        ewma.observe(Duration::from_millis(1000), now);
        let e = ewma.estimate(now + DECAY).unwrap();
        assert!((e.as_secs_f64() - (-1.0f64).exp()).abs() < 1e-3, "{e:?}");
    }
}
