//! The connected sidecars: who is connected, with which labels, what each was last sent and
//! what it acked, and the channel its snapshots go down; and, per pod, every route ever sent to
//! it (what it may report usage for, [`crate::usage::scope`]). Two locks, sessions before sent
//! routes, never held across an await; what to send is decided by [`crate::plan`], and
//! [`Sessions::apply`] only sends it, each distinct snapshot encoded once ([`crate::wire`]).
//!
//! A session also knows the token its stream was opened with, so that the stream's acks are
//! recognised without another TokenReview ([`Sessions::identity_of`]).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sluice_crds::{ConfigVersion, ObjectKey, control::PodIdentity};
use tokio::sync::watch;

use crate::{
    plan::{Sidecar, SidecarPlan},
    token::TokenDigest,
    wire::Pushed,
};

/// What a stream's channel carries: the last snapshot pushed to it, if any.
pub type Latest = Option<Arc<Pushed>>;

/// One connected sidecar.
#[derive(Debug)]
struct Session {
    /// Who it is, from its token.
    identity: PodIdentity,
    /// Its pod's labels.
    labels: BTreeMap<String, String>,
    /// Which connection this is (a reconnect replaces an older one).
    conn: u64,
    /// The token its stream was opened with (reviewed then), until its pod is deleted.
    token: Option<TokenDigest>,
    /// Where its snapshots go.
    tx: watch::Sender<Latest>,
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
    pub rx: watch::Receiver<Latest>,
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

/// The sessions by pod UID, and the UID of each session's token.
#[derive(Debug, Default)]
struct Inner {
    by_uid: HashMap<String, Session>,
    by_token: HashMap<TokenDigest, String>,
}

impl Inner {
    /// Removes the session of `uid`, and its token's entry.
    fn remove(&mut self, uid: &str) -> Option<Session> {
        let old = self.by_uid.remove(uid)?;
        self.forget_token(uid, old.token);
        Some(old)
    }

    fn forget_token(&mut self, uid: &str, token: Option<TokenDigest>) {
        if let Some(token) = token
            && self.by_token.get(&token).is_some_and(|u| u == uid)
        {
            self.by_token.remove(&token);
        }
    }
}

/// The connected sidecars by pod UID.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
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
    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Registers a connected sidecar, replacing an older connection of the same pod; `token` is
    /// the digest of the token its stream was authenticated with.
    pub fn register(
        &self,
        identity: PodIdentity,
        labels: BTreeMap<String, String>,
        token: Option<TokenDigest>,
    ) -> Registered {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let conn = NEXT.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        let uid = identity.uid.clone();
        let session = Session {
            identity,
            labels,
            conn,
            token,
            tx,
            desired: None,
            routes: BTreeSet::new(),
            acked: None,
            pushed_at: None,
        };
        let mut inner = self.lock();
        let replaced = inner.remove(&uid).map(|old| old.routes).unwrap_or_default();
        if let Some(token) = token {
            inner.by_token.insert(token, uid.clone());
        }
        inner.by_uid.insert(uid, session);
        Registered { conn, rx, replaced }
    }

    /// The pod whose live stream was opened with the token of `digest`: the stream's own acks
    /// need no review of their own. Such a token was reviewed when the stream opened, and is
    /// trusted here only while that stream lasts and its pod is not known deleted
    /// ([`Self::revoke_token`]); an ack changes nothing but which version the pod is known to run.
    pub fn identity_of(&self, digest: &TokenDigest) -> Option<PodIdentity> {
        let inner = self.lock();
        let uid = inner.by_token.get(digest)?;
        inner
            .by_uid
            .get(uid)
            .filter(|s| s.token.as_ref() == Some(digest))
            .map(|s| s.identity.clone())
    }

    /// Stops recognising the token of `uid`'s stream (its pod was deleted): its calls are
    /// reviewed again, and refused once the API server no longer authenticates the token.
    pub fn revoke_token(&self, uid: &str) {
        let mut inner = self.lock();
        let Some(token) = inner.by_uid.get_mut(uid).and_then(|s| s.token.take()) else {
            return;
        };
        inner.forget_token(uid, Some(token));
    }

