//! Rate limits: token buckets per route, per user and per backend, and per-backend concurrency.
//!
//! Request buckets are charged one per request. Token buckets are charged an estimate before
//! the call (prompt tokens plus the capped completion allowance) and corrected with the real
//! usage when the answer ends ([`Charge::settle`]). A refusal says how long until the request
//! would pass, which becomes a true `Retry-After`.

pub mod bucket;
pub mod concurrency;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use sluice_crds::{BackendLimits, LimitShare, PerUserLimit};
use tokio::time::Instant;

pub use bucket::{BucketLevel, TokenBucket};
pub use concurrency::{ConcurrencyLevel, ConcurrencyLimit, Permit, Priority, Saturated};

/// Users tracked before idle ones (whose buckets refilled completely) are forgotten.
const MAX_TRACKED_USERS: usize = 10_000;
/// The name limits use for requests that name no user: they share one set of buckets.
pub const ANONYMOUS: &str = "-";

/// A limit said no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{limit} exhausted; retry in {}s", retry_after.as_secs_f64().ceil())]
pub struct Refusal {
    /// Which limit, in words: `route team-a/chat requests per minute`.
    pub limit: String,
    /// How long until the request would pass.
    pub retry_after: Duration,
}

/// One bucket and what one request costs in it.
#[derive(Debug, Clone)]
struct Entry {
    bucket: Arc<TokenBucket>,
    units: u64,
    name: Arc<str>,
    tokens: bool,
}

/// Charges taken on admission; token charges are corrected by [`Charge::settle`].
#[derive(Debug, Default)]
pub struct Charge {
    token_buckets: Vec<Arc<TokenBucket>>,
    estimate: u64,
}

impl Charge {
    /// Corrects the token charges to the real usage; `None` (nothing was used, e.g. a failed
    /// request or a cache hit) returns the whole estimate.
    pub fn settle(self, actual: Option<u64>, now: Instant) {
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let delta = signed(actual.unwrap_or(0)).saturating_sub(signed(self.estimate));
        for bucket in &self.token_buckets {
            bucket.adjust(delta, now);
        }
    }
}

/// Takes every entry or none; a refusal waits for the slowest of the buckets that said no.
fn take_all(entries: &[Entry], now: Instant) -> Result<(), Refusal> {
    for (i, entry) in entries.iter().enumerate() {
        if let Err(first_wait) = entry.bucket.take(entry.units, now) {
            for taken in &entries[..i] {
                taken.bucket.give_back(taken.units, now);
            }
            // The truthful wait is the longest over all buckets, not just the first to refuse.
            let (mut wait, mut limit) = (first_wait, &entry.name);
            for other in &entries[i + 1..] {
                let w = other.bucket.wait_for(other.units, now);
                if w > wait {
                    (wait, limit) = (w, &other.name);
                }
            }
            return Err(Refusal {
                limit: limit.to_string(),
                retry_after: wait,
            });
        }
    }
    Ok(())
}

fn charge_of(entries: Vec<Entry>, estimate: u64) -> Charge {
    Charge {
        token_buckets: entries.into_iter().filter(|e| e.tokens).map(|e| e.bucket).collect(),
        estimate,
    }
}

/// Requests and tokens per minute: one pair of buckets, named once for refusals.
#[derive(Debug)]
struct RateBuckets {
    requests: Option<(Arc<TokenBucket>, Arc<str>)>,
    tokens: Option<(Arc<TokenBucket>, Arc<str>)>,
}

impl RateBuckets {
    fn new(who: &str, requests_per_minute: Option<u32>, tokens_per_minute: Option<u32>) -> Self {
        let named = |n: u32, what: &str| (Arc::new(TokenBucket::per_minute(n)), Arc::from(format!("{who} {what}")));
        Self {
            requests: requests_per_minute.map(|n| named(n, "requests per minute")),
            tokens: tokens_per_minute.map(|n| named(n, "tokens per minute")),
        }
    }

