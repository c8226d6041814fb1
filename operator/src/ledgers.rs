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

/// How long after a pod's deletion a report of it may still arrive. A deleted pod's bound
/// token stops authenticating: the API server's TokenReview refuses a token whose pod is gone,
/// and the operator trusts a review for at most 30 s, counted from before it asked
/// (`control_server::auth`); a report must then be queued within [`AUTHENTICATED_TO_QUEUED`]
/// of being authenticated, or it is refused with 503 and sent again (and authenticated again).
/// So every report of a pod is queued within 30 + 20 = 50 s of the pod's deletion, and this
/// leaves 10 s over that, for the API server's own view of pods (which the review consults) to
/// catch up with the deletion; the watch event that notes the deletion comes after it, which
/// only makes the wait longer. A deleted pod's allowance is taken back once its final report
/// is applied, or after this; its records are removed after this ([`Ledgers::reclaim_due`]).
pub const RECLAIM_WAIT: Duration = Duration::from_secs(60);

/// How long the control server may take from authenticating a usage report to queueing it
/// (reading its body, checking its scope); beyond that it is refused, to be sent again.
pub const AUTHENTICATED_TO_QUEUED: Duration = Duration::from_secs(20);

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

/// A deleted pod whose records are still in its namespace's ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gone {
    /// When its deletion was noted.
    at: Instant,
    /// Its allowance was taken back.
    reclaimed: bool,
}

/// A ledger ConfigMap that exists and is not a ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Why it cannot be read.
    pub reason: String,
    /// When the operator first found it so.
    pub since: jiff::Timestamp,
}

/// What [`Ledgers::reclaim_due`] did to the ledger of a namespace.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Departures {
    /// Pods whose allowance was taken back, each with whether its final report is missing.
    pub reclaimed: Vec<(String, bool)>,
    /// Pods whose records were removed.
    pub forgotten: Vec<String>,
    /// The deletion notes as they were, to put back when the ledger write fails.
    notes: Vec<(String, Instant)>,
}

/// Every loaded ledger and the reports queued for them.
#[derive(Debug, Default)]
pub struct Ledgers {
    ledgers: Mutex<HashMap<String, NamespaceLedger>>,
    pending: Mutex<BTreeMap<String, Vec<PendingReport>>>,
    /// Per namespace, the deleted pods whose records are not removed yet.
    gone: Mutex<BTreeMap<String, BTreeMap<String, Gone>>>,
    /// Per namespace whose ledger ConfigMap cannot be read: why, and since when.
    unreadable: Mutex<BTreeMap<String, Unreadable>>,
    /// The namespaces whose ledger was checked for pods that went while no operator watched.
    swept: Mutex<BTreeSet<String>>,
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

    /// Records that a pod was deleted `at`: its allowance is taken back and its records removed
    /// by [`Self::reclaim_due`].
    pub fn pod_gone(&self, namespace: &str, uid: &str, at: Instant) {
        lock(&self.gone)
            .entry(namespace.to_owned())
            .or_default()
            .entry(uid.to_owned())
            .or_insert(Gone { at, reclaimed: false });
    }

    /// Whether a pod's deletion is noted.
    pub fn is_gone(&self, namespace: &str, uid: &str) -> bool {
        lock(&self.gone)
            .get(namespace)
            .is_some_and(|pods| pods.contains_key(uid))
    }

    /// Puts back the deletion notes [`Self::reclaim_due`] took, when what it did was not
    /// persisted (the ledger is reloaded as the API server holds it).
    pub fn restore_gone(&self, namespace: &str, departures: Departures) {
        let mut gone = lock(&self.gone);
        let pods = gone.entry(namespace.to_owned()).or_default();
        for (uid, at) in departures.notes {
            pods.insert(uid, Gone { at, reclaimed: false });
        }
    }

