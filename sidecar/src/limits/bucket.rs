//! A token bucket that holds one period's worth and refills continuously.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

/// A bucket of `capacity` units refilled at `capacity` per `period`.
///
/// A burst of `capacity` is admitted at once and the next unit waits for the refill, as
/// DESIGN §5.3 asks ("a burst of N is admitted under N per minute, the N+1st is refused").
/// Charges larger than the capacity are admitted from a full bucket and leave it in debt, so a
/// request bigger than a whole minute's worth is not refused forever. The debt stops at
/// [`MAX_DEBT_PERIODS`] periods' worth: an answer claiming absurd usage cannot idle the bucket for
/// longer than that, nor push its wait beyond what a `Duration` holds.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    period: Duration,
    state: Mutex<Level>,
}

/// How many periods' worth of debt a bucket can owe (an hour for per-minute limits).
pub const MAX_DEBT_PERIODS: f64 = 60.0;

#[derive(Debug, Clone, Copy)]
struct Level {
    units: f64,
    at: Instant,
}

/// What a bucket holds now, for `/config`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketLevel {
    /// Units available now (negative while in debt).
    pub available: f64,
    /// Units a full bucket holds.
    pub capacity: f64,
}

impl TokenBucket {
    /// A full bucket of `capacity` units that refills completely over `period`. A bucket of
    /// 0 admits nothing: a pod whose share of a route-wide limit is 0 (the operator gave the
    /// whole limit to other pods) refuses, and says to ask again after a period.
    pub fn new(capacity: u32, period: Duration) -> Self {
        let capacity = f64::from(capacity);
        Self {
            capacity,
            per_second: capacity / period.as_secs_f64().max(f64::MIN_POSITIVE),
            period,
            state: Mutex::new(Level {
                units: capacity,
                at: Instant::now(),
            }),
        }
    }

    /// A bucket for `n` per minute.
    pub fn per_minute(n: u32) -> Self {
        Self::new(n, Duration::from_secs(60))
    }

    /// A bucket for `n` per day.
    pub fn per_day(n: u32) -> Self {
        Self::new(n, Duration::from_secs(86_400))
    }

    /// Takes `n` units, or says how long until they would be there.
    pub fn take(&self, n: u64, now: Instant) -> Result<(), Duration> {
        if self.capacity == 0.0 {
            return Err(self.period);
        }
        self.with_level(now, |level| {
            let need = self.need(n);
            if level.units >= need {
                level.units = self.bounded(level.units - n as f64);
                Ok(())
            } else {
                Err(self.wait(level.units, need))
            }
        })
    }

    /// How long until `n` units would be there; zero when they are.
    pub fn wait_for(&self, n: u64, now: Instant) -> Duration {
        if self.capacity == 0.0 {
            return self.period;
        }
        self.with_level(now, |level| self.wait(level.units, self.need(n)))
    }

    /// Returns `n` units taken earlier (a refused or failed request), never above capacity.
    pub fn give_back(&self, n: u64, now: Instant) {
        self.adjust(-(n as i64), now);
    }

    /// Corrects an earlier charge: positive takes more (possibly into debt), negative returns.
    pub fn adjust(&self, delta: i64, now: Instant) {
        self.with_level(now, |level| {
            level.units = self.bounded(level.units - delta as f64);
        });
    }

    /// The level now.
    pub fn level(&self, now: Instant) -> BucketLevel {
        self.with_level(now, |level| BucketLevel {
            available: level.units,
            capacity: self.capacity,
        })
    }

    /// Whether the bucket is full, i.e. unused for a whole period.
    pub fn is_full(&self, now: Instant) -> bool {
        self.with_level(now, |level| level.units >= self.capacity)
    }

    /// `units` within the bucket's capacity and its largest debt.
    fn bounded(&self, units: f64) -> f64 {
        units.clamp(-self.capacity * MAX_DEBT_PERIODS, self.capacity)
    }

    /// A charge needs at most a full bucket, so that an oversized one can still pass.
    fn need(&self, n: u64) -> f64 {
        (n as f64).min(self.capacity)
    }

