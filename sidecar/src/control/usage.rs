//! Usage reports (DESIGN §6.3): numbered per pod, sent one at a time in order, resent
//! unchanged until acked — or until refused for good.
//!
//! Every report interval the accounting ledger is cut into a new report at the end of the
//! queue, whether or not earlier ones are acked: usage leaves memory for the saved queue at
//! once, however long the operator is away. Only the first report of the queue is ever sent
//! (the others wait for its ack), so the operator's dedupe by `(pod uid, sequence)` holds and a
//! report that may have been sent is never changed. The queue is bounded: once it holds
//! [`MAX_QUEUED`] reports, a new cut is merged into the last one (which, not being first, was
//! never sent), summed per route × backend × model × user × outcome. So memory and the state
//! file hold at most `MAX_QUEUED` reports (two more around a final one, see below), the last
//! of them with at most one delta per distinct key seen during the outage, and nothing is
//! dropped. The queue is saved (atomically, fsynced)
//! after every change; deltas not cut yet are in the journal ([`super::journal`]).
//!
//! A report also carries the health of the pod's backends as the sidecar sees them when it is
//! cut (circuit, attempts, failures, median latency since the previous cut). Health alone is
//! reason enough for a report: an open circuit is reported every interval, traffic or not, so
//! the operator does not let it expire. Only the newest health means anything, so a cut that
//! queues a report takes the health out of the queued reports that were never sent (all but
//! the first), and a cut merged into the last report replaces its health.
//!
//! On SIGTERM the rest of the ledger is cut into a report marked `final` (empty when nothing
//! is left): once the operator has applied it, nothing of the pod is unreported, which is what
//! it waits for before taking back a deleted pod's allowance.
//!
//! The operator answers 403 to a report it will never take (a route that is not this pod's;
//! DESIGN §6.3): resending it unchanged would be refused forever and, as reports go one at a
//! time, hold back every later report of the pod's own routes. So a refused report is dropped
//! (the caller logs it as an error, counts it in `sluice_usage_reports_refused_total` and keeps
//! it in the state directory as `usage-refused.json`), and the next report goes on: the
//! operator never applied its sequence, and sequences may skip.

use sluice_crds::{BackendHealth, UsageAck, UsageDelta, UsageReport, control::Hello};

use super::state::UsageState;
use crate::accounting::ledger::UsageLedger;

/// The most reports queued; a cut beyond it merges into the last one.
pub const MAX_QUEUED: usize = 8;

/// The report queue of one sidecar.
#[derive(Debug, Default)]
pub struct Reports {
    state: UsageState,
}

impl Reports {
    /// Starts from what was saved.
    pub fn new(mut state: UsageState) -> Self {
        if let Some(report) = state.legacy_in_flight.take() {
            state.queue.insert(0, report);
        }
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

    /// Queues `deltas`, just cut from the ledger for `pod_uid`, with the backends' `health`
    /// now; `journal_floor` is the journal generation the cut started (those below it are in
    /// the queue now). A `final_report` is always queued as a report of its own, even empty.
    /// Returns whether the state changed.
    pub fn cut(
        &mut self,
        deltas: Vec<UsageDelta>,
        health: Vec<BackendHealth>,
        journal_floor: Option<u64>,
        pod_uid: &str,
        final_report: bool,
    ) -> bool {
        let mut changed = false;
        if let Some(floor) = journal_floor
            && floor > self.state.journal_floor
        {
            self.state.journal_floor = floor;
            changed = true;
        }
        if deltas.is_empty() && health.is_empty() && !final_report {
            return changed;
        }
        let queue = &mut self.state.queue;
        for unsent in queue.iter_mut().skip(1) {
            unsent.health.clear();
        }
        if !final_report
            && queue.len() >= MAX_QUEUED.max(2)
            && let Some(last) = queue.last_mut()
            && !last.final_report
        {
            let merged = UsageLedger::default();
            merged.restore(std::mem::take(&mut last.deltas));
            merged.restore(deltas);
            last.deltas = merged.take();
            last.health = health;
            return true;
        }
        let after_last = queue.last().map_or(0, |r| r.sequence + 1);
        let sequence = self.state.next_sequence.max(after_last).max(1);
        self.state.next_sequence = sequence + 1;
        queue.push(UsageReport {
            pod_uid: pod_uid.to_owned(),
            sequence,
            deltas,
            final_report,
            health,
        });
        true
    }

    /// The report to send now: the first of the queue.
    pub fn head(&self) -> Option<UsageReport> {
        self.state.queue.first().cloned()
    }

    /// How many reports wait.
    pub fn len(&self) -> usize {
        self.state.queue.len()
    }

    /// Whether none does.
    pub fn is_empty(&self) -> bool {
        self.state.queue.is_empty()
    }

    /// Drops the first report if it is numbered `sequence` (the operator refused it for good);
    /// returns it.
    pub fn refused(&mut self, sequence: u64) -> Option<UsageReport> {
        if self.state.queue.first().is_some_and(|r| r.sequence == sequence) {
            return Some(self.state.queue.remove(0));
        }
        None
    }

    /// Drops the reports the operator persisted (every one up to `ack.sequence`); true when
    /// any was.
    pub fn acked(&mut self, ack: UsageAck) -> bool {
        let before = self.state.queue.len();
        self.state.queue.retain(|r| r.sequence > ack.sequence);
        self.state.queue.len() != before
    }
}
