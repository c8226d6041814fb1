//! The soak of issue 10: a steady mix of plain and streamed requests through the real sidecar
//! for minutes, with its memory, descriptors and threads sampled, and every request accounted
//! for at the client, in the sidecar's `/metrics` and at the upstream, and every micro-dollar in
//! its budget.
//!
//! Not a test run by CI: `tests/bench/soak` runs it and it exits non-zero on a miscount, a
//! descriptor leak or memory growth beyond the stated bound.

pub mod admin;
pub mod client;
pub mod manifest;
pub mod report;
pub mod sample;
pub mod upstream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use self::client::{Load, Progress, Tally};
use self::manifest::UserLimit;
use self::report::{CountRow, Report, SpendCheck};
use self::upstream::CountedUpstream;
use crate::driver::procs;

/// A kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `stream: false`.
    Plain,
    /// `stream: true`.
    Stream,
}

impl Kind {
    /// Both kinds.
    pub const ALL: [Kind; 2] = [Kind::Plain, Kind::Stream];

    /// Its name in the report.
    pub fn label(self) -> &'static str {
        manifest::route_name(self)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding a release build of `sluice-sidecar`.
    pub bin_dir: PathBuf,
    /// Scratch space: manifests, state, the sidecar's log.
    pub work_dir: PathBuf,
    /// The load.
    pub load: Load,
    /// Pause between the chunks of a stream, microseconds.
    pub stream_delay_us: u64,
    /// Samples taken before this many seconds of load are the warm-up, not judged.
    pub warmup: Duration,
    /// Time between samples.
    pub sample_every: Duration,
    /// The most the sidecar's RSS may grow after the warm-up, bytes.
    pub rss_bound: u64,
    /// The command that ran this, for the report.
    pub command: String,
}

/// How long the sidecar may take to settle its counters after the last answer (a bound).
const SETTLE_WITHIN: Duration = Duration::from_secs(30);
/// How long its descriptors may take to come back down once every connection is closed.
const FDS_WITHIN: Duration = Duration::from_secs(30);

