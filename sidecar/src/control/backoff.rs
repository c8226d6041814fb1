//! How long the sidecar waits before reconnecting to the control plane.
//!
//! Two cases differ. An operator that is away (no answer, a transport error) is waited for with
//! exponential backoff and full jitter up to `--max-backoff`, so a thousand sidecars do not
//! reconnect in step. A replica that answers but does not lead (503, DESIGN §6.4) says the
//! control plane is up: behind a Service each new connection may reach another replica, so the
//! leader is looked for with a short backoff of its own, for a bounded number of tries.

use std::{
    hash::BuildHasher,
    time::{Duration, Instant},
};

/// How many reconnects in a row a follower's refusal is retried with the short backoff (with two
/// replicas each reaches the leader with even odds); after that the usual backoff applies.
pub const LEADER_SEARCH_TRIES: u32 = 10;
/// The longest pause between reconnects while looking for the leader.
pub const LEADER_SEARCH_MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A stream that ran this long was healthy: the next failure starts the backoff over.
pub const HEALTHY_STREAM: Duration = Duration::from_secs(30);

/// The pause before reconnect attempt `attempt` (from 0): uniformly random up to
/// `min(max, 200ms × 2^attempt)` ("full jitter"), with `random` in `0..=u64::MAX`.
pub fn backoff(attempt: u32, max: Duration, random: u64) -> Duration {
    jitter(ceiling(attempt, max), random)
}

/// The longest pause of attempt `attempt` (from 0): `min(max, 200ms × 2^attempt)`.
pub fn ceiling(attempt: u32, max: Duration) -> Duration {
    Duration::from_millis(200)
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(max)
}

/// A pause uniformly random up to `ceiling` (whole milliseconds), with `random` in `0..=u64::MAX`.
pub fn jitter(ceiling: Duration, random: u64) -> Duration {
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(random % millis.saturating_add(1))
}

/// A random number for jitter (no cryptographic use).
pub fn random() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(Instant::now())
}

/// The reconnect pacing of one config stream.
#[derive(Debug)]
pub struct Pacing {
    max: Duration,
    /// Failures in a row other than a follower's refusal.
    attempt: u32,
    /// Follower refusals in a row.
    search: u32,
}

impl Pacing {
    /// Pacing with `max` as the longest pause while the operator is away.
    pub fn new(max: Duration) -> Self {
        Self {
            max,
            attempt: 0,
            search: 0,
        }
    }

    /// The longest pause (jitter it) after a stream that lasted `ran_for` and ended in a
    /// follower's refusal or not.
    pub fn next(&mut self, follower: bool, ran_for: Duration) -> Duration {
        if ran_for > HEALTHY_STREAM {
            self.attempt = 0;
            self.search = 0;
        }
        if !follower {
            self.search = 0;
        }
        if follower && self.search < LEADER_SEARCH_TRIES {
            self.search += 1;
            return ceiling(self.search - 1, LEADER_SEARCH_MAX_BACKOFF);
        }
        self.attempt = self.attempt.saturating_add(1);
        ceiling(self.attempt - 1, self.max)
    }
}