    fn wait(&self, units: f64, need: f64) -> Duration {
        if units >= need {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((need - units) / self.per_second)
    }

    fn with_level<T>(&self, now: Instant, f: impl FnOnce(&mut Level) -> T) -> T {
        // A poisoned lock only means another request panicked mid-update; the level is still a number.
        let mut level = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(level.at).as_secs_f64();
        level.units = (level.units + elapsed * self.per_second).min(self.capacity);
        level.at = level.at.max(now);
        f(&mut level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn admits_a_full_minute_in_a_burst_and_refuses_the_next_with_the_true_wait() {
        let bucket = TokenBucket::per_minute(60);
        let now = Instant::now();
        let admitted = (0..100).filter(|_| bucket.take(1, now).is_ok()).count();
        assert_eq!(admitted, 60);
        // One request per second refills: the 61st may go exactly one second later.
        assert_eq!(bucket.take(1, now), Err(Duration::from_secs(1)));
        let later = now + Duration::from_millis(999);
        assert!(bucket.take(1, later).is_err());
        assert_eq!(bucket.take(1, now + Duration::from_secs(1)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_of_zero_admits_nothing_and_says_to_wait_a_period() {
        let bucket = TokenBucket::per_minute(0);
        let now = Instant::now();
        assert_eq!(bucket.take(1, now), Err(Duration::from_secs(60)));
        assert_eq!(
            bucket.take(0, now + Duration::from_secs(3600)),
            Err(Duration::from_secs(60))
        );
        assert_eq!(bucket.wait_for(1, now), Duration::from_secs(60));
        assert!(bucket.is_full(now));
    }

    #[tokio::test(start_paused = true)]
    async fn refills_continuously_up_to_capacity() {
        let bucket = TokenBucket::per_minute(600);
        let now = Instant::now();
        assert_eq!(bucket.take(600, now), Ok(()));
        let level = bucket.level(now + Duration::from_secs(30));
        assert!((level.available - 300.0).abs() < 1e-6, "{level:?}");
        assert!(bucket.is_full(now + Duration::from_secs(3600)));
        assert_eq!(bucket.level(now + Duration::from_secs(3600)).available, 600.0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_oversized_charge_passes_a_full_bucket_and_leaves_debt() {
        let bucket = TokenBucket::per_minute(100);
        let now = Instant::now();
        assert_eq!(bucket.take(250, now), Ok(()));
        assert_eq!(bucket.level(now).available, -150.0);
        // 150 of debt plus 1 unit at 100/min: 151 × 0.6 s.
        assert_close(bucket.wait_for(1, now), 151.0 * 0.6);
    }

    #[tokio::test(start_paused = true)]
    async fn corrections_take_more_or_give_back_but_never_overfill() {
        let bucket = TokenBucket::per_minute(100);
        let now = Instant::now();
        bucket.take(40, now).unwrap();
        bucket.adjust(10, now);
        assert_eq!(bucket.level(now).available, 50.0);
        bucket.adjust(-30, now);
        assert_eq!(bucket.level(now).available, 80.0);
        bucket.give_back(500, now);
        assert_eq!(bucket.level(now).available, 100.0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_absurd_usage_leaves_at_most_an_hour_of_debt() {
        let bucket = TokenBucket::per_minute(100);
        let now = Instant::now();
        bucket.adjust(i64::MAX, now);
        assert_eq!(bucket.level(now).available, -6_000.0);
        // 6,000 of debt plus 1 token at 100/min: 6,001 × 0.6 s.
        assert_close(bucket.wait_for(1, now), 6_001.0 * 0.6);
        assert_eq!(bucket.take(1, now + Duration::from_secs(3601)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn per_day_refills_one_request_per_share_of_the_day() {
        let bucket = TokenBucket::per_day(3);
        let now = Instant::now();
        for _ in 0..3 {
            bucket.take(1, now).unwrap();
        }
        assert_close(bucket.take(1, now).unwrap_err(), 8.0 * 3600.0);
    }

    #[track_caller]
    fn assert_close(wait: Duration, secs: f64) {
        assert!((wait.as_secs_f64() - secs).abs() < 1e-6, "{wait:?} is not {secs} s");
    }
}
