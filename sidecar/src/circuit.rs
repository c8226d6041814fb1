//! The circuit breaker of one backend, and its cool-down after a 429 with `Retry-After`.
//!
//! Closed: traffic flows and consecutive failures are counted. `consecutiveFailures` in a row
//! open it: no traffic for `openFor`. Then it is half-open: one request (the probe) goes
//! through; its success closes the circuit, its failure opens it again. A success anywhere
//! resets the count. Separately, a 429 with `Retry-After` cools the backend down for that long.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use sluice_crds::{CircuitBreaker, CircuitState};
use tokio::{sync::Notify, time::Instant};

/// The longest a 429's `Retry-After` keeps a backend idle; a backend still limited after it is
/// asked again and answers with a new one.
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(3600);

/// One backend's breaker.
#[derive(Debug, Default)]
pub struct Circuit {
    inner: Mutex<Inner>,
    /// Told when the circuit opens or closes, so the state reaches the operator without
    /// waiting for the next usage report.
    changed: Option<Arc<Notify>>,
}

#[derive(Debug, Default)]
struct Inner {
    failures: u32,
    phase: Phase,
    cool_until: Option<Instant>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        probing: bool,
    },
}

/// Whether a request may go to the backend now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Yes (closed, or half-open with the probe slot free).
    Ready,
    /// The circuit is open until then, or half-open with its probe in flight (`None`).
    Open(Option<Instant>),
    /// A 429 asked to wait until then.
    CoolingDown(Instant),
}

/// Leave to send one request; says how it went through [`Circuit::record`].
#[derive(Debug)]
pub struct Ticket {
    circuit: Arc<Circuit>,
    probe: bool,
    done: bool,
}

/// How an attempt ended, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The backend answered.
    Success,
    /// The backend failed (connect error, timeout, 5xx, broken answer).
    Failure,
    /// Says nothing about health (the client's 4xx, a 429, the client going away).
    Neutral,
}

/// The breaker's state, for `/config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitView {
    /// Closed, open or half-open.
    pub state: CircuitState,
    /// Failures in a row so far.
    pub consecutive_failures: u32,
    /// Time left open.
    pub open_for: Option<Duration>,
    /// Time left cooling down after a 429.
    pub cooling_down_for: Option<Duration>,
}

impl Circuit {
    /// A closed breaker that tells `changed` whenever it opens or closes.
    pub fn notifying(changed: Arc<Notify>) -> Self {
        Self {
            inner: Mutex::default(),
            changed: Some(changed),
        }
    }

    /// Whether a request could go now, without taking the probe slot.
    pub fn availability(&self, now: Instant) -> Availability {
        let inner = self.lock();
        if let Some(until) = inner.cool_until.filter(|u| *u > now) {
            return Availability::CoolingDown(until);
        }
        match inner.phase {
            Phase::Open { until } if until > now => Availability::Open(Some(until)),
            Phase::HalfOpen { probing: true } => Availability::Open(None),
            _ => Availability::Ready,
        }
    }

    /// Takes leave to send one request: always when closed, once (the probe) when half-open.
    pub fn try_acquire(self: &Arc<Self>, now: Instant) -> Option<Ticket> {
        let mut inner = self.lock();
        if inner.cool_until.is_some_and(|u| u > now) {
            return None;
        }
        let probe = match inner.phase {
            Phase::Closed => false,
            Phase::Open { until } if until > now => return None,
            Phase::HalfOpen { probing: true } => return None,
            Phase::Open { .. } | Phase::HalfOpen { probing: false } => {
                inner.phase = Phase::HalfOpen { probing: true };
                true
            }
        };
        Some(Ticket {
            circuit: self.clone(),
            probe,
            done: false,
        })
    }

    /// Counts an outcome outside an attempt, e.g. a stream that broke after its first byte.
    pub fn observe(&self, verdict: Verdict, config: &CircuitBreaker, now: Instant) {
        self.apply(verdict, false, config, now);
    }

