//! Leader election on a `coordination.k8s.io/v1` Lease: one replica at a time reconciles,
//! serves control connections and writes status (every replica serves the webhook).
//!
//! A lease is taken when it has no holder or when its record has not changed for a whole
//! lease duration *as observed locally* (client-go's rule: no clock comparison across
//! machines). The holder renews every third of the duration and gives up leadership — the
//! process exits — when it could not renew within two thirds of it, before anyone else may
//! take over. On shutdown it releases the lease so a follower takes over at once.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio_util::sync::CancellationToken;

/// Why leadership ended.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// Another replica holds the lease now, or it could not be renewed in time.
    #[error("lost the leader lease {0}")]
    Lost(String),
    /// The API server refused or could not be reached.
    #[error("lease {name}: {source}")]
    Api {
        /// The lease.
        name: String,
        /// The failure.
        source: kube::Error,
    },
}

/// Takes and holds one Lease.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The lease record last seen held by someone else, and since when it is unchanged.
    observed: Option<(String, Instant)>,
}

impl LeaderElector {
    /// An elector for Lease `namespace/name` as `identity`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            observed: None,
        }
    }

    fn retry_period(&self) -> Duration {
        self.duration / 3
    }

    fn api_error(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            name: self.name.clone(),
            source,
        }
    }

    /// Waits until this replica holds the lease; `false` when cancelled first. `on_follow` is
    /// called after every round that found another holder (readiness waits for the first).
    pub async fn acquire(&mut self, cancel: &CancellationToken, mut on_follow: impl FnMut()) -> bool {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return true;
                }
                Ok(false) => on_follow(),
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.retry_period()) => {}
                () = cancel.cancelled() => return false,
            }
        }
    }

    /// Renews the lease until `cancel` fires (`Ok`) or leadership is lost (`Err`).
    pub async fn hold(&mut self, cancel: &CancellationToken) -> Result<(), LeaderError> {
        let deadline = self.duration.saturating_mul(2) / 3;
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.retry_period()) => {}
                () = cancel.cancelled() => return Ok(()),
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return Err(LeaderError::Lost(self.name.clone())),
                Err(e) if renewed.elapsed() < deadline => {
                    tracing::warn!(error = %e, "renewing the lease failed; retrying")
                }
                Err(_) => return Err(LeaderError::Lost(self.name.clone())),
            }
        }
    }

    /// Gives the lease up so another replica can take it at once.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let Some(mut lease) = self.api.get_opt(&self.name).await.map_err(|e| self.api_error(e))? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.api_error(e))?;
        tracing::info!(lease = %self.name, "released the leader lease");
        Ok(())
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let ours = previous.and_then(|p| p.holder_identity.as_deref()) == Some(self.identity.as_str());
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX)),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..LeaseSpec::default()
        }
    }

    /// One round: take, renew, or observe. `Ok(true)` when this replica holds the lease.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let now = Timestamp::now();
        let existing = self.api.get_opt(&self.name).await.map_err(|e| self.api_error(e))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.api_error(e)),
            };
        };
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty());
        if holder.as_deref() != Some(self.identity.as_str()) {
            let version = lease.metadata.resource_version.clone().unwrap_or_default();
            let since = match &self.observed {
                Some((seen, since)) if *seen == version => *since,
                _ => {
                    self.observed = Some((version, Instant::now()));
                    Instant::now()
                }
            };
            let their_duration = lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.duration, Duration::from_secs);
            if holder.is_some() && since.elapsed() < their_duration {
                return Ok(false);
            }
        }
        lease.spec = Some(self.spec(lease.spec.as_ref(), now));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.api_error(e)),
        }
    }
}