    /// Forgets a sidecar whose stream ended, unless a newer connection replaced it; returns the
    /// routes it had.
    pub fn unregister(&self, uid: &str, conn: u64) -> BTreeSet<ObjectKey> {
        let mut inner = self.lock();
        if inner.by_uid.get(uid).is_some_and(|s| s.conn == conn) {
            return inner.remove(uid).map(|old| old.routes).unwrap_or_default();
        }
        BTreeSet::new()
    }

    /// The connected pod's labels and the routes ever sent to the pod.
    pub fn scope(&self, uid: &str) -> PodScope {
        let labels = self.lock().by_uid.get(uid).map(|s| s.labels.clone());
        let sent = lock(&self.sent).get(uid).cloned().unwrap_or_default();
        PodScope { labels, sent }
    }

    /// Forgets the routes sent to a deleted pod (its token no longer authenticates).
    pub fn pod_deleted(&self, uid: &str) {
        lock(&self.sent).remove(uid);
    }

    /// How many sidecars are connected.
    pub fn len(&self) -> usize {
        self.lock().by_uid.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.lock().by_uid.is_empty()
    }

    /// Records that a sidecar runs `version`: the routes it has, and how long the push took when
    /// this is the version last sent (first ack only).
    pub fn ack(&self, uid: &str, version: ConfigVersion) -> (BTreeSet<ObjectKey>, Option<Duration>) {
        let mut inner = self.lock();
        let Some(session) = inner.by_uid.get_mut(uid) else {
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
            .by_uid
            .values()
            .filter_map(|s| s.pushed_at)
            .map(|at| now.saturating_duration_since(at))
            .max()
            .unwrap_or_default()
    }

    /// Updates the labels of a connected pod (they decide which routes select it).
    pub fn relabel(&self, uid: &str, labels: BTreeMap<String, String>) {
        if let Some(s) = self.lock().by_uid.get_mut(uid) {
            s.labels = labels;
        }
    }

    /// The namespaces with a connected sidecar.
    pub fn namespaces(&self) -> BTreeSet<String> {
        self.lock()
            .by_uid
            .values()
            .map(|s| s.identity.namespace.clone())
            .collect()
    }

    /// The connected sidecars of `namespace`, by UID.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Sidecar> {
        let mut sidecars: Vec<Sidecar> = self
            .lock()
            .by_uid
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
            .by_uid
            .values()
            .filter(|s| s.routes.contains(route) && s.desired.is_some() && s.acked == s.desired)
            .count()
    }

