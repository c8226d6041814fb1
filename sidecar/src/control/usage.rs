//! Usage reports (DESIGN §6.3): numbered per pod, sent one at a time in order, resent
//! unchanged until acked — or until refused for good.
//!
//! The operator answers 403 to a report it will never take (a route that is not this pod's;
//! DESIGN §6.3): resending it unchanged would be refused forever and, as reports go one at a
//! time, hold back every later report of the pod's own routes. So a refused report is dropped
//! (the caller logs it as an error, counts it in `sluice_usage_reports_refused_total` and keeps
//! it in the state directory as `usage-refused.json`), and the next report is numbered after
//! it: the operator never applied its sequence, and sequences may skip.
//!
//! Unreported usage accumulates in the accounting ledger, merged per route × backend × model ×
//! user × outcome; a report is cut from it only when no report is in flight. So however long
//! the operator is away, the sidecar holds one frozen report plus one merged set of deltas:
//! memory is bounded by the number of distinct keys, and nothing is dropped. The in-flight
//! report is saved in the state directory, so a container restart resends it; deltas not yet
//! cut into a report are lost by a crash (at most one report interval), and flushed on SIGTERM.

use sluice_crds::{UsageAck, UsageReport, control::Hello};

use super::state::UsageState;
use crate::accounting::ledger::UsageLedger;

/// The report queue of one sidecar.
#[derive(Debug, Default)]
pub struct Reports {
    state: UsageState,
}

impl Reports {
    /// Starts from what was saved.
    pub fn new(state: UsageState) -> Self {
        Self { state }
    }

    /// What to save.
    pub fn state(&self) -> &UsageState {
        &self.state
    }

    /// Numbers new reports above what the operator already applied (a restarted sidecar
    /// without its state file would otherwise reuse applied numbers and lose usage).
    pub fn hello(&mut self, hello: &Hello) -> bool {
        let floor = hello.last_applied_sequence.saturating_add(1);
        if self.state.next_sequence < floor {
            self.state.next_sequence = floor;
            return true;
        }
        false
    }

    /// The report to send now: the one in flight, or a new one cut from `ledger` for `pod_uid`.
    /// The bool says whether the state changed (and should be saved).
    pub fn next(&mut self, ledger: &UsageLedger, pod_uid: Option<&str>) -> (Option<UsageReport>, bool) {
        if let Some(report) = &self.state.in_flight {
            return (Some(report.clone()), false);
        }
        let Some(pod_uid) = pod_uid else {
            return (None, false);
        };
        let deltas = ledger.take();
        if deltas.is_empty() {
            return (None, false);
        }
        let sequence = self.state.next_sequence.max(1);
        self.state.next_sequence = sequence + 1;
        let report = UsageReport {
            pod_uid: pod_uid.to_owned(),
            sequence,
            deltas,
        };
        self.state.in_flight = Some(report.clone());
        (Some(report), true)
    }

    /// Drops the in-flight report numbered `sequence`, which the operator refused for good;
    /// returns it.
    pub fn refused(&mut self, sequence: u64) -> Option<UsageReport> {
        if self.state.in_flight.as_ref().is_some_and(|r| r.sequence == sequence) {
            return self.state.in_flight.take();
        }
        None
    }

    /// Drops the in-flight report once the operator persisted it; true when it was.
    pub fn acked(&mut self, ack: UsageAck) -> bool {
        match &self.state.in_flight {
            Some(r) if ack.sequence >= r.sequence => {
                self.state.in_flight = None;
                true
            }
            _ => false,
        }
    }
}
