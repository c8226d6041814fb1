//! Usage not yet reported to the operator, summed per route × backend × model × user × outcome.
//!
//! In cluster mode a [`Journal`] is attached: each delta is written to it under the same lock
//! that merges it, before the request's answer completes, and [`UsageLedger::cut`] starts the
//! journal's next generation under that lock too, so a generation holds exactly the deltas
//! one cut took (see `crate::control::journal`).

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use sluice_crds::{BackendName, MicroUsd, ModelName, ObjectKey, Outcome, UsageDelta};

use crate::wire::Usage;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    route: ObjectKey,
    backend: BackendName,
    model: ModelName,
    user: Option<String>,
    outcome: Outcome,
}

/// One finished request, as the ledger counts it.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The route.
    pub route: &'a ObjectKey,
    /// The backend that answered or failed last.
    pub backend: &'a BackendName,
    /// The upstream model.
    pub model: &'a ModelName,
    /// The user, when named.
    pub user: Option<&'a str>,
    /// How it ended.
    pub outcome: Outcome,
    /// Tokens used.
    pub usage: Usage,
    /// Money spent.
    pub cost: MicroUsd,
    /// Attempts moved to another backend.
    pub failovers: u32,
}

/// Where every delta added to the ledger is also written at once.
pub trait Journal: Send + std::fmt::Debug {
    /// Records one delta.
    fn append(&mut self, delta: &UsageDelta);
    /// Starts the next generation; returns its number. Everything appended before is in the
    /// generations below it.
    fn rotate(&mut self) -> u64;
}

/// Deltas accumulated since the last [`UsageLedger::take`].
#[derive(Debug, Default)]
pub struct UsageLedger {
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    deltas: HashMap<Key, UsageDelta>,
    journal: Option<Box<dyn Journal>>,
}

impl UsageLedger {
    /// Writes every delta added from now on to `journal` too.
    pub fn attach(&self, journal: Box<dyn Journal>) {
        self.lock().journal = Some(journal);
    }

    /// Adds one request (and journals it).
    pub fn add(&self, entry: &Entry<'_>) {
        let delta = UsageDelta {
            route: entry.route.clone(),
            backend: entry.backend.clone(),
            model: entry.model.clone(),
            user: entry.user.map(str::to_owned),
            outcome: entry.outcome,
            requests: 1,
            input_tokens: entry.usage.input,
            cached_input_tokens: entry.usage.cached_input,
            output_tokens: entry.usage.output,
            cache_write_input_tokens: entry.usage.cache_write_input,
            cost: entry.cost,
            failovers: u64::from(entry.failovers),
            estimated: entry.usage.estimated,
        };
        let mut pending = self.lock();
        if let Some(journal) = pending.journal.as_mut() {
            journal.append(&delta);
        }
        Self::merge_into(&mut pending.deltas, delta);
    }

    /// Everything added since the last call, leaving the ledger empty.
    pub fn take(&self) -> Vec<UsageDelta> {
        self.cut().0
    }

    /// Like [`take`](Self::take), and starts the journal's next generation in the same step
    /// when there was anything: its number comes back (`None`: nothing taken, or no journal).
    pub fn cut(&self) -> (Vec<UsageDelta>, Option<u64>) {
        let (drained, generation) = {
            let mut pending = self.lock();
            if pending.deltas.is_empty() {
                return (Vec::new(), None);
            }
            let drained = std::mem::take(&mut pending.deltas);
            (drained, pending.journal.as_mut().map(|j| j.rotate()))
        };
        (Self::sorted(drained), generation)
    }

    /// Puts deltas back (a report that could not be handed over, or a journal replayed at
    /// start); they are not journalled again.
    pub fn restore(&self, deltas: Vec<UsageDelta>) {
        let mut pending = self.lock();
        for delta in deltas {
            Self::merge_into(&mut pending.deltas, delta);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sorted(drained: HashMap<Key, UsageDelta>) -> Vec<UsageDelta> {
        let mut deltas: Vec<UsageDelta> = drained.into_values().collect();
        deltas.sort_by(|a, b| {
            (&a.route, &a.backend, &a.model, &a.user, a.outcome)
                .cmp(&(&b.route, &b.backend, &b.model, &b.user, b.outcome))
        });
        deltas
    }

    fn merge_into(pending: &mut HashMap<Key, UsageDelta>, delta: UsageDelta) {
        let key = Key {
            route: delta.route.clone(),
            backend: delta.backend.clone(),
            model: delta.model.clone(),
            user: delta.user.clone(),
            outcome: delta.outcome,
        };
        match pending.get_mut(&key) {
            Some(sum) => {
                sum.requests += delta.requests;
                sum.input_tokens += delta.input_tokens;
                sum.cached_input_tokens += delta.cached_input_tokens;
                sum.output_tokens += delta.output_tokens;
                sum.cache_write_input_tokens += delta.cache_write_input_tokens;
                sum.cost += delta.cost;
                sum.failovers += delta.failovers;
                sum.estimated |= delta.estimated;
            }
            None => {
                pending.insert(key, delta);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_crds::Tokens;

    #[test]
    fn sums_requests_per_key_and_empties_on_take() {
        let ledger = UsageLedger::default();
        let route = ObjectKey {
            namespace: "a".into(),
            name: "chat".into(),
        };
        let backend = BackendName::try_from("openai").unwrap();
        let model = ModelName::try_from("gpt-4.1").unwrap();
        let usage = Usage {
            input: Tokens(10),
            cached_input: Tokens(2),
            cache_write_input: Tokens(3),
            output: Tokens(5),
            estimated: false,
        };
        let entry = Entry {
            route: &route,
            backend: &backend,
            model: &model,
            user: Some("ann"),
            outcome: Outcome::Ok,
            usage,
            cost: MicroUsd::new(7),
            failovers: 1,
        };
        ledger.add(&entry);
        ledger.add(&Entry {
            usage: Usage {
                estimated: true,
                ..usage
            },
            ..entry.clone()
        });
        ledger.add(&Entry {
            user: Some("bob"),
            ..entry.clone()
        });
        let deltas = ledger.take();
        assert_eq!(deltas.len(), 2);
        let ann = &deltas[0];
        assert_eq!(
            (ann.requests, ann.input_tokens, ann.output_tokens),
            (2, Tokens(20), Tokens(10))
        );
        assert_eq!((ann.cost, ann.failovers, ann.estimated), (MicroUsd::new(14), 2, true));
        assert_eq!(ann.cache_write_input_tokens, Tokens(6));
        assert!(ledger.take().is_empty());
        ledger.restore(deltas);
        let again = ledger.take();
        assert_eq!(again[0].requests, 2);
        assert_eq!(again[0].cost, MicroUsd::new(14));
    }
}