/// Runs the soak; the report says whether it passed.
pub async fn run(opts: &Options) -> Result<Report> {
    std::fs::create_dir_all(&opts.work_dir)?;
    let logs = procs::fresh_dir(&opts.work_dir, "logs")?;
    let manifests = procs::fresh_dir(&opts.work_dir, "manifests")?;
    let (date, commit, uncommitted_changes) = (now(), commit(), uncommitted());

    step("starting the in-process upstream");
    let upstream = CountedUpstream::start().await?;
    let (plain_limit, stream_limit) = user_limits(&opts.load);
    manifest::write(
        &manifests,
        &format!("http://{}", upstream.addr),
        opts.stream_delay_us,
        plain_limit,
        stream_limit,
    )?;

    step("starting the sidecar (release build)");
    let procs::Sidecar {
        proc: mut sidecar,
        addr,
        admin,
        ..
    } = procs::start_sidecar(&opts.bin_dir, &opts.work_dir, "soak", &manifests, &logs).await?;
    let pid = sidecar.pid();
    // Let start-up work (config load, first state write) finish before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = sample::take(pid, 0.0, 0, 0)?;

    step(&format!(
        "load: {}/s plain + {}/s streams for {:?}, sampling every {:?}",
        opts.load.plain_rate, opts.load.stream_rate, opts.load.duration, opts.sample_every
    ));
    let progress = Arc::new(Progress::default());
    let load = opts.load.clone();
    let started = Instant::now();
    let mut load_task = tokio::spawn({
        let progress = progress.clone();
        async move { client::run(addr, &load, progress).await }
    });
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + opts.sample_every, opts.sample_every);
    let tally: Tally = loop {
        tokio::select! {
            done = &mut load_task => break done.context("the load task failed")?,
            _ = ticks.tick() => {
                sidecar.check_alive()?;
                let at = started.elapsed().as_secs_f64();
                let s = sample::take(
                    pid,
                    at,
                    progress.finished.load(Ordering::Relaxed),
                    progress.in_flight.load(Ordering::Relaxed),
                )?;
                eprintln!(
                    "  {at:6.0}s  rss {:6.1} MiB  fds {:4}  threads {:3}  finished {:8}  in flight {:4}",
                    mib(s.rss), s.fds, s.threads, s.finished, s.in_flight
                );
                samples.push(s);
            }
        }
    };
    let load_seconds = started.elapsed().as_secs_f64();
    sidecar.check_alive()?;

    step("waiting for the sidecar's counters to settle");
    let (series, settled_after) = settle(admin, &tally).await?;
    let sidecar_counts = admin::by_route_outcome(&series, admin::REQUESTS);
    let sidecar_spend = admin::by_route_outcome(&series, admin::SPEND);
    let budget = admin::budget(admin).await?;
    let after_load = sample::take(pid, started.elapsed().as_secs_f64(), 0, 0)?;

    step("closing the upstream's connections; waiting for the sidecar's descriptors to come back down");
    let counts = upstream.counts.clone();
    upstream.close(Duration::from_secs(10)).await;
    let fds_since = Instant::now();
    let mut after = sample::take(pid, started.elapsed().as_secs_f64(), 0, 0)?;
    while after.fds > before.fds && fds_since.elapsed() < FDS_WITHIN {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = sample::take(pid, started.elapsed().as_secs_f64(), 0, 0)?;
    }
    let fds_settle_s = fds_since.elapsed().as_secs_f64();
    sidecar.check_alive()?;

    let rows = count_rows(&tally, &sidecar_counts, &counts);
    let spend = spend_check(&tally, &sidecar_spend, budget);
    let rss = sample::judge_rss(&samples, opts.warmup.as_secs_f64(), opts.rss_bound);
    let mut failures = Vec::new();
    for row in rows.iter().filter(|r| !r.agrees) {
        failures.push(format!(
            "{} / {}: client {}, sidecar {}, upstream {}",
            row.kind.label(),
            row.outcome,
            row.client,
            row.sidecar,
            row.upstream.map_or_else(|| "—".into(), |u| u.to_string())
        ));
    }
    if upstream_other(&counts) > 0 {
        failures.push(format!(
            "{} requests reached the upstream on neither route's path",
            upstream_other(&counts)
        ));
    }
    if !spend.agrees {
        failures.push("spend: the budget, the metrics and the client's costs disagree".into());
    }
    match &rss {
        Some(v) if !v.within => failures.push(format!(
            "RSS grew {:.1} MiB after the warm-up, above the bound of {:.1} MiB",
            v.growth as f64 / 1048576.0,
            mib(v.bound)
        )),
        Some(_) => {}
        None => failures.push("no RSS sample after the warm-up: the run was shorter than the warm-up".into()),
    }
    if after.fds > before.fds {
        failures.push(format!(
            "descriptors: {} at the start, {} at the end ({:.0} s after every connection closed)",
            before.fds, after.fds, fds_settle_s
        ));
    }
    drop(sidecar);
    Ok(Report {
        date,
        commit,
        uncommitted_changes,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average_after: crate::driver::machine::load_average(),
        command: opts.command.clone(),
        load: opts.load.clone(),
        stream_chunks: manifest::STREAM_CHUNKS,
        stream_delay_us: opts.stream_delay_us,
        plain_user_limit: plain_limit,
        stream_user_limit: stream_limit,
        warmup_s: opts.warmup.as_secs_f64(),
        sample_every_s: opts.sample_every.as_secs_f64(),
        load_seconds,
        settled_after_s: settled_after.as_secs_f64(),
        fds_settle_s,
        plain: tally.plain,
        stream: tally.stream,
        before,
        samples,
        after_load,
        after,
        rss,
        counts: rows,
        upstream_streams_finished: counts.streams_finished.load(Ordering::Relaxed),
        spend,
        failures,
    })
}

/// Per-user limits: the greedy user sends 2.5× its limit, an ordinary user well under it.
fn user_limits(load: &Load) -> (UserLimit, UserLimit) {
    let limit = |rate: u32| {
        let greedy_per_minute = f64::from(rate) * 60.0 / f64::from(load.greedy_every.max(1));
        UserLimit {
            requests_per_minute: ((greedy_per_minute * 0.4).round() as u32).max(1),
        }
    };
    (limit(load.plain_rate), limit(load.stream_rate))
}

