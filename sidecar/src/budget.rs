//! Budgets in the sidecar: reserve the worst case before a call, settle the real cost after,
//! so concurrent requests can never jointly spend more than the allowance.
//!
//! The allowance is the interface to the operator: alone (local mode) a sidecar's allowance is
//! the whole limit; in a cluster the operator grants each sidecar a slice and tops it up.
//!
//! In a cluster a sidecar asks for more ([`Ask`], sent by the control client) when what is left
//! of its slice falls under half of the last slice it was granted, so the common path never
//! waits; a request that finds the slice spent asks too and waits briefly for the larger grant
//! (the pipeline does, on [`Account::changed_since`]). A refusal is `budget_exceeded` only when the
//! budget itself is spent ([`Exhausted`]); a slice that is spent while the budget still has
//! money is [`Short`]. A grant counts only in the period it was granted for
//! ([`allowance_in`]), so last period's allowance never spends this period's money.

pub use sluice_crds::period;
mod asking;
pub mod state_file;

pub use self::asking::{Ask, Asker, Short, allowance_in};

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use jiff::{Timestamp, tz::TimeZone};
use sluice_crds::{BudgetConfig, BudgetSpec, Enforcement, MicroUsd, ObjectKey};

use self::period::Window;

/// One budget's account in this sidecar.
#[derive(Debug)]
pub struct Account {
    key: ObjectKey,
    state: Mutex<AccountState>,
    /// Woken when the allowance changes or an ask is answered.
    changed: tokio::sync::Notify,
    /// Counts those changes, so a waiter sees one that came before it started waiting.
    generation: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Clone)]
struct AccountState {
    spec: BudgetSpec,
    tz: TimeZone,
    window: Window,
    /// Money this sidecar may spend in the period `grant_period`.
    allowance: MicroUsd,
    /// The period the allowance was granted for; `None`: every period (local mode).
    grant_period: Option<Timestamp>,
    /// The operator says the budget's money for `grant_period` is spent.
    exhausted: bool,
    /// Settled spend in the current period.
    spent: MicroUsd,
    /// Held by requests in flight.
    reserved: MicroUsd,
    /// What was left of the allowance when it was last raised: asks are sized to it.
    slice: MicroUsd,
    /// Where asks go (cluster mode).
    asker: Option<Asker>,
    /// The allowance held when the ask in flight was sent.
    asking: Option<MicroUsd>,
    /// An ask made holding this allowance brought nothing, at this time.
    denied: Option<(MicroUsd, Instant)>,
}

/// What a budget says about one request.
#[derive(Debug)]
pub enum Admission {
    /// Within the allowance: the worst case is held until the request settles.
    Reserved(Reservation),
    /// Over the limit with `soft` enforcement: serve, but the request is flagged.
    OverSoftLimit,
    /// Over the limit with `downgrade` enforcement: serve from these backends only.
    Downgrade(Vec<sluice_crds::BackendName>),
}

/// Why a hard budget refused a request.
#[derive(Debug, Clone)]
pub enum Refused {
    /// The budget's money for the period is spent.
    Exhausted(Exhausted),
    /// This sidecar's slice is spent but the budget has money: more was asked for.
    Short(Short),
}

/// A hard budget refused the request: its money for the period is spent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("budget {budget} is exhausted for this period (limit {limit} USD; this pod spent {spent}){}", resets_at.map(|t| format!("; it resets at {t}")).unwrap_or_default())]
pub struct Exhausted {
    /// `namespace/name` of the budget.
    pub budget: ObjectKey,
    /// Spent in this period by this sidecar.
    pub spent: MicroUsd,
    /// The period's limit.
    pub limit: MicroUsd,
    /// When the period ends, if it does.
    pub resets_at: Option<Timestamp>,
}

impl Exhausted {
    /// How long until the period resets; `None` for a budget that never resets.
    pub fn retry_after(&self, now: Timestamp) -> Option<std::time::Duration> {
        let end = self.resets_at?;
        let secs = end.as_second().saturating_sub(now.as_second()).max(1);
        Some(std::time::Duration::from_secs(secs.unsigned_abs()))
    }
}

/// What a request owes its budget until it ends.
#[derive(Debug)]
pub enum BudgetHold {
    /// The worst case is reserved; settling replaces it by the real cost.
    Reserved(Reservation),
    /// Served over the limit (soft or downgraded): the real cost is added when known.
    Unreserved(Arc<Account>),
}

impl BudgetHold {
    /// The account the request spends from.
    pub fn account(&self) -> &Arc<Account> {
        match self {
            Self::Reserved(r) => r.account(),
            Self::Unreserved(a) => a,
        }
    }

    /// Money held for the request; `None` when it runs unreserved (soft, downgraded).
    pub fn reserved(&self) -> Option<MicroUsd> {
        match self {
            Self::Reserved(r) => Some(r.amount()),
            Self::Unreserved(_) => None,
        }
    }

    /// Holds `more`; `false` when a hard budget has no money for it. Unreserved holds always can.
    pub fn extend(&mut self, more: MicroUsd, now: Timestamp) -> bool {
        match self {
            Self::Reserved(r) => r.extend(more, now),
            Self::Unreserved(_) => true,
        }
    }

