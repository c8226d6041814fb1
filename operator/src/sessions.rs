//! The connected sidecars: who is connected, with which labels, what each was last sent and
//! what it acked, and the channel its snapshots go down; and, per pod, every route ever sent to
//! it (what it may report usage for, [`crate::usage::scope`]). Two locks, sessions before sent
//! routes, never held across an await; what to send is decided by [`crate::plan`], and
//! [`Sessions::apply`] only sends it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sluice_crds::{ConfigSnapshot, ConfigVersion, ObjectKey, control::PodIdentity};
use tokio::sync::watch;

use crate::plan::{Sidecar, SidecarPlan};

/// One connected sidecar.
#[derive(Debug)]
struct Session {
    /// Who it is, from its token.
    identity: PodIdentity,
    /// Its pod's labels.
    labels: BTreeMap<String, String>,
    /// Which connection this is (a reconnect replaces an older one).
    conn: u64,
    /// Where its snapshots go.
    tx: watch::Sender<Option<Arc<ConfigSnapshot>>>,
    /// The version last sent.
    desired: Option<ConfigVersion>,
    /// Routes in that version.
    routes: BTreeSet<ObjectKey>,
    /// The version it acked.
    acked: Option<ConfigVersion>,
    /// When the last version was sent, for the push latency metric.
    pushed_at: Option<Instant>,
}

/// A connection just registered.
#[derive(Debug)]
pub struct Registered {
    /// Its id (a reconnect replaces an older one).
    pub conn: u64,
    /// Where its snapshots arrive.
    pub rx: watch::Receiver<Option<Arc<ConfigSnapshot>>>,
    /// The routes of the connection it replaced (their counts change).
    pub replaced: BTreeSet<ObjectKey>,
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Routes whose sidecar counts may have changed.
    pub routes: BTreeSet<ObjectKey>,
    /// How many sidecars were sent a new version.
    pub pushed: u64,
}

/// The connected sidecars by pod UID.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
    /// Per pod UID, every route a snapshot sent to it held, kept across reconnects until the
    /// pod is deleted: a sidecar serves a route until it applies a snapshot without it, and
    /// reports that usage afterwards, however long the operator was away meanwhile.
    sent: Mutex<HashMap<String, BTreeSet<ObjectKey>>>,
}