    /// For every deleted pod of `ledger`'s namespace: takes back its allowance once its final
    /// report is applied or [`RECLAIM_WAIT`] is over, and removes its records
    /// ([`Ledger::forget`]) once [`RECLAIM_WAIT`] is over. Call it with the reports queued up
    /// to `now` just applied (`now` read before they were taken).
    ///
    /// Why a removed record never lets a report count twice: a report is applied at most once
    /// because its sequence is compared with the pod's record; without the record it would be
    /// applied again. Every report of a pod is queued within 50 s of the pod's deletion
    /// (see [`RECLAIM_WAIT`]: its token no longer authenticates after that), and a deletion is
    /// noted no earlier than it happened, so once `now` is [`RECLAIM_WAIT`] past the note every
    /// report of the pod that will ever be queued was queued before `now`, and was applied
    /// (or was found a duplicate) by this flush or an earlier one, before the record goes. A
    /// write that fails puts the notes back ([`Self::restore_gone`]) and the ledger is reloaded,
    /// records included. After an operator restart the notes are gone with the process:
    /// [`crate::usage::sweep`] notes again, at the time it runs, the pods of a loaded ledger that
    /// no longer exist; the new process never authenticated their tokens before, and cannot
    /// now.
    pub fn reclaim_due(&self, namespace: &str, ledger: &mut NamespaceLedger, now: Instant) -> Departures {
        let mut gone = lock(&self.gone);
        let mut departures = Departures::default();
        let Some(pods) = gone.get_mut(namespace) else {
            return departures;
        };
        pods.retain(|uid, note| {
            let waited = now.saturating_duration_since(note.at);
            let before = *note;
            if !note.reclaimed {
                let unreported = match ledger.ledger.reclaim_due(uid, waited, RECLAIM_WAIT) {
                    Reclaim::Wait => return true,
                    Reclaim::Now => false,
                    Reclaim::Unreported => true,
                };
                ledger.dirty |= ledger.ledger.reclaim(uid);
                note.reclaimed = true;
                departures.reclaimed.push((uid.clone(), unreported));
                departures.notes.push((uid.clone(), before.at));
            }
            if waited < RECLAIM_WAIT {
                return true;
            }
            ledger.dirty |= ledger.ledger.forget(uid);
            departures.forgotten.push(uid.clone());
            if before.reclaimed {
                departures.notes.push((uid.clone(), before.at));
            }
            false
        });
        if pods.is_empty() {
            gone.remove(namespace);
        }
        departures
    }

    /// The namespaces with a deleted pod whose allowance can be taken back or whose records can
    /// be removed now.
    fn reclaims_due(&self, now: Instant) -> BTreeSet<String> {
        // Copied out first: `reclaim_due` takes these locks the other way round.
        let gone: Vec<(String, String, Gone)> = lock(&self.gone)
            .iter()
            .flat_map(|(ns, pods)| pods.iter().map(move |(uid, note)| (ns.clone(), uid.clone(), *note)))
            .collect();
        let ledgers = lock(&self.ledgers);
        gone.into_iter()
            .filter(|(ns, uid, note)| {
                let waited = now.saturating_duration_since(note.at);
                if waited >= RECLAIM_WAIT {
                    return true;
                }
                // A namespace not loaded yet is loaded by its flush.
                !note.reclaimed
                    && ledgers
                        .get(ns)
                        .is_none_or(|l| l.ledger.reclaim_due(uid, waited, RECLAIM_WAIT) != Reclaim::Wait)
            })
            .map(|(ns, _, _)| ns)
            .collect()
    }

    /// Records that `namespace`'s ledger ConfigMap cannot be read for `reason`; returns since
    /// when it cannot (the first time it was found so, while it stays unreadable).
    pub fn mark_unreadable(&self, namespace: &str, reason: String) -> Unreadable {
        lock(&self.unreadable)
            .entry(namespace.to_owned())
            .and_modify(|u| u.reason.clone_from(&reason))
            .or_insert_with(|| Unreadable {
                reason,
                since: jiff::Timestamp::now(),
            })
            .clone()
    }

    /// Records that `namespace`'s ledger could be loaded; returns whether it could not before.
    pub fn mark_readable(&self, namespace: &str) -> bool {
        lock(&self.unreadable).remove(namespace).is_some()
    }

    /// Why `namespace`'s ledger ConfigMap cannot be read, if it cannot.
    pub fn unreadable(&self, namespace: &str) -> Option<Unreadable> {
        lock(&self.unreadable).get(namespace).cloned()
    }

    /// The loaded namespaces not checked yet for pods that went while no operator watched.
    pub fn unswept(&self) -> Vec<String> {
        let swept = lock(&self.swept);
        lock(&self.ledgers)
            .keys()
            .filter(|ns| !swept.contains(*ns))
            .cloned()
            .collect()
    }

    /// Records that `namespace`'s ledger was checked for pods that went unseen.
    pub fn mark_swept(&self, namespace: &str) {
        lock(&self.swept).insert(namespace.to_owned());
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
