//! Usage reporting (DESIGN §6.3): cutting the ledger into the saved report queue, sending the
//! queue's head until it is acked, dropping a report refused for good, and the SIGTERM flush.

use std::time::{Duration, Instant};

use sluice_crds::{BackendHealth, CircuitState, UsageAck, UsageReport, control::USAGE_PATH};
use tokio_util::sync::CancellationToken;

use super::{
    ControlClient, ControlError, journal, locked,
    state::{self, REFUSED_FILE, USAGE_FILE},
    usage::Reports,
};

impl ControlClient {
    pub(super) fn save_usage(&self) {
        let reports = locked(&self.shared.reports);
        self.write_usage(&reports);
    }

    /// Saves the queue; callers hold its lock, so an older state never overwrites a newer one.
    pub(super) fn write_usage(&self, reports: &Reports) -> bool {
        match state::save(&self.shared.options.state_dir, USAGE_FILE, reports.state()) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot save the unacked usage reports");
                false
            }
        }
    }

    /// Cuts what the ledger holds into the report queue, saves the queue, and then deletes the
    /// journal generations it now holds. Nothing is cut before the operator said who we are.
    pub fn cut(&self, final_report: bool) {
        let Some(ledger) = self.shared.store.recorder().ledger.as_ref() else {
            return;
        };
        let Some(uid) = locked(&self.shared.pod).as_ref().map(|p| p.uid.clone()) else {
            return;
        };
        let health = self
            .shared
            .store
            .current()
            .map(|c| health_now(&c.routes.routes()))
            .unwrap_or_default();
        let mut reports = locked(&self.shared.reports);
        let (deltas, floor) = ledger.cut();
        if reports.cut(deltas, health, floor, &uid, final_report) && self.write_usage(&reports) {
            journal::remove_below(&self.shared.options.state_dir, reports.state().journal_floor);
        }
    }

    pub(super) async fn report_until(&self, shutdown: CancellationToken) {
        let interval = self.shared.options.report_interval;
        let circuit_changed = self.shared.store.circuit_changed().clone();
        let mut next = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => next = tokio::time::Instant::now() + interval,
                // A circuit that opened or closed is reported now, not at the next interval.
                () = circuit_changed.notified() => {}
                () = shutdown.cancelled() => return,
            }
            if let Err(e) = self.report_once().await {
                tracing::warn!(error = %e, "usage report not acked yet; it will be resent");
                // Its connection may lead to a replica that does not lead (any more): the
                // resend opens a new one.
                *locked(&self.shared.http) = None;
            }
        }
    }

    /// Drops a report the operator refused for good (403): resent, it would be refused again
    /// and hold back every later report (see [`usage`]).
    pub(super) fn drop_refused(&self, report: &UsageReport, answer: &str) {
        {
            let mut reports = locked(&self.shared.reports);
            if reports.refused(report.sequence).is_none() {
                return;
            }
            self.write_usage(&reports);
        }
        self.shared.store.recorder().metrics.usage_reports_refused.inc();
        let routes: std::collections::BTreeSet<String> = report.deltas.iter().map(|d| d.route.to_string()).collect();
        let requests: u64 = report.deltas.iter().map(|d| d.requests).sum();
        let cost = report
            .deltas
            .iter()
            .fold(sluice_crds::MicroUsd::ZERO, |sum, d| sum + d.cost);
        tracing::error!(sequence = report.sequence, routes = ?routes, requests, cost = %cost,
            operator = answer, "the operator refused this usage report for good; dropped it (kept in usage-refused.json)");
        if let Err(e) = state::save(&self.shared.options.state_dir, REFUSED_FILE, report) {
            tracing::warn!(error = %e, "cannot keep the refused usage report");
        }
    }

    /// Cuts the ledger into the queue, then sends queued reports in order until the queue is
    /// empty or one is not acked.
    pub async fn report_once(&self) -> Result<(), ControlError> {
        self.cut(false);
        while self.send_head().await? {}
        Ok(())
    }

    /// Sends the first queued report; `Ok(true)` when it left the queue: acked, or refused for
    /// good and dropped.
    pub(super) async fn send_head(&self) -> Result<bool, ControlError> {
        let Some(report) = locked(&self.shared.reports).head() else {
            return Ok(false);
        };
        let url = locked(&self.shared.url).clone();
        let response = self
            .http()?
            .post(format!("{url}{USAGE_PATH}"))
            .bearer_auth(self.token()?)
            .timeout(Duration::from_secs(90))
            .json(&report)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::FORBIDDEN {
            let body = response.text().await.unwrap_or_default();
            self.drop_refused(&report, &body);
            return Ok(true);
        }
        if !response.status().is_success() {
            let status = response.status();
            return Err(ControlError::Refused {
                status,
                body: response.text().await.unwrap_or_default(),
            });
        }
        let ack: UsageAck = response.json().await?;
        let mut reports = locked(&self.shared.reports);
        let done = reports.acked(ack);
        if done {
            tracing::debug!(sequence = report.sequence, "usage report acked");
            self.write_usage(&reports);
        }
        Ok(done)
    }

    /// Reports everything left (SIGTERM), within `within`: cuts the rest of the ledger into a
    /// final report and sends the whole queue. What is not acked by then stays saved.
    pub async fn flush(&self, within: Duration) {
        self.cut(true);
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.send_head()).await {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => return,
                Ok(Err(e)) => {
                    // A resend on a new connection may reach another replica (or the same one
                    // after a blip); give up only when the time is up.
                    tracing::warn!(error = %e, "final usage report not acked yet; retrying");
                    *locked(&self.shared.http) = None;
                    let pause = Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now()));
                    if pause.is_zero() {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                }
                Err(_) => break,
            }
        }
        let left = locked(&self.shared.reports).len();
        if left > 0 {
            tracing::warn!(
                reports = left,
                "usage not acked before exit; it stays saved for the next start"
            );
        }
    }
}

/// The health of every backend of every route in `routes` worth reporting: those whose
/// circuit is not closed (reported every time, so the operator keeps seeing it), those whose
/// circuit closed since the previous cut, and those with attempts since then. Takes the
/// attempt counts.
pub(super) fn health_now(routes: &[std::sync::Arc<crate::route::Route>]) -> Vec<BackendHealth> {
    let now = tokio::time::Instant::now();
    let mut health = Vec::new();
    for route in routes {
        for backend in &route.backends {
            let counts = backend.state.health.take();
            let circuit = backend.state.circuit.view(now).state;
            let was_unclosed = backend.state.health.note_circuit(circuit == CircuitState::Closed);
            if counts.requests == 0 && circuit == CircuitState::Closed && !was_unclosed {
                continue;
            }
            health.push(BackendHealth {
                route: route.key.clone(),
                backend: backend.name.clone(),
                circuit,
                requests: counts.requests,
                errors: counts.errors,
                latency_p50_ms: counts.latency_p50_ms,
            });
        }
    }
    health
}

/// Replays the journal generations the saved queue does not hold into `ledger`, deletes the
/// ones it does, and journals every delta added from now on.
pub(super) fn resume_journal(dir: &std::path::Path, floor: u64, ledger: &crate::accounting::ledger::UsageLedger) {
    let (deltas, next) = journal::replay(dir, floor);
    if !deltas.is_empty() {
        let requests: u64 = deltas.iter().map(|d| d.requests).sum();
        tracing::info!(
            requests,
            "usage settled before the restart and not reported yet is back from the journal"
        );
    }
    ledger.restore(deltas);
    journal::remove_below(dir, floor);
    ledger.attach(Box::new(journal::FileJournal::new(dir, next.max(floor))));
}
