//! Budget allowances (DESIGN §6.3): how much of a budget each sidecar may spend.
//!
//! An allowance is cumulative for the budget's period: `granted` is the total a pod may have
//! spent in the period, its own spend included. A pod is topped up when what it has left falls
//! under half of its target headroom (the target is sized to its recent spend), and when it
//! asks ([`top_up`]); either way only out of money that is neither spent nor promised to
//! another pod. So, while sidecars hold to their allowances, the sum of all grants never passes
//! the limit. A pod that spent nothing for [`IDLE_WINDOWS`] sizing windows has its grant shrunk
//! to what it spent ([`idle_grant`]), so money idle pods hold goes back to the busy ones; it
//! asks again when it needs.
//!
//! The overspend bound: what the operator cannot see is money a sidecar spent and has not
//! reported yet. It is at most the *outstanding* allowance, `Σ max(granted − spent, 0)`,
//! exported as `sluice_budget_outstanding_allowance_usd`, which is what a test of the hard
//! limit allows beyond it. It holds across the failures that used to widen it:
//! - an operator crash: a grant reaches a sidecar only once the ledger holding it is persisted
//!   (`PodGrant::unpersisted` is held back from snapshots), so a next leader never grants the
//!   same money again;
//! - a period rollover: a snapshot's grant names its period, and a sidecar counts a grant of
//!   any other period as zero;
//! - what the sidecar reserves covers every choice (`n`) and every streamed token (text, tool
//!   call arguments, reasoning) before it is sent.
//!
//! Two things stay outside it: soft enforcement (which serves over the limit by design), and
//! an idle pod's reservations still in flight when its grant is shrunk (an idle pod has
//! none, unless a request starts in the moment between its last idle window and the shrink:
//! at most that request's reservation).

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

/// Sizing windows a pod must spend nothing in before its unspent grant is taken back.
pub const IDLE_WINDOWS: u32 = 3;

/// The grant a pod that asked for `wanted_grant` in all gets: raised toward it out of `free`
/// money, never lowered. Asking again with the same figures gives the same grant.
pub fn top_up(pod: &PodUse, wanted_grant: MicroUsd, free: MicroUsd) -> MicroUsd {
    // A pod that overspent (soft enforcement) starts over from what it spent.
    let base = pod.granted.max(pod.spent);
    if wanted_grant <= base {
        return pod.granted;
    }
    base + wanted_grant.saturating_sub(base).min(free)
}

/// The grant of a pod idle for `idle_windows` sizing windows: once it has been idle for
/// [`IDLE_WINDOWS`], shrunk to what it spent and not topped up again until it asks; `None`
/// while it is sized as usual.
pub fn idle_grant(pod: &PodUse, idle_windows: u32) -> Option<MicroUsd> {
    (idle_windows >= IDLE_WINDOWS).then_some(pod.granted.min(pod.spent))
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

    #[test]
    fn a_pod_that_asks_is_topped_up_to_what_it_asked_for_out_of_free_money() {
        let pod = PodUse {
            granted: usd(60_000),
            spent: usd(60_000),
            recent: usd(0),
        };
        // Holds $0.06, asks for $0.04 more: $0.10 in all, and $0.05 is free.
        assert_eq!(top_up(&pod, usd(100_000), usd(50_000)), usd(100_000));
        // Only $0.01 free: that is all it gets.
        assert_eq!(top_up(&pod, usd(100_000), usd(10_000)), usd(70_000));
        // Nothing free: unchanged.
        assert_eq!(top_up(&pod, usd(100_000), MicroUsd::ZERO), usd(60_000));
    }

    #[test]
    fn asking_again_for_what_was_granted_grants_nothing_more() {
        let pod = PodUse {
            granted: usd(100_000),
            spent: usd(60_000),
            recent: usd(0),
        };
        assert_eq!(top_up(&pod, usd(100_000), usd(1_000_000)), usd(100_000));
        assert_eq!(top_up(&pod, usd(80_000), usd(1_000_000)), usd(100_000));
    }

    #[test]
    fn a_pod_idle_for_three_windows_keeps_only_what_it_spent() {
        let pod = PodUse {
            granted: usd(150_000),
            spent: usd(20_000),
            recent: usd(0),
        };
        assert_eq!(idle_grant(&pod, 2), None);
        assert_eq!(idle_grant(&pod, 3), Some(usd(20_000)));
        // Shrunk, it stays there (no top-up) for as long as it stays idle.
        let shrunk = PodUse {
            granted: usd(20_000),
            ..pod
        };
        assert_eq!(idle_grant(&shrunk, 5), Some(usd(20_000)));
    }
}