    /// The budget's name.
    pub fn budget(&self) -> &ObjectKey {
        match self {
            Self::Reserved(r) => r.account().key(),
            Self::Unreserved(a) => a.key(),
        }
    }

    /// Charges the real cost.
    pub fn settle(self, cost: MicroUsd, now: Timestamp) {
        match self {
            Self::Reserved(r) => r.settle(cost, now),
            Self::Unreserved(account) => account.charge(cost, now),
        }
    }
}

/// Money held for a request in flight; released when dropped unsettled.
#[derive(Debug)]
pub struct Reservation {
    account: Arc<Account>,
    amount: MicroUsd,
}

/// A budget's figures at one instant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// `namespace/name`.
    pub budget: String,
    /// The configured limit.
    #[serde(rename = "limitUSD")]
    pub limit: MicroUsd,
    /// This sidecar's allowance for the period.
    #[serde(rename = "allowanceUSD")]
    pub allowance: MicroUsd,
    /// Settled spend in the period.
    #[serde(rename = "spentUSD")]
    pub spent: MicroUsd,
    /// Held by requests in flight.
    #[serde(rename = "reservedUSD")]
    pub reserved: MicroUsd,
    /// What is left of the allowance.
    #[serde(rename = "remainingUSD")]
    pub remaining: MicroUsd,
    /// Start of the period (RFC 3339).
    pub period_start: String,
    /// When it resets, if it does.
    pub resets_at: Option<String>,
    /// hard, soft or downgrade.
    pub enforcement: Enforcement,
}

impl Account {
    fn lock(&self) -> MutexGuard<'_, AccountState> {
        // A panic while holding this lock leaves plain numbers behind; they stay usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The budget's name.
    pub fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// Decides whether a request whose worst case costs `worst_case` may run. In a cluster,
    /// asks for more when the slice runs low or out.
    pub fn admit(self: &Arc<Self>, worst_case: MicroUsd, now: Timestamp) -> Result<Admission, Refused> {
        let mut state = self.lock();
        state.roll(now);
        let allowance = state.allowance_now();
        let committed = state.spent.saturating_add(state.reserved);
        if committed.saturating_add(worst_case) <= allowance {
            state.reserved = state.reserved.saturating_add(worst_case);
            let left = allowance.saturating_sub(committed.saturating_add(worst_case));
            if left.micros().saturating_mul(2) < state.slice.micros() {
                let slice = state.slice;
                state.ask(&self.key, slice);
            }
            return Ok(Admission::Reserved(Reservation {
                account: self.clone(),
                amount: worst_case,
            }));
        }
        let short = committed.saturating_add(worst_case).saturating_sub(allowance);
        let wanted = short.max(state.slice);
        let asked = !state.budget_spent() && state.ask(&self.key, wanted);
        match state.spec.enforcement {
            Enforcement::Soft => Ok(Admission::OverSoftLimit),
            Enforcement::Downgrade => Ok(Admission::Downgrade(state.spec.downgrade_to.clone())),
            Enforcement::Hard if state.budget_spent() => Err(Refused::Exhausted(Exhausted {
                budget: self.key.clone(),
                spent: state.spent,
                limit: state.spec.limit_usd,
                resets_at: state.window.end,
            })),
            Enforcement::Hard => Err(Refused::Short(Short {
                budget: self.key.clone(),
                asked,
            })),
        }
    }

    /// Adds spend that ran without a reservation (soft or downgraded requests).
    pub fn charge(&self, cost: MicroUsd, now: Timestamp) {
        let mut state = self.lock();
        state.roll(now);
        state.spent = state.spent.saturating_add(cost);
    }

    /// Money still available for new reservations.
    pub fn available(&self, now: Timestamp) -> MicroUsd {
        let mut state = self.lock();
        state.roll(now);
        state
            .allowance_now()
            .saturating_sub(state.spent.saturating_add(state.reserved))
    }

    /// Restores spend recorded for the period starting at `period_start` (from the state file);
    /// spend of another period is stale and ignored.
    pub fn restore(&self, period_start: Timestamp, spent: MicroUsd, now: Timestamp) -> bool {
        let mut state = self.lock();
        state.roll(now);
        if state.window.start != period_start {
            return false;
        }
        state.spent = state.spent.max(spent);
        true
    }

    /// The figures as of `now`.
    pub fn view(&self, now: Timestamp) -> AccountView {
        let mut state = self.lock();
        state.roll(now);
        let tz = state.tz.clone();
        AccountView {
            budget: self.key.to_string(),
            limit: state.spec.limit_usd,
            allowance: state.allowance_now(),
            spent: state.spent,
            reserved: state.reserved,
            remaining: state
                .allowance_now()
                .saturating_sub(state.spent.saturating_add(state.reserved)),
            period_start: period::display_in(state.window.start, &tz),
            resets_at: state.window.end.map(|t| period::display_in(t, &tz)),
            enforcement: state.spec.enforcement,
        }
    }