/// Polls `/metrics` until the sidecar has counted as many requests per kind as the client saw
/// answers it could have counted, or its counts stop moving; returns the last reading.
async fn settle(admin: SocketAddr, tally: &Tally) -> Result<(Vec<admin::Series>, Duration)> {
    let since = Instant::now();
    let want: BTreeMap<Kind, u64> = Kind::ALL
        .into_iter()
        .map(|k| (k, tally.of(k).outcomes.values().sum()))
        .collect();
    let mut last_total = None;
    let mut still_since = Instant::now();
    loop {
        let series = admin::metrics(admin).await?;
        let counts = admin::by_route_outcome(&series, admin::REQUESTS);
        let have: BTreeMap<Kind, u64> = Kind::ALL
            .into_iter()
            .map(|k| {
                let route = route_label(k);
                (k, counts.iter().filter(|((r, _), _)| *r == route).map(|(_, v)| v).sum())
            })
            .collect();
        let total: u64 = have.values().sum();
        if have == want || since.elapsed() > SETTLE_WITHIN {
            return Ok((series, since.elapsed()));
        }
        if last_total != Some(total) {
            last_total = Some(total);
            still_since = Instant::now();
        } else if still_since.elapsed() > Duration::from_secs(5) {
            return Ok((series, since.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `route` label of a kind's route.
pub fn route_label(kind: Kind) -> String {
    format!("{}/{}", manifest::NAMESPACE, manifest::route_name(kind))
}

/// Outcomes that reach the upstream: an answer, or a failure after attempts upstream.
const REACHES_UPSTREAM: &[&str] = &["ok", "upstream_error"];

fn count_rows(tally: &Tally, sidecar: &BTreeMap<(String, String), u64>, upstream: &upstream::Counts) -> Vec<CountRow> {
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        let route = route_label(kind);
        let client = &tally.of(kind).outcomes;
        let mut outcomes: Vec<String> = client.keys().cloned().collect();
        outcomes.extend(sidecar.keys().filter(|(r, _)| *r == route).map(|(_, o)| o.clone()));
        outcomes.sort();
        outcomes.dedup();
        // "ok" first, then the rest alphabetically.
        outcomes.sort_by_key(|o| o != "ok");
        let reached = upstream.received(kind);
        for outcome in &outcomes {
            let c = client.get(outcome).copied().unwrap_or(0);
            let s = sidecar.get(&(route.clone(), outcome.clone())).copied().unwrap_or(0);
            // The upstream sees every request that got past admission; with no upstream
            // failures that is exactly the `ok` row.
            let up = (outcome == "ok").then_some(reached);
            rows.push(CountRow {
                kind,
                outcome: outcome.clone(),
                client: c,
                sidecar: s,
                upstream: up,
                agrees: c == s && up.is_none_or(|u| u == c),
            });
        }
        let sidecar_reaching: u64 = REACHES_UPSTREAM
            .iter()
            .map(|o| sidecar.get(&(route.clone(), (*o).to_owned())).copied().unwrap_or(0))
            .sum();
        let client_total: u64 = client.values().sum();
        let sidecar_total: u64 = sidecar.iter().filter(|((r, _), _)| *r == route).map(|(_, v)| v).sum();
        rows.push(CountRow {
            kind,
            outcome: "all".into(),
            client: client_total,
            sidecar: sidecar_total,
            upstream: Some(reached),
            agrees: client_total == sidecar_total && reached == sidecar_reaching,
        });
    }
    rows
}

fn upstream_other(counts: &upstream::Counts) -> u64 {
    counts.other.load(Ordering::Relaxed)
}

fn spend_check(tally: &Tally, spend: &BTreeMap<(String, String), u64>, budget: admin::BudgetState) -> SpendCheck {
    let metric = |kind: Kind| -> u64 {
        let route = route_label(kind);
        spend.iter().filter(|((r, _), _)| *r == route).map(|(_, v)| v).sum()
    };
    let (plain_client, stream_client) = (tally.plain.cost_micros, tally.stream.cost_micros);
    let (plain_metric, stream_metric) = (metric(Kind::Plain), metric(Kind::Stream));
    let client_total = plain_client + stream_client;
    SpendCheck {
        budget_spent: budget.spent,
        budget_reserved: budget.reserved,
        budget_limit: budget.limit,
        plain_client,
        stream_client,
        client_total,
        plain_metric,
        stream_metric,
        ok_without_cost: tally.plain.ok_without_cost,
        agrees: budget.spent == client_total
            && budget.reserved == 0
            && plain_metric == plain_client
            && stream_metric == stream_client
            && tally.plain.ok_without_cost == 0,
    }
}

fn git(args: &[&str]) -> Option<String> {
    std::process::Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn commit() -> String {
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
}

/// Whether tracked files differ from the commit (the tree is shared; the build took them in).
fn uncommitted() -> bool {
    git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty())
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| String::new(), |t| t.to_string())
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

/// Fails with the report's failures, if any (after the report has been written).
pub fn verdict(report: &Report) -> Result<()> {
    if report.failures.is_empty() {
        Ok(())
    } else {
        bail!("the soak failed:\n  {}", report.failures.join("\n  "))
    }
}
