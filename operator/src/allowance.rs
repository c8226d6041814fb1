//! Budget allowances (DESIGN §6.3): how much of a budget each sidecar may spend.
//!
//! An allowance is cumulative for the budget's period: `granted` is the total a pod may have
//! spent in the period, its own spend included, and it only grows (until the period resets).
//! A pod is topped up when what it has left falls under half of its target headroom; the
//! target is sized to its recent spend and the top-up comes only out of money that is neither
//! spent nor promised to another pod. So, while sidecars hold to their allowances, the sum of
//! all grants never passes the limit.
//!
//! The overspend bound: what the operator cannot see is money a sidecar spent and has not
//! reported yet. It is at most the *outstanding* allowance, `Σ max(granted − spent, 0)`, which
//! is exported as `sluice_budget_outstanding_allowance_usd` and is what a test of the hard
//! limit allows beyond it (a sidecar that crashes with unreported spend, or an operator that
//! restarts before persisting a grant, can exceed the limit by no more than that).

use sluice_crds::MicroUsd;

/// One pod's use of one budget in the current period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodUse {
    /// Total it may have spent in the period.
    pub granted: MicroUsd,
    /// Spend it reported in the period.
    pub spent: MicroUsd,
    /// Spend it reported in the last complete sizing window.
    pub recent: MicroUsd,
}

impl PodUse {
    /// What it may still spend.
    pub fn headroom(&self) -> MicroUsd {
        self.granted.saturating_sub(self.spent)
    }
}

/// Money granted and not yet reported spent, over every pod: the overspend bound.
pub fn outstanding<'a>(pods: impl IntoIterator<Item = &'a PodUse>) -> MicroUsd {
    pods.into_iter().fold(MicroUsd::ZERO, |sum, p| sum + p.headroom())
}

/// Money neither spent nor promised to a pod.
pub fn free(limit: MicroUsd, spent: MicroUsd, outstanding: MicroUsd) -> MicroUsd {
    limit.saturating_sub(spent).saturating_sub(outstanding)
}

/// The headroom a pod should hold: two sizing windows of its recent spend, and never less
/// than an equal share of the money left among the pods that may spend it, so every pod can
/// start at once and an evenly busy fleet can spend the budget down to the last share.
pub fn target_headroom(limit: MicroUsd, spent: MicroUsd, recent: MicroUsd, active_pods: usize) -> MicroUsd {
    let pods = u64::try_from(active_pods.max(1)).unwrap_or(u64::MAX);
    let share = MicroUsd::new(limit.saturating_sub(spent).micros() / pods);
    MicroUsd::new(recent.micros().saturating_mul(2)).max(share)
}

/// The pod's next cumulative grant: unchanged while its headroom is at least half of
/// `target`, otherwise raised toward `target` headroom out of `free` money.
pub fn next_grant(pod: &PodUse, target: MicroUsd, free: MicroUsd) -> MicroUsd {
    let headroom = pod.headroom();
    // A pod that overspent (soft enforcement) starts over from what it spent.
    let base = pod.granted.max(pod.spent);
    if headroom.micros().saturating_mul(2) >= target.micros() && pod.granted >= pod.spent {
        return pod.granted;
    }
    let wanted = target.saturating_sub(headroom);
    base + wanted.min(free)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(micros: u64) -> MicroUsd {
        MicroUsd::new(micros)
    }

    #[test]
    fn a_new_pod_gets_an_equal_share_of_what_is_left() {
        // $10 limit, $2 spent, 5 pods: 8 / 5 = $1.60.
        let target = target_headroom(usd(10_000_000), usd(2_000_000), usd(0), 5);
        assert_eq!(target, usd(1_600_000));
        assert_eq!(next_grant(&PodUse::default(), target, usd(8_000_000)), usd(1_600_000));
    }

    #[test]
    fn five_even_pods_share_the_limit_to_the_last_micro_dollar() {
        // $0.30 over 5 pods: each is granted $0.06 in turn and the free money runs out exactly.
        let limit = usd(300_000);
        let mut pods = [PodUse::default(); 5];
        for i in 0..5 {
            let out = outstanding(&pods);
            let target = target_headroom(limit, MicroUsd::ZERO, pods[i].recent, 5);
            pods[i].granted = next_grant(&pods[i], target, free(limit, MicroUsd::ZERO, out));
        }
        assert!(pods.iter().all(|p| p.granted == usd(60_000)));
        assert_eq!(free(limit, MicroUsd::ZERO, outstanding(&pods)), MicroUsd::ZERO);
    }

    #[test]
    fn a_busy_pod_is_sized_to_twice_its_recent_spend() {
        let target = target_headroom(usd(10_000_000), usd(0), usd(2_000_000), 5);
        assert_eq!(target, usd(4_000_000));
        // Granted 3, spent 2.9: headroom 0.1 < 2 → top up to 4 of headroom: 2.9 + 4.
        let pod = PodUse {
            granted: usd(3_000_000),
            spent: usd(2_900_000),
            recent: usd(2_000_000),
        };
        assert_eq!(next_grant(&pod, target, usd(9_000_000)), usd(3_000_000 + 3_900_000));
    }

    #[test]
    fn a_pod_with_enough_headroom_keeps_its_grant() {
        let pod = PodUse {
            granted: usd(1_000_000),
            spent: usd(400_000),
            recent: usd(0),
        };
        // Headroom 0.6 ≥ half of 1.0.
        assert_eq!(next_grant(&pod, usd(1_000_000), usd(5_000_000)), usd(1_000_000));
    }

    #[test]
    fn grants_never_exceed_the_free_money() {
        let pods = [
            PodUse {
                granted: usd(4_000_000),
                spent: usd(3_000_000),
                recent: usd(0),
            },
            PodUse {
                granted: usd(5_000_000),
                spent: usd(4_990_000),
                recent: usd(3_000_000),
            },
        ];
        let limit = usd(10_000_000);
        let spent = usd(7_990_000);
        let out = outstanding(&pods);
        assert_eq!(out, usd(1_010_000));
        let free = free(limit, spent, out);
        assert_eq!(free, usd(1_000_000));
        let target = target_headroom(limit, spent, pods[1].recent, 2);
        // Wants 6 − 0.01 more; gets the 1 that is free: granted 5 + 1.
        assert_eq!(next_grant(&pods[1], target, free), usd(6_000_000));
        // Total promised = spent + outstanding after the grant = the limit exactly.
        assert_eq!(spent + out + usd(1_000_000), limit);
    }

    #[test]
    fn an_exhausted_budget_grants_nothing_more() {
        let pod = PodUse {
            granted: usd(2_000_000),
            spent: usd(2_000_000),
            recent: usd(1_000_000),
        };
        assert_eq!(next_grant(&pod, usd(2_000_000), MicroUsd::ZERO), usd(2_000_000));
    }
}
