//! The namespaces' usage ledgers as loaded or last persisted, the reports waiting to be applied
//! to them, and the one-writer-at-a-time lock of their persistence. Each collection has its own
//! lock, never held across an await; the loading and writing are in [`crate::usage`].

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Mutex, MutexGuard, PoisonError},
};

use sluice_crds::{UsageReport, control::PodIdentity};
use tokio::sync::oneshot;

use crate::usage::ledger::{AcceptedSpec, Ledger};

/// A usage report waiting for the next status write, with whom to tell.
#[derive(Debug)]
pub struct PendingReport {
    /// The pod, from its token.
    pub pod: PodIdentity,
    /// The report.
    pub report: UsageReport,
    /// Answered with the pod's highest persisted sequence, or why it failed.
    pub reply: oneshot::Sender<Result<u64, String>>,
}

/// A namespace's ledger as last loaded or persisted.
#[derive(Debug, Default)]
pub struct NamespaceLedger {
    /// The figures.
    pub ledger: Ledger,
    /// The ConfigMap's resourceVersion it was read or written at; `None` when it does not exist yet.
    pub resource_version: Option<String>,
    /// Changed in memory (grants) since the last write.
    pub dirty: bool,
}

/// Every loaded ledger and the reports queued for them.
#[derive(Debug, Default)]
pub struct Ledgers {
    ledgers: Mutex<HashMap<String, NamespaceLedger>>,
    pending: Mutex<BTreeMap<String, Vec<PendingReport>>>,
    /// One ledger write at a time (the flusher and reconciles that must persist at once).
    pub flush_lock: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under this lock leaves maps that are still consistent enough to serve.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ledgers {
    /// Whether `namespace`'s ledger is loaded.
    pub fn contains(&self, namespace: &str) -> bool {
        lock(&self.ledgers).contains_key(namespace)
    }

    /// Keeps `loaded` unless the namespace's ledger was loaded meanwhile.
    pub fn insert_if_absent(&self, namespace: &str, loaded: NamespaceLedger) {
        lock(&self.ledgers).entry(namespace.to_owned()).or_insert(loaded);
    }

    /// Forgets a namespace's ledger (it is reloaded when next needed).
    pub fn remove(&self, namespace: &str) {
        lock(&self.ledgers).remove(namespace);
    }

    /// Reads a loaded ledger.
    pub fn read<R>(&self, namespace: &str, f: impl FnOnce(&Ledger) -> R) -> Option<R> {
        lock(&self.ledgers).get(namespace).map(|l| f(&l.ledger))
    }

    /// Changes a loaded ledger (`f` runs under the lock: it must not block).
    pub fn update<R>(&self, namespace: &str, f: impl FnOnce(&mut NamespaceLedger) -> R) -> Option<R> {
        lock(&self.ledgers).get_mut(namespace).map(f)
    }

    /// Records the spec of an accepted generation; returns whether the record changed.
    pub fn record_accepted(&self, namespace: &str, name: &str, record: AcceptedSpec) -> bool {
        self.update(namespace, |l| {
            if l.ledger.accepted.get(name) == Some(&record) {
                return false;
            }
            l.ledger.accepted.insert(name.to_owned(), record);
            l.dirty = true;
            true
        })
        .unwrap_or(false)
    }

    /// The recorded accepted generation of a route.
    pub fn recorded_accepted(&self, namespace: &str, name: &str) -> Option<AcceptedSpec> {
        self.read(namespace, |l| l.accepted.get(name).cloned()).flatten()
    }

    /// Forgets the recorded accepted generation of a deleted route.
    pub fn forget_accepted(&self, namespace: &str, name: &str) {
        self.update(namespace, |l| {
            if l.ledger.accepted.remove(name).is_some() {
                l.dirty = true;
            }
        });
    }

    /// Takes back a deleted pod's unspent allowances; returns whether there were any.
    pub fn reclaim(&self, namespace: &str, uid: &str) -> bool {
        self.update(namespace, |l| {
            let reclaimed = l.ledger.reclaim(uid);
            l.dirty |= reclaimed;
            reclaimed
        })
        .unwrap_or(false)
    }

    /// Ends the sizing window of every ledger.
    pub fn close_sizing_windows(&self) {
        for l in lock(&self.ledgers).values_mut() {
            l.ledger.close_sizing_window();
        }
    }

    /// Queues a report for the next write; the receiver gets the pod's persisted sequence.
    pub fn submit(&self, pod: PodIdentity, report: UsageReport) -> oneshot::Receiver<Result<u64, String>> {
        let (reply, rx) = oneshot::channel();
        let namespace = pod.namespace.clone();
        lock(&self.pending)
            .entry(namespace)
            .or_default()
            .push(PendingReport { pod, report, reply });
        rx
    }

    /// Takes the reports queued for `namespace`.
    pub fn take_pending(&self, namespace: &str) -> Vec<PendingReport> {
        lock(&self.pending).remove(namespace).unwrap_or_default()
    }

    /// The namespaces with queued reports or changed ledgers.
    pub fn to_flush(&self) -> BTreeSet<String> {
        let mut set: BTreeSet<String> = lock(&self.pending).keys().cloned().collect();
        set.extend(
            lock(&self.ledgers)
                .iter()
                .filter(|(_, l)| l.dirty)
                .map(|(ns, _)| ns.clone()),
        );
        set
    }
}