/// What the operator knows of a pod, to judge its usage reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodScope {
    /// Its labels, when it is connected.
    pub labels: Option<BTreeMap<String, String>>,
    /// Every route sent to it (by this replica, since it started leading).
    pub sent: BTreeSet<ObjectKey>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under these locks leaves maps that are still consistent enough to serve.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        lock(&self.inner)
    }

    /// Registers a connected sidecar, replacing an older connection of the same pod.
    pub fn register(&self, identity: PodIdentity, labels: BTreeMap<String, String>) -> Registered {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let conn = NEXT.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        let uid = identity.uid.clone();
        let session = Session {
            identity,
            labels,
            conn,
            tx,
            desired: None,
            routes: BTreeSet::new(),
            acked: None,
            pushed_at: None,
        };
        let replaced = self
            .lock()
            .insert(uid, session)
            .map(|old| old.routes)
            .unwrap_or_default();
        Registered { conn, rx, replaced }
    }

    /// Forgets a sidecar whose stream ended, unless a newer connection replaced it; returns the
    /// routes it had.
    pub fn unregister(&self, uid: &str, conn: u64) -> BTreeSet<ObjectKey> {
        let mut sessions = self.lock();
        if sessions.get(uid).is_some_and(|s| s.conn == conn) {
            return sessions.remove(uid).map(|old| old.routes).unwrap_or_default();
        }
        BTreeSet::new()
    }

    /// The connected pod's labels and the routes ever sent to the pod.
    pub fn scope(&self, uid: &str) -> PodScope {
        let labels = self.lock().get(uid).map(|s| s.labels.clone());
        let sent = lock(&self.sent).get(uid).cloned().unwrap_or_default();
        PodScope { labels, sent }
    }

    /// Forgets the routes sent to a deleted pod (its token no longer authenticates).
    pub fn pod_deleted(&self, uid: &str) {
        lock(&self.sent).remove(uid);
    }

    /// How many sidecars are connected.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Records that a sidecar runs `version`: the routes it has, and how long the push took when
    /// this is the version last sent (first ack only).
    pub fn ack(&self, uid: &str, version: ConfigVersion) -> (BTreeSet<ObjectKey>, Option<Duration>) {
        let mut sessions = self.lock();
        let Some(session) = sessions.get_mut(uid) else {
            return (BTreeSet::new(), None);
        };
        let mut latency = None;
        if session.desired.as_ref() == Some(&version)
            && let Some(at) = session.pushed_at.take()
        {
            latency = Some(at.elapsed());
        }
        session.acked = Some(version);
        (session.routes.clone(), latency)
    }

    /// How long the oldest unacknowledged push has waited: the longest any connected sidecar
    /// has gone without acking the version last sent to it; zero when every one has.
    pub fn oldest_unacked(&self, now: Instant) -> Duration {
        self.lock()
            .values()
            .filter_map(|s| s.pushed_at)
            .map(|at| now.saturating_duration_since(at))
            .max()
            .unwrap_or_default()
    }

    /// Updates the labels of a connected pod (they decide which routes select it).
    pub fn relabel(&self, uid: &str, labels: BTreeMap<String, String>) {
        if let Some(s) = self.lock().get_mut(uid) {
            s.labels = labels;
        }
    }

    /// The namespaces with a connected sidecar.
    pub fn namespaces(&self) -> BTreeSet<String> {
        self.lock().values().map(|s| s.identity.namespace.clone()).collect()
    }

    /// The connected sidecars of `namespace`, by UID.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Sidecar> {
        let mut sidecars: Vec<Sidecar> = self
            .lock()
            .values()
            .filter(|s| s.identity.namespace == namespace)
            .map(|s| Sidecar {
                uid: s.identity.uid.clone(),
                name: s.identity.name.clone(),
                labels: s.labels.clone(),
            })
            .collect();
        sidecars.sort_by(|a, b| a.uid.cmp(&b.uid));
        sidecars
    }

    /// How many sidecars run the version last sent, when it has `route`.
    pub fn in_sync(&self, route: &ObjectKey) -> usize {
        self.lock()
            .values()
            .filter(|s| s.routes.contains(route) && s.desired.is_some() && s.acked == s.desired)
            .count()
    }

    /// Sends each sidecar its planned snapshot when its version differs from the one last sent.
    pub fn apply(
        &self,
        namespace: &str,
        plans: Vec<SidecarPlan>,
        mut traced: Option<&mut crate::telemetry::Push>,
    ) -> Applied {
        let mut sessions = self.lock();
        let mut applied = Applied::default();
        for plan in plans {
            let Some(session) = sessions.get_mut(&plan.uid) else {
                continue;
            };
            for c in plan.conflicts {
                tracing::warn!(route = %c, pod = %session.identity.name,
                    "route left out of this pod's config: one of its models is served by an earlier route");
            }
            let snapshot = plan.snapshot;
            if session.desired.as_ref() == Some(&snapshot.version) {
                continue;
            }
            let keys: BTreeSet<ObjectKey> = snapshot.routes.iter().map(|r| r.key.clone()).collect();
            applied.routes.extend(session.routes.iter().cloned());
            applied.routes.extend(keys.iter().cloned());
            tracing::info!(pod = %session.identity.name, namespace, version = %snapshot.version,
                routes = keys.len(), "pushing config");
            session.desired = Some(snapshot.version.clone());
            session.routes = keys;
            session.pushed_at = Some(Instant::now());
            lock(&self.sent)
                .entry(plan.uid.clone())
                .or_default()
                .extend(session.routes.iter().cloned());
            if let Some(push) = traced.as_deref_mut() {
                push.sending(&snapshot.version);
            }
            session.tx.send_replace(Some(Arc::new(snapshot)));
            applied.pushed += 1;
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> PodIdentity {
        PodIdentity {
            namespace: "team-a".into(),
            name: format!("pod-{uid}"),
            uid: uid.into(),
        }
    }

    fn push(sessions: &Sessions, uid: &str) -> ConfigVersion {
        let snapshot = ConfigSnapshot::new(Vec::new(), Vec::new());
        let version = snapshot.version.clone();
        let plan = SidecarPlan {
            uid: uid.into(),
            snapshot,
            conflicts: Vec::new(),
        };
        assert_eq!(sessions.apply("team-a", vec![plan], None).pushed, 1);
        version
    }

    #[test]
    fn the_oldest_unacked_push_is_the_longest_wait_of_a_sidecar_that_has_not_acked() {
        let sessions = Sessions::default();
        assert_eq!(sessions.oldest_unacked(Instant::now()), Duration::ZERO);
        let _a = sessions.register(pod("a"), BTreeMap::new());
        let _b = sessions.register(pod("b"), BTreeMap::new());
        let version = push(&sessions, "a");
        push(&sessions, "b");
        let later = Instant::now() + Duration::from_secs(90);

        assert!(sessions.oldest_unacked(later) >= Duration::from_secs(90));
        sessions.ack("a", version.clone());
        assert!(
            sessions.oldest_unacked(later) >= Duration::from_secs(90),
            "b has not acked"
        );
        sessions.ack("b", version);
        assert_eq!(sessions.oldest_unacked(later), Duration::ZERO);
    }
}
