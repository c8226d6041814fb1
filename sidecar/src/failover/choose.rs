//! One pass over the candidates: the first that can take an attempt now, and what held the
//! others back.

use tokio::time::Instant;

use super::{Attempts, Guard, Progress, backoff};
use crate::circuit::{Availability, Ticket};

/// What stopped candidates from being tried in one pass.
#[derive(Debug, Default)]
pub(super) struct Blocked {
    /// Circuits open, by name.
    pub(super) open: Vec<String>,
    /// The soonest a cooling-down or rate-limited backend can be tried, and why it waits.
    pub(super) soonest: Option<(Instant, String)>,
    /// A backend whose concurrency queue refused, and why.
    pub(super) busy: Option<String>,
}

impl Blocked {
    fn wait(&mut self, until: Instant, why: String) {
        if self.soonest.as_ref().is_none_or(|(t, _)| until < *t) {
            self.soonest = Some((until, why));
        }
    }
}

/// A candidate ready for an attempt, holding its limits.
pub(super) struct Chosen {
    pub(super) index: usize,
    pub(super) guard: Guard,
    pub(super) ticket: Ticket,
}

/// One pass over the candidates from the cursor: the first that can take the attempt now.
pub(super) async fn choose(plan: &Attempts<'_>, progress: &mut Progress) -> (Option<Chosen>, Blocked) {
    let mut blocked = Blocked::default();
    let n = plan.candidates.len();
    for k in 0..n {
        let index = (progress.cursor + k) % n;
        let backend = &plan.candidates[index];
        let now = Instant::now();
        match backend.state.circuit.availability(now) {
            Availability::Ready => {}
            Availability::Open(_) => {
                blocked.open.push(backend.name.to_string());
                continue;
            }
            Availability::CoolingDown(until) => {
                blocked.wait(
                    until,
                    format!("backend {} asked to wait (429 Retry-After)", backend.name),
                );
                continue;
            }
        }
        if progress.tried[index] && !back_off(plan, progress).await {
            break;
        }
        let now = Instant::now();
        let charge = match backend.state.limits.admit(plan.tokens, now) {
            Ok(charge) => charge,
            Err(refusal) => {
                blocked.wait(now + refusal.retry_after, refusal.limit);
                continue;
            }
        };
        let Some(ticket) = backend.state.circuit.try_acquire(now) else {
            charge.settle(None, now);
            blocked.open.push(backend.name.to_string());
            continue;
        };
        let queue_until = (now + backend.timeouts.first_byte.get()).min(plan.deadline);
        let permit = match backend.state.limits.slot(plan.priority, queue_until).await {
            Ok(permit) => permit,
            Err(saturated) => {
                charge.settle(None, Instant::now());
                blocked.busy = Some(format!("backend {}: {saturated}", backend.name));
                continue;
            }
        };
        let guard = Guard::new(backend.clone(), plan.route.circuit_breaker, charge, permit);
        return (Some(Chosen { index, guard, ticket }), blocked);
    }
    (None, blocked)
}

/// Waits the backoff before going back to a backend, counted from the last failure (a wait
/// for a cool-down already counts). `false` when the deadline comes first.
async fn back_off(plan: &Attempts<'_>, progress: &mut Progress) -> bool {
    let delay = backoff::delay(&plan.route.retry.backoff, progress.retries, |n| {
        plan.route.state.picker.below(n)
    });
    progress.retries += 1;
    let wake = progress.last_failed_at.unwrap_or_else(Instant::now) + delay;
    if wake >= plan.deadline {
        return false;
    }
    tokio::time::sleep_until(wake).await;
    true
}