    /// Makes the backend wait `after` from `now` (a 429's `Retry-After`, at most
    /// [`MAX_COOL_DOWN`]), keeping a later wait.
    pub fn cool_down(&self, now: Instant, after: Duration) {
        // An upstream's figure is not trusted to be sane: days would idle the backend, and a
        // figure near u64::MAX seconds would overflow the Instant.
        let until = now + after.min(MAX_COOL_DOWN);
        let mut inner = self.lock();
        inner.cool_until = Some(inner.cool_until.map_or(until, |u| u.max(until)));
    }

    /// The state now.
    pub fn view(&self, now: Instant) -> CircuitView {
        let inner = self.lock();
        let (state, open_for) = match inner.phase {
            Phase::Closed => (CircuitState::Closed, None),
            Phase::Open { until } if until > now => (CircuitState::Open, Some(until - now)),
            Phase::Open { .. } | Phase::HalfOpen { .. } => (CircuitState::HalfOpen, None),
        };
        CircuitView {
            state,
            consecutive_failures: inner.failures,
            open_for,
            cooling_down_for: inner.cool_until.filter(|u| *u > now).map(|u| u - now),
        }
    }

    fn apply(&self, verdict: Verdict, probe: bool, config: &CircuitBreaker, now: Instant) {
        let mut inner = self.lock();
        let was_closed = inner.phase == Phase::Closed;
        match verdict {
            Verdict::Success => {
                inner.failures = 0;
                inner.phase = Phase::Closed;
            }
            Verdict::Failure => {
                inner.failures = inner.failures.saturating_add(1);
                let half_open = matches!(inner.phase, Phase::HalfOpen { .. });
                if probe || half_open || inner.failures >= config.consecutive_failures {
                    inner.phase = Phase::Open {
                        until: now + config.open_for.get(),
                    };
                }
            }
            Verdict::Neutral => {
                if probe && inner.phase == (Phase::HalfOpen { probing: true }) {
                    inner.phase = Phase::HalfOpen { probing: false };
                }
            }
        }
        let opened_or_closed = was_closed != (inner.phase == Phase::Closed);
        drop(inner);
        if opened_or_closed && let Some(changed) = &self.changed {
            // A stored permit: a change while nobody waits is still seen by the next wait.
            changed.notify_one();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Ticket {
    /// Whether this request is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Counts how the attempt went.
    pub fn record(mut self, verdict: Verdict, config: &CircuitBreaker, now: Instant) {
        self.done = true;
        self.circuit.apply(verdict, self.probe, config, now);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // An attempt abandoned without a verdict (the client left) must not hold the probe slot.
        if !self.done && self.probe {
            let mut inner = self.circuit.lock();
            if inner.phase == (Phase::HalfOpen { probing: true }) {
                inner.phase = Phase::HalfOpen { probing: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CircuitBreaker {
        CircuitBreaker {
            consecutive_failures: 3,
            open_for: sluice_crds::Duration::from_secs(60),
        }
    }

    fn fail(circuit: &Arc<Circuit>, now: Instant) {
        circuit
            .try_acquire(now)
            .unwrap()
            .record(Verdict::Failure, &config(), now);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_n_consecutive_failures_and_refuses_while_open() {
        let circuit = Arc::new(Circuit::default());
        let now = Instant::now();
        fail(&circuit, now);
        fail(&circuit, now);
        assert_eq!(circuit.availability(now), Availability::Ready);
        fail(&circuit, now);
        let until = now + Duration::from_secs(60);
        assert_eq!(circuit.availability(now), Availability::Open(Some(until)));
        assert!(circuit.try_acquire(now + Duration::from_secs(59)).is_none());
        assert_eq!(circuit.view(now).state, CircuitState::Open);
        assert_eq!(circuit.view(now).open_for, Some(Duration::from_secs(60)));
    }

    #[tokio::test(start_paused = true)]
    async fn opening_and_closing_notify_and_other_outcomes_do_not() {
        let changed = Arc::new(Notify::new());
        let circuit = Arc::new(Circuit::notifying(changed.clone()));
        let now = Instant::now();
        let notified = || {
            let n = changed.notified();
            futures::FutureExt::now_or_never(n).is_some()
        };
        fail(&circuit, now);
        fail(&circuit, now);
        assert!(!notified(), "still closed");
        fail(&circuit, now);
        assert!(notified(), "opened");
        let later = now + Duration::from_secs(60);
        fail(&circuit, later);
        assert!(!notified(), "half-open to open again is not a change of closed-ness");
        let again = later + Duration::from_secs(60);
        circuit
            .try_acquire(again)
            .unwrap()
            .record(Verdict::Success, &config(), again);
        assert!(notified(), "closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let circuit = Arc::new(Circuit::default());
        let now = Instant::now();
        fail(&circuit, now);
        fail(&circuit, now);
        circuit
            .try_acquire(now)
            .unwrap()
            .record(Verdict::Success, &config(), now);
        fail(&circuit, now);
        fail(&circuit, now);
        assert_eq!(circuit.availability(now), Availability::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn half_opens_after_open_for_with_one_probe_that_closes_it_on_success() {
        let circuit = Arc::new(Circuit::default());
        let now = Instant::now();
        for _ in 0..3 {
            fail(&circuit, now);
        }
        let later = now + Duration::from_secs(60);
        assert_eq!(circuit.view(later).state, CircuitState::HalfOpen);
        let probe = circuit.try_acquire(later).unwrap();
        assert!(probe.is_probe());
        assert!(circuit.try_acquire(later).is_none(), "one probe at a time");
        assert_eq!(circuit.availability(later), Availability::Open(None));
        probe.record(Verdict::Success, &config(), later);
        assert_eq!(circuit.view(later).state, CircuitState::Closed);
        assert!(!circuit.try_acquire(later).unwrap().is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_it_again_for_open_for() {
        let circuit = Arc::new(Circuit::default());
        let now = Instant::now();
        for _ in 0..3 {
            fail(&circuit, now);
        }
        let later = now + Duration::from_secs(61);
        fail(&circuit, later);
        assert_eq!(
            circuit.availability(later),
            Availability::Open(Some(later + Duration::from_secs(60)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_or_neutral_probe_frees_the_probe_slot() {
        let circuit = Arc::new(Circuit::default());
        let now = Instant::now();
        for _ in 0..3 {
            fail(&circuit, now);
        }
        let later = now + Duration::from_secs(60);
        drop(circuit.try_acquire(later).unwrap());
        let probe = circuit.try_acquire(later).unwrap();
        probe.record(Verdict::Neutral, &config(), later);
        assert!(circuit.try_acquire(later).unwrap().is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cool_down_holds_traffic_until_it_ends() {
        let circuit = Arc::new(Circuit::default());
        let now = Instant::now();
        let until = now + Duration::from_secs(2);
        circuit.cool_down(now, Duration::from_secs(2));
        assert_eq!(circuit.availability(now), Availability::CoolingDown(until));
        assert!(circuit.try_acquire(now + Duration::from_millis(1999)).is_none());
        assert!(circuit.try_acquire(until).is_some());
        assert_eq!(circuit.view(now).cooling_down_for, Some(Duration::from_secs(2)));
        assert_eq!(circuit.view(now).state, CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_absurd_retry_after_cools_down_for_an_hour_at_most() {
        let circuit = Arc::new(Circuit::default());
        let now = Instant::now();
        circuit.cool_down(now, Duration::from_secs(u64::MAX));
        assert_eq!(
            circuit.availability(now),
            Availability::CoolingDown(now + MAX_COOL_DOWN)
        );
        assert!(circuit.try_acquire(now + MAX_COOL_DOWN).is_some());
    }
}
