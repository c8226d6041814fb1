//! The namespaces' usage ledgers as loaded or last persisted, the reports waiting to be applied
//! to them, the deleted pods whose allowance waits for their last report, and the
//! one-writer-at-a-time lock of their persistence. Each collection has its own
//! lock, never held across an await; the loading and writing are in [`crate::usage`].

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use sluice_crds::{UsageReport, control::PodIdentity};
use tokio::sync::oneshot;

use crate::usage::ledger::{AcceptedSpec, Ledger, Reclaim};

/// How long after a pod's deletion a report of it may still arrive: its token is accepted from
/// the review cache for up to 30 s (`control_server::auth`), and a report taken then waits
/// for the next ledger write. A deleted pod's allowance is taken back once its final report is
/// applied, or after this.
pub const RECLAIM_WAIT: Duration = Duration::from_secs(60);

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
    /// Per namespace, the deleted pods whose allowance is not taken back yet, with when they went.
    gone: Mutex<BTreeMap<String, BTreeMap<String, Instant>>>,
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

    /// Records that a pod was deleted `at`: its allowance is taken back by [`Self::reclaim_due`].
    pub fn pod_gone(&self, namespace: &str, uid: &str, at: Instant) {
        lock(&self.gone)
            .entry(namespace.to_owned())
            .or_default()
            .entry(uid.to_owned())
            .or_insert(at);
    }

    /// Takes back the allowance of every deleted pod of `ledger`'s namespace whose time has
    /// come (call it with the namespace's reports just applied); returns them, each with
    /// whether it went without its final report.
    pub fn reclaim_due(&self, namespace: &str, ledger: &mut NamespaceLedger, now: Instant) -> Vec<(String, bool)> {
        let mut gone = lock(&self.gone);
        let Some(pods) = gone.get_mut(namespace) else {
            return Vec::new();
        };
        let mut done = Vec::new();
        pods.retain(|uid, at| {
            let unreported = match ledger
                .ledger
                .reclaim_due(uid, now.saturating_duration_since(*at), RECLAIM_WAIT)
            {
                Reclaim::Wait => return true,
                Reclaim::Now => false,
                Reclaim::Unreported => true,
            };
            ledger.dirty |= ledger.ledger.reclaim(uid);
            done.push((uid.clone(), unreported));
            false
        });
        if pods.is_empty() {
            gone.remove(namespace);
        }
        done
    }

    /// The namespaces with a deleted pod whose allowance can be taken back now.
    fn reclaims_due(&self, now: Instant) -> BTreeSet<String> {
        // Copied out first: `reclaim_due` takes these locks the other way round.
        let gone: Vec<(String, String, Duration)> = lock(&self.gone)
            .iter()
            .flat_map(|(ns, pods)| {
                pods.iter()
                    .map(move |(uid, at)| (ns.clone(), uid.clone(), now.saturating_duration_since(*at)))
            })
            .collect();
        let ledgers = lock(&self.ledgers);
        gone.into_iter()
            .filter(|(ns, uid, waited)| {
                // A namespace not loaded yet is loaded by its flush.
                ledgers
                    .get(ns)
                    .is_none_or(|l| l.ledger.reclaim_due(uid, *waited, RECLAIM_WAIT) != Reclaim::Wait)
            })
            .map(|(ns, _, _)| ns)
            .collect()
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

    /// The namespaces with queued reports, changed ledgers or allowances to take back.
    pub fn to_flush(&self) -> BTreeSet<String> {
        let mut set: BTreeSet<String> = lock(&self.pending).keys().cloned().collect();
        set.extend(self.reclaims_due(Instant::now()));
        set.extend(
            lock(&self.ledgers)
                .iter()
                .filter(|(_, l)| l.dirty)
                .map(|(ns, _)| ns.clone()),
        );
        set
    }
}
