//! Exponential backoff with full jitter (the AWS architecture blog's "full jitter").

use std::time::Duration;

use sluice_crds::Backoff;

/// The wait before retry number `retry` (0 for the first): uniform in
/// `0..=min(max, base × 2^retry)`. `draw(n)` returns a uniform number below `n`.
pub fn delay(backoff: &Backoff, retry: u32, draw: impl FnOnce(u64) -> u64) -> Duration {
    let cap = ceiling(backoff, retry);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(draw(nanos.saturating_add(1)))
}

/// `min(max, base × 2^retry)`.
pub fn ceiling(backoff: &Backoff, retry: u32) -> Duration {
    let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
    backoff.base.get().saturating_mul(factor).min(backoff.max.get())
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use sluice_crds::Duration as SpecDuration;

    use super::*;

    fn policy() -> Backoff {
        Backoff {
            base: SpecDuration::from_millis(200),
            max: SpecDuration::from_secs(2),
        }
    }

    #[test]
    fn the_ceiling_doubles_from_base_and_stops_at_max() {
        let ceilings: Vec<u128> = (0..6).map(|r| ceiling(&policy(), r).as_millis()).collect();
        assert_eq!(ceilings, [200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(ceiling(&policy(), 1000), Duration::from_secs(2));
    }

    #[test]
    fn delays_are_spread_over_the_whole_range_up_to_the_ceiling() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for retry in 0..6 {
            let cap = ceiling(&policy(), retry);
            let delays: Vec<Duration> = (0..2_000)
                .map(|_| delay(&policy(), retry, |n| rng.random_range(0..n)))
                .collect();
            assert!(delays.iter().all(|d| *d <= cap), "retry {retry}");
            // Full jitter: about a quarter of the draws in each quarter of the range.
            let low = delays.iter().filter(|d| **d < cap / 4).count();
            let high = delays.iter().filter(|d| **d > cap * 3 / 4).count();
            assert!(
                (400..=600).contains(&low) && (400..=600).contains(&high),
                "retry {retry}: {low} low, {high} high"
            );
        }
    }

    #[test]
    fn the_extremes_of_the_draw_give_zero_and_the_ceiling() {
        assert_eq!(delay(&policy(), 2, |_| 0), Duration::ZERO);
        assert_eq!(delay(&policy(), 2, |n| n - 1), Duration::from_millis(800));
    }
}
