//! The Sluice operator: controllers for `ModelRoute` and `Budget`, the control server that
//! pushes config snapshots to sidecars and takes their usage, and the status writer that turns
//! usage into `status`.
//!
//! [`route_controller`] and [`budget_controller`] validate and resolve, [`pod_controller`]
//! watches the pods carrying a sidecar; what they decide goes into the owned parts of the
//! shared [`context::Context`] ([`verdicts`], [`ledgers`], [`sessions`], [`marks`]). [`plan`]
//! computes each sidecar's snapshot and allowances from them (a pure function), [`push`]
//! applies the plan and [`control_server`] streams it. [`usage`] applies reports exactly once
//! and persists them; [`status`] writes what is known into the resources. [`serve`] serves
//! HTTP for every listener. [`leader`] makes sure one replica at a
//! time does any of this; the [`webhook`], the certificates ([`managed_certs`]) and the CA
//! published for the sidecars ([`ca_publisher`]) are served by every replica.

pub mod admin;
pub mod allowance;
pub mod budget_controller;
pub mod ca_publisher;
pub mod certs;
pub mod cli;
pub mod coalesce;
pub mod conditions;
pub mod context;
pub mod control_server;
pub mod desired;
pub mod error;
pub mod health;
pub mod leader;
pub mod ledgers;
pub mod managed_certs;
pub mod marks;
pub mod metrics;
pub use sluice_crds::period;
pub mod plan;
pub mod pod_controller;
pub mod push;
pub mod route_controller;
pub mod serve;
pub mod sessions;
pub mod status;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod token;
pub mod usage;
pub mod verdicts;
pub mod webhook;
pub mod wire;

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "sluice-operator";
/// The label that marks a pod as carrying a Sluice sidecar (set by the injection webhook);
/// the operator watches pods with it to count the sidecars each route selects.
pub const SIDECAR_LABEL: &str = "sluice.dev/sidecar";