    fn entries(&self, tokens: u64, out: &mut Vec<Entry>) {
        if let Some((bucket, name)) = &self.requests {
            out.push(Entry {
                bucket: bucket.clone(),
                units: 1,
                name: name.clone(),
                tokens: false,
            });
        }
        if let Some((bucket, name)) = &self.tokens {
            out.push(Entry {
                bucket: bucket.clone(),
                units: tokens,
                name: name.clone(),
                tokens: true,
            });
        }
    }

    fn buckets(&self) -> impl Iterator<Item = &Arc<TokenBucket>> {
        self.requests.iter().chain(self.tokens.iter()).map(|(b, _)| b)
    }
}

/// The limits of one route: its share of the route-wide rates and the per-user rates.
#[derive(Debug)]
pub struct RouteLimits {
    shared: RateBuckets,
    per_user: Option<PerUserLimit>,
    users: Mutex<HashMap<String, Arc<UserBuckets>>>,
}

#[derive(Debug)]
struct UserBuckets {
    rate: RateBuckets,
    daily: Option<(Arc<TokenBucket>, Arc<str>)>,
}

impl UserBuckets {
    fn is_idle(&self, now: Instant) -> bool {
        self.rate
            .buckets()
            .chain(self.daily.iter().map(|(b, _)| b))
            .all(|b| b.is_full(now))
    }
}

/// Levels of a route's buckets, for `/config`.
#[derive(Debug, Clone)]
pub struct RouteLimitsLevel {
    /// Route requests per minute.
    pub requests: Option<BucketLevel>,
    /// Route tokens per minute.
    pub tokens: Option<BucketLevel>,
    /// Users with buckets in memory.
    pub users_tracked: usize,
}

impl RouteLimits {
    /// Limits for `route` with this sidecar's `share` of the route-wide rates.
    pub fn new(route: String, share: LimitShare, per_user: Option<PerUserLimit>) -> Self {
        Self {
            shared: RateBuckets::new(
                &format!("route {route}"),
                share.requests_per_minute,
                share.tokens_per_minute,
            ),
            per_user,
            users: Mutex::new(HashMap::new()),
        }
    }

    /// These limits with a new `share` (the operator moved shares after demand): a new bucket
    /// holds at most what the old one had left, so a change of share never hands out a fresh
    /// minute's worth; per-user buckets carry over while the per-user rates are the same.
    pub fn reshared(&self, route: String, share: LimitShare, per_user: Option<PerUserLimit>, now: Instant) -> Self {
        let next = Self::new(route, share, per_user);
        carry_level(self.shared.requests.as_ref(), next.shared.requests.as_ref(), now);
        carry_level(self.shared.tokens.as_ref(), next.shared.tokens.as_ref(), now);
        if per_user == self.per_user {
            let users = self
                .users
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            *next.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = users;
        }
        next
    }

    /// Admits one request of about `tokens` tokens for `user`, or says which limit refused
    /// and for how long.
    pub fn admit(&self, user: &str, tokens: u64, now: Instant) -> Result<Charge, Refusal> {
        let mut entries = Vec::with_capacity(5);
        self.shared.entries(tokens, &mut entries);
        if let Some(buckets) = self.user(user, now) {
            buckets.rate.entries(tokens, &mut entries);
            if let Some((daily, name)) = &buckets.daily {
                entries.push(Entry {
                    bucket: daily.clone(),
                    units: 1,
                    name: name.clone(),
                    tokens: false,
                });
            }
        }
        take_all(&entries, now)?;
        Ok(charge_of(entries, tokens))
    }

    /// Whether admission needs a token estimate (a route or per-user token limit exists).
    pub fn counts_tokens(&self) -> bool {
        self.shared.tokens.is_some() || self.per_user.is_some_and(|p| p.tokens_per_minute.is_some())
    }

    /// Bucket levels now.
    pub fn level(&self, now: Instant) -> RouteLimitsLevel {
        RouteLimitsLevel {
            requests: self.shared.requests.as_ref().map(|(b, _)| b.level(now)),
            tokens: self.shared.tokens.as_ref().map(|(b, _)| b.level(now)),
            users_tracked: self.users.lock().map(|u| u.len()).unwrap_or(0),
        }
    }

