//! Usage from every simulated sidecar, in the real wire format, and the exact totals the
//! Budget's and the ModelRoute's status must then show.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use kube::{Api, Client};
use sluice_crds::{
    BackendName, Budget, MicroUsd, ModelName, ModelRoute, ObjectKey, Outcome, Tokens, UsageDelta, UsageReport,
};

use super::fleet::Sidecar;
use super::manifests::{BACKEND, BUDGET, ROUTE};

/// How often status is read while waiting for the totals.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// Sums of the reports sent so far: what status must show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Money, in micro-dollars.
    pub cost: MicroUsd,
}

impl Totals {
    fn add(&mut self, delta: &UsageDelta) {
        self.requests += delta.requests;
        self.input_tokens += delta.input_tokens.0;
        self.output_tokens += delta.output_tokens.0;
        self.cost += delta.cost;
    }
}

/// The report of sidecar `index` (pod `pod_uid`) in round `round` (from 1), numbered
/// `sequence`: different figures for every pod and round, so only the exact sum matches.
pub fn report(
    namespace: &str,
    pod_uid: &str,
    index: usize,
    round: u64,
    sequence: u64,
    model: &str,
) -> Result<UsageReport> {
    let i = index as u64;
    let requests = 1 + (i + round) % 5;
    Ok(UsageReport {
        pod_uid: pod_uid.to_owned(),
        sequence,
        deltas: vec![UsageDelta {
            route: ObjectKey {
                namespace: namespace.to_owned(),
                name: ROUTE.to_owned(),
            },
            backend: BackendName::try_from(BACKEND)?,
            model: ModelName::try_from(model)?,
            user: None,
            outcome: Outcome::Ok,
            requests,
            input_tokens: Tokens(120 * requests + i % 13),
            cached_input_tokens: Tokens(i % 3),
            output_tokens: Tokens(30 * requests + round),
            cache_write_input_tokens: Tokens(0),
            cost: MicroUsd::new(1_000 + 37 * i + 11 * round),
            failovers: 0,
            estimated: false,
        }],
        final_report: false,
        health: Vec::new(),
    })
}

/// What one round of reports measured.
#[derive(Debug, Clone)]
pub struct Round {
    /// From the first report sent until both statuses showed the exact totals.
    pub to_status: Option<Duration>,
    /// From the first report sent until each report was acked.
    pub acked: Vec<Duration>,
    /// Reports sent again after a `503`.
    pub resent: u32,
    /// Reports that failed for good.
    pub failed: Vec<String>,
    /// Status as last read, when it never matched.
    pub last_status: String,
}

/// Sends rounds of reports, one per sidecar each, and keeps the totals they add up to.
pub struct Reporter<'a> {
    client: Client,
    namespace: String,
    sidecars: &'a [Arc<Sidecar>],
    /// Each sidecar's last sequence.
    sequences: Vec<u64>,
    rounds: u64,
    totals: Totals,
}

impl std::fmt::Debug for Reporter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("namespace", &self.namespace)
            .field("rounds", &self.rounds)
            .field("totals", &self.totals)
            .finish_non_exhaustive()
    }
}

impl<'a> Reporter<'a> {
    /// Reports for `sidecars` of `namespace`, numbered after `sequences` (what each pod's
    /// `hello` said was applied), on top of nothing yet reported.
    pub fn new(client: Client, namespace: &str, sidecars: &'a [Arc<Sidecar>], sequences: Vec<u64>) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            sidecars,
            sequences,
            rounds: 0,
            totals: Totals::default(),
        }
    }

    /// Everything reported so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Sends one report from every sidecar at once (each its next sequence) for backend model
    /// `model`, and waits, up to `within`, until the Budget's and the ModelRoute's status show
    /// the new totals exactly.
    pub async fn round(&mut self, model: &str, within: Duration) -> Result<Round> {
        self.rounds += 1;
        let mut reports = Vec::with_capacity(self.sidecars.len());
        for (s, seq) in self.sidecars.iter().zip(self.sequences.iter_mut()) {
            *seq += 1;
            let r = report(&self.namespace, &s.pod.uid, s.index, self.rounds, *seq, model)?;
            for d in &r.deltas {
                self.totals.add(d);
            }
            reports.push(r);
        }
        let expected = self.totals;
        let start = Instant::now();
        let sending = futures::stream::iter(self.sidecars.iter().zip(&reports))
            .map(|(s, r)| async move { (s.report(r).await, start.elapsed(), r.sequence) })
            .buffer_unordered(self.sidecars.len().max(1))
            .collect::<Vec<_>>();
        let watching = wait_status(&self.client, &self.namespace, expected, start, within);
        let (sent, (to_status, last_status)) = tokio::join!(sending, watching);
        let mut out = Round {
            to_status,
            acked: Vec::with_capacity(sent.len()),
            resent: 0,
            failed: Vec::new(),
            last_status,
        };
        for (result, elapsed, sequence) in sent {
            match result {
                Ok((ack, resent)) if ack.sequence == sequence => {
                    out.acked.push(elapsed);
                    out.resent += resent;
                }
                Ok((ack, _)) => out
                    .failed
                    .push(format!("report {sequence} acked as sequence {}", ack.sequence)),
                Err(e) => out.failed.push(format!("{e:#}")),
            }
        }
        Ok(out)
    }
}

