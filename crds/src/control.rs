//! The operator ⇄ sidecar control protocol (DESIGN §6): paths, headers and messages, shared so
//! the two sides cannot drift.
//!
//! Every call is HTTPS to the operator's control server and carries the pod's projected
//! ServiceAccount token (audience [`AUDIENCE`]) as `Authorization: Bearer …`. The operator takes
//! the pod's namespace, name and UID from the token (via `TokenReview`), never from the request.
//!
//! - `GET` [`WATCH_PATH`]: a long-lived response of newline-delimited JSON [`WatchEvent`]s
//!   (`application/x-ndjson`): a [`Hello`] first, then a full [`ConfigSnapshot`] whenever the
//!   pod's desired config changes (and once at once), and a heartbeat every
//!   [`Hello::heartbeat_secs`] so a dead connection is noticed.
//! - `POST` [`ACK_PATH`] with a [`ConfigAck`]: the sidecar runs that version. `204` on success.
//! - `POST` [`USAGE_PATH`] with a [`UsageReport`](crate::UsageReport): answered with a
//!   [`UsageAck`](crate::UsageAck) only once the usage is persisted. A sidecar sends one report
//!   at a time, in sequence order, and resends an unacked one unchanged.
//! - `POST` [`ALLOWANCE_PATH`] with an [`AllowanceRequest`]: a sidecar low on its allowance in
//!   a budget asks for more. The operator tops it up out of money neither spent nor granted to
//!   another pod, persists the grant, pushes it in a snapshot, and then answers with an
//!   [`AllowanceAnswer`]. The sidecar spends only what a snapshot grants (a snapshot is the one
//!   ordered source of grants, which may also shrink); the answer says when to stop waiting.
//!
//! Errors are `4xx`/`5xx` with a [`ControlError`] body.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{ConfigSnapshot, ConfigVersion, MicroUsd, ObjectKey};

/// The audience a sidecar's projected token must be issued for.
pub const AUDIENCE: &str = "sluice";
/// The config stream.
pub const WATCH_PATH: &str = "/v1/watch";
/// Where a sidecar acknowledges the version it runs.
pub const ACK_PATH: &str = "/v1/ack";
/// Where a sidecar reports usage.
pub const USAGE_PATH: &str = "/v1/usage";
/// Where a sidecar asks for more allowance.
pub const ALLOWANCE_PATH: &str = "/v1/allowance";
/// Content type of the config stream.
pub const NDJSON: &str = "application/x-ndjson";

/// One line of the config stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum WatchEvent {
    /// First on every stream: who the operator thinks this is, and what it has recorded.
    Hello(Hello),
    /// The pod's full desired config.
    Snapshot(ConfigSnapshot),
    /// Nothing changed; the connection is alive.
    Heartbeat,
}

/// What the operator tells a sidecar when it connects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// The pod, as the token names it.
    pub pod: PodIdentity,
    /// The highest usage report sequence of this pod already applied; a sidecar numbers its
    /// next report above it (a restarted sidecar would otherwise reuse applied numbers).
    pub last_applied_sequence: u64,
    /// Seconds between heartbeats; a stream silent for three of them is dead.
    pub heartbeat_secs: u64,
    /// This pod's spend recorded in each of its budgets' current period, so a restarted sidecar
    /// does not start its allowance from zero.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetSpend>,
}

/// A pod as its token identifies it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentity {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
}

/// One pod's spend in one budget's current period, as the operator has persisted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpend {
    /// The budget.
    pub budget: ObjectKey,
    /// Start of the period the figure belongs to.
    pub period_start: Timestamp,
    /// Spent by this pod in that period.
    #[serde(rename = "spentUSD")]
    pub spent: MicroUsd,
}

/// A sidecar runs a config version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigAck {
    /// The version now active.
    pub version: ConfigVersion,
}

/// A sidecar asks for more of a budget.
///
/// Idempotent: asking twice with the same figures asks for the same grant, so a sidecar may
/// send it again (another request waiting, a retry) without being granted twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowanceRequest {
    /// The budget.
    pub budget: ObjectKey,
    /// The allowance the sidecar holds now (its last snapshot's, zero for another period).
    #[serde(rename = "heldUSD")]
    pub held: MicroUsd,
    /// How much it asks for on top of `held`.
    #[serde(rename = "wantedUSD")]
    pub wanted: MicroUsd,
}

/// The operator's answer to an [`AllowanceRequest`], sent once the grant is persisted and
/// pushed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowanceAnswer {
    /// The pod's allowance now; the snapshot carrying it is on the config stream. Not above
    /// `held` when no money was free.
    #[serde(rename = "grantedUSD")]
    pub granted: MicroUsd,
    /// The period the allowance belongs to.
    pub period_start: Option<Timestamp>,
    /// The budget's money for the period is spent.
    pub exhausted: bool,
}

/// Why the control server refused a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlError {
    /// What went wrong, for the log.
    pub message: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn watch_events_are_tagged_lines() {
        let line = serde_json::to_string(&WatchEvent::Heartbeat).unwrap();
        assert_eq!(line, r#"{"type":"heartbeat"}"#);
        let hello = WatchEvent::Hello(Hello {
            pod: PodIdentity {
                namespace: "team-a".into(),
                name: "bot-1".into(),
                uid: "u-1".into(),
            },
            last_applied_sequence: 7,
            heartbeat_secs: 15,
            budgets: vec![],
        });
        let text = serde_json::to_string(&hello).unwrap();
        assert_eq!(
            text,
            r#"{"type":"hello","pod":{"namespace":"team-a","name":"bot-1","uid":"u-1"},"lastAppliedSequence":7,"heartbeatSecs":15}"#
        );
        assert_eq!(serde_json::from_str::<WatchEvent>(&text).unwrap(), hello);
    }

    #[test]
    fn an_allowance_request_and_its_answer_name_their_money_in_usd() {
        let request = AllowanceRequest {
            budget: ObjectKey {
                namespace: "team-a".into(),
                name: "monthly".into(),
            },
            held: MicroUsd::new(60_000),
            wanted: MicroUsd::new(40_000),
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            text,
            r#"{"budget":{"namespace":"team-a","name":"monthly"},"heldUSD":"0.060000","wantedUSD":"0.040000"}"#
        );
        assert_eq!(serde_json::from_str::<AllowanceRequest>(&text).unwrap(), request);
        let answer = AllowanceAnswer {
            granted: MicroUsd::new(100_000),
            period_start: Some("2026-12-01T00:00:00Z".parse().unwrap()),
            exhausted: false,
        };
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            text,
            r#"{"grantedUSD":"0.100000","periodStart":"2026-12-01T00:00:00Z","exhausted":false}"#
        );
        assert_eq!(serde_json::from_str::<AllowanceAnswer>(&text).unwrap(), answer);
    }
}