    /// Spend of the current period, for the state file.
    pub(crate) fn spent_in_period(&self, now: Timestamp) -> (Timestamp, MicroUsd) {
        let mut state = self.lock();
        state.roll(now);
        (state.window.start, state.spent)
    }
}

impl AccountState {
    /// Starts a new period when `now` has left the current one.
    fn roll(&mut self, now: Timestamp) {
        if self.window.contains(now) {
            return;
        }
        if let Ok(window) = period::window(self.spec.period, &self.tz, now) {
            self.window = window;
            self.spent = MicroUsd::ZERO;
            self.asking = None;
            self.denied = None;
            // Requests in flight settle into the new period; their holds carry over.
        }
    }
}

impl Reservation {
    /// The amount held.
    pub fn amount(&self) -> MicroUsd {
        self.amount
    }

    /// The account it holds money in.
    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }

    /// Holds `more` on top, if the allowance has it: a stream running past its reservation.
    pub fn extend(&mut self, more: MicroUsd, now: Timestamp) -> bool {
        let mut state = self.account.lock();
        state.roll(now);
        if state.spent.saturating_add(state.reserved).saturating_add(more) > state.allowance_now() {
            if !state.budget_spent() {
                let wanted = more.max(state.slice);
                state.ask(&self.account.key, wanted);
            }
            return false;
        }
        state.reserved = state.reserved.saturating_add(more);
        self.amount = self.amount.saturating_add(more);
        true
    }

    /// Replaces the hold by the real cost. A request that straddles a period boundary is
    /// billed to the period in which it settles.
    pub fn settle(mut self, cost: MicroUsd, now: Timestamp) {
        let amount = std::mem::replace(&mut self.amount, MicroUsd::ZERO);
        let mut state = self.account.lock();
        state.reserved = state.reserved.saturating_sub(amount);
        state.roll(now);
        state.spent = state.spent.saturating_add(cost);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.amount > MicroUsd::ZERO {
            let mut state = self.account.lock();
            state.reserved = state.reserved.saturating_sub(self.amount);
        }
    }
}

/// Every budget of the active config, kept across reloads so spend and holds survive them.
#[derive(Debug, Default)]
pub struct Budgets {
    accounts: Mutex<HashMap<ObjectKey, Arc<Account>>>,
    /// Where accounts send asks (cluster mode).
    asker: Mutex<Option<Asker>>,
}

/// A budget's time zone is unknown (validation should have refused it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("budget {0}: unknown time zone {1:?}")]
pub struct UnknownTimeZone(pub ObjectKey, pub String);

impl Budgets {
    /// Sends every account's asks to `asker` from now on (cluster mode).
    pub fn set_asker(&self, asker: Asker) {
        let accounts = self.accounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for account in accounts.values() {
            account.lock().asker = Some(asker.clone());
        }
        *self.asker.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(asker);
    }

    /// Brings the accounts in line with a config: new budgets open, changed specs apply,
    /// removed budgets close. Spend of a kept budget stays.
    pub fn apply(&self, configs: &[BudgetConfig], now: Timestamp) -> Result<(), UnknownTimeZone> {
        let asker = self
            .asker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut accounts = self.accounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = HashMap::with_capacity(configs.len());
        for config in configs {
            let tz = TimeZone::get(&config.spec.time_zone)
                .map_err(|_| UnknownTimeZone(config.key.clone(), config.spec.time_zone.clone()))?;
            let window = period::window(config.spec.period, &tz, now)
                .map_err(|_| UnknownTimeZone(config.key.clone(), config.spec.time_zone.clone()))?;
            let account = match accounts.get(&config.key) {
                Some(existing) => {
                    let mut state = existing.lock();
                    let period_changed = state.spec.period != config.spec.period || state.tz != tz;
                    state.spec = config.spec.clone();
                    if period_changed {
                        state.tz = tz;
                        state.window = window;
                    }
                    state.roll(now);
                    state.grant(config.allowance, config.allowance_period_start, config.exhausted);
                    state.asker.clone_from(&asker);
                    drop(state);
                    existing.bump();
                    existing.clone()
                }
                None => {
                    let mut state = AccountState {
                        spec: config.spec.clone(),
                        tz,
                        window,
                        allowance: MicroUsd::ZERO,
                        grant_period: None,
                        exhausted: false,
                        spent: MicroUsd::ZERO,
                        reserved: MicroUsd::ZERO,
                        slice: MicroUsd::ZERO,
                        asker: asker.clone(),
                        asking: None,
                        denied: None,
                    };
                    state.grant(config.allowance, config.allowance_period_start, config.exhausted);
                    Arc::new(Account {
                        key: config.key.clone(),
                        state: Mutex::new(state),
                        changed: tokio::sync::Notify::new(),
                        generation: std::sync::atomic::AtomicU64::new(0),
                    })
                }
            };
            next.insert(config.key.clone(), account);
        }
        *accounts = next;
        Ok(())
    }

    /// The account of a budget.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Account>> {
        self.accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Every account, sorted by name.
    pub fn all(&self) -> Vec<Arc<Account>> {
        let accounts = self.accounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all: Vec<_> = accounts.values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }
}

#[cfg(test)]
mod tests;
