//! Splitting a route-wide limit (requests or tokens per minute, DESIGN §6.3) over the pods the
//! route selects, so that the parts sum to exactly the limit and follow demand.
//!
//! - **No demand known** (a new route, an operator just started): an even split; the
//!   remainder goes one each to the first pods (in UID order), so 10 per minute over 50 pods is
//!   1 for ten of them and 0 for the rest, never 1 for all fifty.
//! - **Demand known** (requests or tokens each pod asked for in the last complete sizing
//!   window, refused ones included): each pod first gets a small floor, a tenth of an even
//!   split but at least 1, and only when the limit covers 1 for every pod; the rest is split in
//!   proportion to demand by largest remainder (ties to the earlier pod).
//!
//! The unit is the limit's own (one request, one token per minute): a finer unit would need
//! the sidecar's buckets to take fractions. A pod left with 0 refuses the route's requests
//! (429); its refusals are demand, so the next sizing window gives it a share.

/// The floor is a tenth of an even split.
const FLOOR_DIVISOR: u64 = 10;

/// Splits `limit` over pods whose recent demand is `demand` (one entry per pod, in UID order);
/// the parts sum to `limit` exactly.
pub fn split(limit: u32, demand: &[u64]) -> Vec<u32> {
    let n = u64::try_from(demand.len()).unwrap_or(u64::MAX);
    if n == 0 {
        return Vec::new();
    }
    let limit = u64::from(limit);
    let total: u128 = demand.iter().map(|d| u128::from(*d)).sum();
    if total == 0 {
        let (base, extra) = (limit / n, limit % n);
        return (0..n).map(|i| to_u32(base + u64::from(i < extra))).collect();
    }
    let floor = if limit >= n {
        (limit / (FLOOR_DIVISOR * n)).max(1)
    } else {
        0
    };
    let rest = u128::from(limit - floor * n);
    let mut parts: Vec<u64> = Vec::with_capacity(demand.len());
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(demand.len());
    for (i, d) in demand.iter().enumerate() {
        let weighted = rest * u128::from(*d);
        // `weighted / total` is at most `rest`, which fits in a u64.
        parts.push(floor + u64::try_from(weighted / total).unwrap_or(0));
        remainders.push((weighted % total, i));
    }
    let given: u64 = parts.iter().sum();
    let left = usize::try_from(limit - given).unwrap_or(usize::MAX);
    // Largest remainder first; equal remainders in pod order.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders.into_iter().take(left) {
        parts[i] += 1;
    }
    parts.into_iter().map(to_u32).collect()
}

/// Every part is at most the u32 limit it was split from.
fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_demand_the_split_is_even_and_the_remainder_goes_to_the_first_pods() {
        assert_eq!(split(90, &[0, 0, 0]), [30, 30, 30]);
        assert_eq!(split(1000, &[0, 0, 0]), [334, 333, 333]);
        assert_eq!(split(0, &[0, 0]), [0, 0]);
        assert_eq!(split(7, &[]), Vec::<u32>::new());
    }

    #[test]
    fn more_pods_than_the_limit_without_demand_gives_one_each_to_as_many_pods_as_the_limit() {
        let parts = split(10, &[0; 50]);
        assert_eq!(parts[..10], [1; 10]);
        assert_eq!(parts[10..], [0; 40]);
        assert_eq!(parts.iter().sum::<u32>(), 10);
    }

    #[test]
    fn skewed_demand_gets_most_of_the_limit_after_a_floor_for_each_pod() {
        // Floors of 5 (a tenth of 50); the other 90 split 81 / 9.
        assert_eq!(split(100, &[90, 10]), [86, 14]);
        // An idle pod keeps its floor.
        assert_eq!(split(100, &[40, 0]), [95, 5]);
        // A floor is at least 1 while the limit covers every pod.
        assert_eq!(split(12, &[1_000, 0, 0]), [10, 1, 1]);
    }

    #[test]
    fn more_pods_than_the_limit_with_demand_gives_it_only_to_pods_that_asked() {
        assert_eq!(split(3, &[6, 0, 0, 3, 0]), [2, 0, 0, 1, 0]);
    }

    #[test]
    fn rounding_gives_the_leftover_to_the_largest_remainders_so_the_sum_is_exact() {
        // Floors of 1; 7 left over three equal demands: 2 each and 1 to the first.
        assert_eq!(split(10, &[1, 1, 1]), [4, 3, 3]);
        // Floors of 3 (a tenth of 33), 91 left: 15.17, 30.33 and 45.5; the one left over goes
        // to the largest remainder (.5).
        assert_eq!(split(100, &[1, 2, 3]), [18, 33, 49]);
        let parts = split(u32::MAX, &[u64::MAX, 1, 7]);
        assert_eq!(parts.iter().map(|p| u64::from(*p)).sum::<u64>(), u64::from(u32::MAX));
    }
}