    /// Sends each sidecar its planned snapshot when its version differs from the one last sent.
    /// Each distinct snapshot is encoded once and its routes listed once, however many
    /// sidecars it goes to.
    pub fn apply(
        &self,
        namespace: &str,
        plans: Vec<SidecarPlan>,
        mut traced: Option<&mut crate::telemetry::Push>,
    ) -> Applied {
        let mut inner = self.lock();
        let mut sent = lock(&self.sent);
        let mut applied = Applied::default();
        let mut encoded: HashMap<ConfigVersion, (Arc<Pushed>, BTreeSet<ObjectKey>)> = HashMap::new();
        for plan in plans {
            let Some(session) = inner.by_uid.get_mut(&plan.uid) else {
                continue;
            };
            for c in plan.conflicts {
                tracing::warn!(route = %c, pod = %session.identity.name,
                    "route left out of this pod's config: one of its models is served by an earlier route");
            }
            let version = &plan.snapshot.version;
            if session.desired.as_ref() == Some(version) {
                continue;
            }
            let (pushed, keys) = encoded.entry(version.clone()).or_insert_with(|| {
                let keys: BTreeSet<ObjectKey> = plan.snapshot.routes.iter().map(|r| r.key.clone()).collect();
                applied.routes.extend(keys.iter().cloned());
                (Arc::new(Pushed::new(plan.snapshot.clone())), keys)
            });
            if session.routes != *keys {
                applied.routes.extend(session.routes.iter().cloned());
                session.routes = keys.clone();
            }
            tracing::debug!(pod = %session.identity.name, namespace, version = %version,
                routes = keys.len(), "pushing config");
            session.desired = Some(version.clone());
            session.pushed_at = Some(Instant::now());
            match sent.get_mut(&plan.uid) {
                Some(routes) => routes.extend(keys.iter().cloned()),
                None => {
                    sent.insert(plan.uid.clone(), keys.clone());
                }
            }
            if let Some(push) = traced.as_deref_mut() {
                push.sending(version);
            }
            session.tx.send_replace(Some(pushed.clone()));
            applied.pushed += 1;
        }
        if applied.pushed > 0 {
            tracing::info!(
                namespace,
                sidecars = applied.pushed,
                versions = encoded.len(),
                "pushed config"
            );
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
        let snapshot = Arc::new(sluice_crds::ConfigSnapshot::new(Vec::new(), Vec::new()));
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
        let _a = sessions.register(pod("a"), BTreeMap::new(), None);
        let _b = sessions.register(pod("b"), BTreeMap::new(), None);
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

    #[test]
    fn a_streams_token_names_its_pod_until_the_stream_ends_or_the_pod_is_deleted() {
        let sessions = Sessions::default();
        let token = TokenDigest::of("token-a");
        let first = sessions.register(pod("a"), BTreeMap::new(), Some(token));
        assert_eq!(sessions.identity_of(&token), Some(pod("a")));
        assert_eq!(sessions.identity_of(&TokenDigest::of("token-b")), None);
        sessions.revoke_token("a");
        assert_eq!(sessions.identity_of(&token), None, "its pod was deleted");

        let second = sessions.register(pod("a"), BTreeMap::new(), Some(token));
        sessions.unregister("a", first.conn);
        assert_eq!(
            sessions.identity_of(&token),
            Some(pod("a")),
            "the end of a replaced stream changes nothing"
        );
        sessions.unregister("a", second.conn);
        assert_eq!(sessions.identity_of(&token), None, "its stream ended");
    }

    #[test]
    fn a_reconnect_with_another_token_forgets_the_old_one() {
        let sessions = Sessions::default();
        let (old, new) = (TokenDigest::of("old"), TokenDigest::of("new"));
        let _first = sessions.register(pod("a"), BTreeMap::new(), Some(old));
        let _second = sessions.register(pod("a"), BTreeMap::new(), Some(new));
        assert_eq!(sessions.identity_of(&old), None);
        assert_eq!(sessions.identity_of(&new), Some(pod("a")));
    }

    #[test]
    fn sidecars_sent_the_same_snapshot_share_one_encoded_line() {
        let sessions = Sessions::default();
        let mut a = sessions.register(pod("a"), BTreeMap::new(), None);
        let mut b = sessions.register(pod("b"), BTreeMap::new(), None);
        let snapshot = Arc::new(sluice_crds::ConfigSnapshot::new(Vec::new(), Vec::new()));
        let plans = ["a", "b"].map(|uid| SidecarPlan {
            uid: uid.into(),
            snapshot: snapshot.clone(),
            conflicts: Vec::new(),
        });
        assert_eq!(sessions.apply("team-a", plans.to_vec(), None).pushed, 2);
        let (sent_a, sent_b) = (a.rx.borrow_and_update().clone(), b.rx.borrow_and_update().clone());
        let (Some(sent_a), Some(sent_b)) = (sent_a, sent_b) else {
            unreachable!("both were sent the snapshot")
        };
        assert!(Arc::ptr_eq(&sent_a, &sent_b));
        assert_eq!(sent_a.snapshot.version, snapshot.version);
        assert_eq!(sessions.apply("team-a", plans.to_vec(), None).pushed, 0, "nothing new");
    }
}
