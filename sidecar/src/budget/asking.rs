//! Asking the operator for more (cluster mode): when an account asks, how an answer ends the
//! wait of the requests asking, how a snapshot's grant is taken, and which grant counts in
//! which period.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use sluice_crds::{MicroUsd, ObjectKey};

use super::{Account, AccountState};

/// How long an answer that brought no money keeps a sidecar from asking again: requests
/// that find the slice spent meanwhile are refused at once instead of each waiting.
const DENIAL_HOLDS: Duration = Duration::from_secs(1);

/// A sidecar asks the operator for more of a budget (cluster mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The budget.
    pub budget: ObjectKey,
    /// The allowance held now (zero when the grant is of another period).
    pub held: MicroUsd,
    /// How much more it asks for.
    pub wanted: MicroUsd,
}

/// Where an account sends its asks; `None` in local mode, where the allowance is the limit.
pub type Asker = tokio::sync::mpsc::UnboundedSender<Ask>;

/// The allowance that counts in the period starting at `window_start`: a grant of another
/// period counts as zero; a grant for every period (`None`) counts whole.
pub fn allowance_in(granted: MicroUsd, grant_period: Option<Timestamp>, window_start: Timestamp) -> MicroUsd {
    match grant_period {
        Some(start) if start != window_start => MicroUsd::ZERO,
        _ => granted,
    }
}

/// This sidecar's allowance of a budget is spent while the budget itself still has money.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "this pod's allowance of budget {budget} is spent and the operator has not topped it up yet; the budget \
     itself has money left: retry shortly"
)]
pub struct Short {
    /// `namespace/name` of the budget.
    pub budget: ObjectKey,
    /// An ask is on its way: a larger grant may come soon, worth waiting for.
    pub asked: bool,
}

impl Account {
    /// Records a change and wakes whoever waits for one.
    pub(super) fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// The count of changes so far: take it before a check, then wait with
    /// [`Self::changed_since`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Resolves once the allowance changed or an ask was answered after `generation`.
    pub async fn changed_since(&self, generation: u64) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.generation() != generation {
                return;
            }
            notified.await;
        }
    }

    /// Whether a request short of money here may wait: the budget has money and an ask for
    /// more is on its way.
    pub fn may_wait(&self) -> bool {
        let state = self.lock();
        !state.budget_spent() && state.asking.is_some()
    }

    /// The operator answered an ask made holding `held`: it now grants `granted` for the
    /// period starting at `period_start`. The grant itself comes in a snapshot; an answer that
    /// brings nothing more ends the wait of the requests asking.
    pub fn answered(&self, held: MicroUsd, granted: MicroUsd, period_start: Option<Timestamp>, exhausted: bool) {
        let mut state = self.lock();
        if state.asking == Some(held) {
            state.asking = None;
        }
        if exhausted && period_start.is_some_and(|p| p == state.window.start) {
            state.exhausted = true;
            state.grant_period = period_start;
        }
        if granted <= held {
            state.denied = Some((held, Instant::now()));
        }
        drop(state);
        self.bump();
    }

    /// An ask made holding `held` got no answer: requests waiting for it stop waiting.
    pub fn ask_failed(&self, held: MicroUsd) {
        let mut state = self.lock();
        if state.asking == Some(held) {
            state.asking = None;
        }
        state.denied = Some((held, Instant::now()));
        drop(state);
        self.bump();
    }
}

impl AccountState {
    /// The allowance that counts in the current period.
    pub(super) fn allowance_now(&self) -> MicroUsd {
        allowance_in(self.allowance, self.grant_period, self.window.start)
    }

    /// Whether the budget's money for the period is spent: the operator says so (for this
    /// period), or this sidecar alone spent the limit, or there is no operator to ask (local
    /// mode: the allowance is the limit).
    pub(super) fn budget_spent(&self) -> bool {
        (self.exhausted && self.grant_period == Some(self.window.start))
            || self.asker.is_none()
            || self.spent >= self.spec.limit_usd
    }

    /// Asks for `wanted` more unless an ask holding the same allowance is on its way or was
    /// just answered with nothing; returns whether an ask is on its way.
    pub(super) fn ask(&mut self, budget: &ObjectKey, wanted: MicroUsd) -> bool {
        let held = self.allowance_now();
        if self.asking == Some(held) {
            return true;
        }
        if self
            .denied
            .is_some_and(|(denied, at)| denied == held && at.elapsed() < DENIAL_HOLDS)
        {
            return false;
        }
        let Some(asker) = &self.asker else { return false };
        let ask = Ask {
            budget: budget.clone(),
            held,
            wanted: wanted.max(MicroUsd::new(1)),
        };
        if asker.send(ask).is_err() {
            return false;
        }
        self.asking = Some(held);
        true
    }

    /// Takes the operator's grant from a snapshot.
    pub(super) fn grant(&mut self, allowance: MicroUsd, period: Option<Timestamp>, exhausted: bool) {
        let before = self.allowance_now();
        self.allowance = allowance;
        self.grant_period = period;
        self.exhausted = exhausted;
        let now = self.allowance_now();
        if now != before {
            self.asking = None;
            self.denied = None;
        }
        if now > before {
            self.slice = now.saturating_sub(self.spent);
        }
    }
}