/// Polls both statuses until they show `expected`; when they did (from `start`), and the last
/// status read.
async fn wait_status(
    client: &Client,
    namespace: &str,
    expected: Totals,
    start: Instant,
    within: Duration,
) -> (Option<Duration>, String) {
    let budgets = Api::<Budget>::namespaced(client.clone(), namespace);
    let routes = Api::<ModelRoute>::namespaced(client.clone(), namespace);
    let mut last = String::new();
    while start.elapsed() < within {
        match read_status(&budgets, &routes).await {
            Ok((budget, route)) => {
                if shows(&budget, &route, expected) {
                    return (Some(start.elapsed()), last);
                }
                last = format!("budget {budget}; route usage {route}");
            }
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    (None, last)
}

async fn read_status(
    budgets: &Api<Budget>,
    routes: &Api<ModelRoute>,
) -> Result<(serde_json::Value, serde_json::Value)> {
    let budget = budgets.get(BUDGET).await.context("reading the Budget")?;
    let route = routes.get(ROUTE).await.context("reading the ModelRoute")?;
    Ok((
        serde_json::to_value(budget.status)?,
        serde_json::to_value(route.status.and_then(|s| s.usage))?,
    ))
}

/// Whether the statuses hold exactly `expected`: money compared as the micro-dollar strings
/// status carries, counts as numbers.
pub fn shows(budget: &serde_json::Value, route_usage: &serde_json::Value, expected: Totals) -> bool {
    let cost = expected.cost.to_string();
    budget["spentUSD"] == cost.as_str()
        && budget["byRoute"][ROUTE] == cost.as_str()
        && route_usage["costUSD"] == cost.as_str()
        && route_usage["requests"] == expected.requests
        && route_usage["inputTokens"] == expected.input_tokens
        && route_usage["outputTokens"] == expected.output_tokens
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_totals_match() {
        let expected = Totals {
            requests: 7,
            input_tokens: 840,
            output_tokens: 210,
            cost: MicroUsd::new(1_234_567),
        };
        let budget = serde_json::json!({"spentUSD": "1.234567", "byRoute": {"fanout": "1.234567"}});
        let usage = serde_json::json!({"requests": 7, "inputTokens": 840, "outputTokens": 210, "costUSD": "1.234567"});
        assert!(shows(&budget, &usage, expected));
        let short = serde_json::json!({"spentUSD": "1.234566", "byRoute": {"fanout": "1.234567"}});
        assert!(!shows(&short, &usage, expected));
        let fewer = serde_json::json!({"requests": 6, "inputTokens": 840, "outputTokens": 210, "costUSD": "1.234567"});
        assert!(!shows(&budget, &fewer, expected));
    }

    #[test]
    fn reports_differ_per_pod_and_round() {
        let a = report("ns", "u-1", 1, 1, 1, "m").unwrap();
        let b = report("ns", "u-2", 2, 1, 1, "m").unwrap();
        let c = report("ns", "u-1", 1, 2, 2, "m").unwrap();
        assert_ne!(a.deltas[0].cost, b.deltas[0].cost);
        assert_ne!(a.deltas[0].cost, c.deltas[0].cost);
    }
}