    fn user(&self, user: &str, now: Instant) -> Option<Arc<UserBuckets>> {
        let limits = self.per_user?;
        let mut users = self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = users.get(user) {
            return Some(found.clone());
        }
        if users.len() >= MAX_TRACKED_USERS {
            // Forgetting a user whose buckets are full changes nothing for that user.
            users.retain(|_, b| !b.is_idle(now));
        }
        let who = format!("user {user:?}");
        let buckets = Arc::new(UserBuckets {
            rate: RateBuckets::new(&who, limits.requests_per_minute, limits.tokens_per_minute),
            daily: limits.requests_per_day.map(|n| {
                (
                    Arc::new(TokenBucket::per_day(n)),
                    Arc::from(format!("{who} requests per day")),
                )
            }),
        });
        users.insert(user.to_owned(), buckets.clone());
        Some(buckets)
    }
}

/// The limits of one backend in this sidecar.
#[derive(Debug)]
pub struct BackendLimiter {
    rate: RateBuckets,
    concurrency: Option<Arc<ConcurrencyLimit>>,
}

/// Levels of a backend's limits, for `/config`.
#[derive(Debug, Clone, Copy)]
pub struct BackendLimitsLevel {
    /// Requests per minute.
    pub requests: Option<BucketLevel>,
    /// Tokens per minute.
    pub tokens: Option<BucketLevel>,
    /// Concurrency.
    pub concurrency: Option<ConcurrencyLevel>,
}

impl BackendLimiter {
    /// Limits for backend `name`.
    pub fn new(name: String, limits: Option<BackendLimits>) -> Self {
        let limits = limits.unwrap_or_default();
        Self {
            rate: RateBuckets::new(
                &format!("backend {name}"),
                limits.requests_per_minute,
                limits.tokens_per_minute,
            ),
            concurrency: limits.max_concurrency.map(|n| Arc::new(ConcurrencyLimit::new(n))),
        }
    }

    /// Whether the backend has a token limit, so attempts need a token estimate.
    pub fn counts_tokens(&self) -> bool {
        self.rate.tokens.is_some()
    }

    /// Charges one attempt of about `tokens` tokens against the backend's rates.
    pub fn admit(&self, tokens: u64, now: Instant) -> Result<Charge, Refusal> {
        let mut entries = Vec::with_capacity(2);
        self.rate.entries(tokens, &mut entries);
        take_all(&entries, now)?;
        Ok(charge_of(entries, tokens))
    }

    /// Takes a concurrency slot, queueing by priority until `deadline`; `None` when uncapped.
    pub async fn slot(&self, priority: Priority, deadline: Instant) -> Result<Option<Permit>, Saturated> {
        match &self.concurrency {
            Some(limit) => limit.acquire(priority, deadline).await.map(Some),
            None => Ok(None),
        }
    }

    /// Levels now.
    pub fn level(&self, now: Instant) -> BackendLimitsLevel {
        BackendLimitsLevel {
            requests: self.rate.requests.as_ref().map(|(b, _)| b.level(now)),
            tokens: self.rate.tokens.as_ref().map(|(b, _)| b.level(now)),
            concurrency: self.concurrency.as_ref().map(|c| c.level()),
        }
    }
}

#[cfg(test)]
mod tests;

/// Lowers the full bucket `new` to what `old` has left now, when both exist.
fn carry_level(old: Option<&(Arc<TokenBucket>, Arc<str>)>, new: Option<&(Arc<TokenBucket>, Arc<str>)>, now: Instant) {
    let (Some((old, _)), Some((new, _))) = (old, new) else {
        return;
    };
    let left = old.level(now).available;
    let full = new.level(now).capacity;
    if left < full {
        // Whole units: a fraction refills within the second anyway.
        new.adjust((full - left).ceil() as i64, now);
    }
}
