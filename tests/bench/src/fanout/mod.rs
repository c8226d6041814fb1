//! The operator fan-out benchmark (issue 9, item 5): on the real control plane, many simulated
//! sidecars in one process hold the real operator ⇄ sidecar protocol open while ModelRoute
//! changes are applied with `kubectl apply`; it measures how long until every sidecar has
//! acked each change, the operator's RSS and CPU, and how long usage reported by every
//! sidecar takes to show in status as the exact total.
//!
//! Nothing here fails on a timing: a missed target is a figure in the report.

pub mod fleet;
pub mod manifests;
pub mod pods;
pub mod procstat;
pub mod report;
pub mod usage;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use sluice_tests::cluster::{TestCluster, cluster_from_bin_dir};
use sluice_tests::operator::{Certs, OperatorProcess};

use self::fleet::{Ack, Fleet};
use self::procstat::{MIB, PeakRss, cpu_of, hwm_of, rss_of};
use self::report::{Change, Fanout};
use crate::driver::percentile;

/// The operator's status interval: its default.
const STATUS_INTERVAL_S: u64 = 2;
/// The operator's heartbeat: its default.
const HEARTBEAT_S: u64 = 15;
/// API calls in flight while the pods and tokens are made.
const SETUP_PARALLEL: usize = 64;
/// Bounds on each wait (not targets: past them the figure is reported missing). Connecting
/// 5,000 TLS streams to one operator on 2 shared cores is the slow one.
const CONNECT_WITHIN: Duration = Duration::from_secs(300);
const CHANGE_WITHIN: Duration = Duration::from_secs(60);
const USAGE_WITHIN: Duration = Duration::from_secs(60);
/// How long the idle-connected footprint is watched.
const IDLE_FOR: Duration = Duration::from_secs(5);
/// The pause between changes.
const BETWEEN_CHANGES: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The release `sluice-operator`.
    pub operator_bin: PathBuf,
    /// Directory holding `etcd`, `kube-apiserver`, `kubectl`, `helm`.
    pub cluster_bin_dir: PathBuf,
    /// Scratch space (certificates); removed afterwards.
    pub work_dir: PathBuf,
    /// Simulated sidecars.
    pub sidecars: usize,
    /// Route changes.
    pub changes: usize,
    /// Rounds of usage reports.
    pub usage_rounds: usize,
}

/// File descriptors this process and the operator need beyond one per sidecar connection.
const SPARE_FDS: u64 = 1_024;

/// Raises the soft open-files limit so every connection fits (the operator, started from here,
/// inherits it).
pub fn raise_nofile(sidecars: usize) -> Result<u64> {
    let wanted = u64::try_from(sidecars).unwrap_or(u64::MAX).saturating_add(SPARE_FDS);
    let got = rlimit::increase_nofile_limit(wanted).context("raising RLIMIT_NOFILE")?;
    ensure!(
        got >= wanted,
        "{sidecars} connections need {wanted} open files, but the hard limit allows {got} (ulimit -Hn)"
    );
    Ok(got)
}

/// Runs the benchmark.
pub async fn run(opts: &Options) -> Result<Fanout> {
    ensure!(opts.sidecars > 0, "--sidecars must be at least 1");
    raise_nofile(opts.sidecars)?;
    let cluster = cluster_from_bin_dir("bench-fanout", &opts.cluster_bin_dir).await?;
    cluster.install_crds().await?;
    apply(&cluster, 0).await?;

    let setup = Instant::now();
    eprintln!("bench-fanout: creating {} pods and their tokens", opts.sidecars);
    let pods = pods::create(&cluster.client, &cluster.namespace, opts.sidecars, SETUP_PARALLEL).await?;
    let setup_ms = millis(setup.elapsed());

    std::fs::create_dir_all(&opts.work_dir).with_context(|| format!("creating {}", opts.work_dir.display()))?;
    let certs = Certs::generate_with(&opts.operator_bin, &opts.work_dir)?;
    let timings = [
        ("--status-interval", format!("{STATUS_INTERVAL_S}s")),
        ("--heartbeat", format!("{HEARTBEAT_S}s")),
        ("--lease-duration", "15s".to_owned()),
    ];
    let extra: Vec<&str> = timings.iter().flat_map(|(f, v)| [*f, v.as_str()]).collect();
    let mut operator =
        OperatorProcess::spawn_binary(&opts.operator_bin, &cluster, &certs, "bench-fanout", &extra, "info").await?;
    operator.wait_ready(Duration::from_secs(60)).await?;
    let pid = operator.process.pid();
    // Its pod cache fills while it becomes ready; give the first list a moment to settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_ready = rss_of(pid)?;

    eprintln!("bench-fanout: connecting {} sidecars", opts.sidecars);
    let ca = std::fs::read(certs.ca()).context("reading the CA")?;
    let cpu_before = cpu_of(pid)?;
    let connect_start = Instant::now();
    let mut fleet = Fleet::connect(&operator.control_url, &ca, pods)?;
    let first = fleet.wait_acked(&manifests::model(0), CONNECT_WITHIN).await;
    let connected = first.iter().flatten().count();
    let connect_ms = (connected == fleet.len())
        .then(|| first.iter().flatten().map(|a| a.acked).max())
        .flatten()
        .map(|t| millis(t - connect_start));
    let hellos = fleet.hellos();
    let connect_hello_ms = hellos
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .and_then(|h| h.into_iter().max())
        .map(|t| millis(t - connect_start));
    let cpu_connect = cpu_of(pid)? - cpu_before;
    if connected == 0 {
        bail!(
            "no simulated sidecar got its first snapshot: {:?}\n--- operator output (tail)\n{}",
            fleet.failures().iter().take(5).collect::<Vec<_>>(),
            tail(&operator.process.output(), 40)
        );
    }
    eprintln!(
        "bench-fanout: {connected} of {} connected in {}",
        fleet.len(),
        connect_ms.map_or("–".to_owned(), |m| format!("{m:.0} ms"))
    );

    // Idle, every sidecar connected.
    let idle_cpu_before = cpu_of(pid)?;
    tokio::time::sleep(IDLE_FOR).await;
    let idle_cpu = cpu_of(pid)? - idle_cpu_before;
    let rss_idle = rss_of(pid)?;

    // The same manifests again, a no-op: kubectl's first run against a fresh API server
    // fills its discovery cache, which would otherwise land in the first change's time.
    apply(&cluster, 0).await?;
    let peak = PeakRss::start(pid, Duration::from_millis(10));
    let mut per_change = Vec::with_capacity(opts.changes);
    let (mut acked_all, mut received_all, mut applies) = (Vec::new(), Vec::new(), Vec::new());
    for n in 1..=opts.changes {
        fleet.drain();
        let cpu_before = cpu_of(pid)?;
        let start = Instant::now();
        apply(&cluster, n).await?;
        let apply_ms = millis(start.elapsed());
        let acks = fleet.wait_acked(&manifests::model(n), CHANGE_WITHIN).await;
        let cpu = cpu_of(pid)? - cpu_before;
        let change = summarize(n, start, apply_ms, &acks, cpu);
        eprintln!(
            "bench-fanout: change {n}: {} acked, max {} (kubectl apply {apply_ms:.0} ms)",
            change.acked,
            change.acked_max_ms.map_or("–".to_owned(), |m| format!("{m:.0} ms"))
        );
        for a in acks.iter().flatten() {
            acked_all.push(millis(a.acked - start));
            received_all.push(millis(a.received - start));
        }
        applies.push(apply_ms);
        per_change.push(change);
        tokio::time::sleep(BETWEEN_CHANGES).await;
    }
    let rss_peak = peak.finish(pid).await;
    let complete = per_change.iter().all(|c| c.acked == fleet.len());

    eprintln!("bench-fanout: {} rounds of usage reports", opts.usage_rounds);
    let model = manifests::model(opts.changes);
    let mut reporter = usage::Reporter::new(
        cluster.client.clone(),
        &cluster.namespace,
        fleet.sidecars(),
        fleet.last_applied_sequences(),
    );
    let mut rounds = Vec::with_capacity(opts.usage_rounds);
    for _ in 0..opts.usage_rounds {
        let round = reporter.round(&model, USAGE_WITHIN).await?;
        eprintln!(
            "bench-fanout: usage round: {} acked, exact status after {}",
            round.acked.len(),
            round.to_status.map_or_else(
                || format!("– ({})", round.last_status),
                |d| format!("{} ms", d.as_millis())
            )
        );
        rounds.push(round);
    }
    let total = reporter.totals();
    let rss_hwm = hwm_of(pid)?;
    fleet.drain();

    let mut failures: Vec<String> = fleet.failures().to_vec();
    failures.extend(rounds.iter().flat_map(|r| r.failed.iter().cloned()));
    let mut usage_acks: Vec<f64> = rounds.iter().flat_map(|r| r.acked.iter().map(|d| millis(*d))).collect();
    let to_status: Vec<Option<f64>> = rounds.iter().map(|r| r.to_status.map(millis)).collect();
    let result = Fanout {
        sidecars: fleet.len(),
        changes: opts.changes,
        heartbeat_s: HEARTBEAT_S,
        status_interval_s: STATUS_INTERVAL_S,
        setup_ms,
        connect_hello_ms,
        connect_ms,
        connected,
        acked_p50_ms: quantile(&mut acked_all, 0.50),
        acked_p99_ms: quantile(&mut acked_all, 0.99),
        acked_max_ms: if complete { quantile(&mut acked_all, 1.0) } else { None },
        received_p50_ms: quantile(&mut received_all, 0.50),
        received_p99_ms: quantile(&mut received_all, 0.99),
        received_max_ms: if complete {
            quantile(&mut received_all, 1.0)
        } else {
            None
        },
        apply_p50_ms: quantile(&mut applies, 0.50),
        operator_cpu_ms_per_change: mean(per_change.iter().map(|c| c.operator_cpu_ms)),
        per_change,
        operator_rss_ready_mib: rss_ready as f64 / MIB,
        operator_rss_idle_mib: rss_idle as f64 / MIB,
        operator_rss_peak_mib: rss_peak as f64 / MIB,
        operator_rss_hwm_mib: rss_hwm as f64 / MIB,
        operator_cpu_idle_ms_per_s: millis(idle_cpu) / IDLE_FOR.as_secs_f64(),
        operator_cpu_connect_ms: millis(cpu_connect),
        usage_reports: usage_acks.len(),
        usage_rounds: rounds.len(),
        usage_to_status_ms: to_status
            .iter()
            .copied()
            .collect::<Option<Vec<f64>>>()
            .and_then(|v| v.into_iter().reduce(f64::max)),
        usage_to_status_ms_rounds: to_status,
        usage_ack_p50_ms: quantile(&mut usage_acks, 0.50),
        usage_ack_max_ms: quantile(&mut usage_acks, 1.0),
        usage_resent: rounds.iter().map(|r| r.resent).sum(),
        usage_total_usd: total.cost.to_string(),
        failures: failures.len(),
        failure_samples: failures.into_iter().take(5).collect(),
    };
    fleet.stop().await;
    operator.process.terminate().await?;
    let _ = std::fs::remove_dir_all(&opts.work_dir);
    Ok(result)
}

/// `kubectl apply` of the manifests at change `n`.
async fn apply(cluster: &TestCluster, n: usize) -> Result<()> {
    cluster
        .kubectl_ns(&["apply", "-f", "-"], Some(&manifests::manifests(n)))
        .await?
        .ok()
        .with_context(|| format!("kubectl apply of change {n}"))?;
    Ok(())
}

fn summarize(n: usize, start: Instant, apply_ms: f64, acks: &[Option<Ack>], cpu: Duration) -> Change {
    let mut acked: Vec<f64> = acks.iter().flatten().map(|a| millis(a.acked - start)).collect();
    let mut received: Vec<f64> = acks.iter().flatten().map(|a| millis(a.received - start)).collect();
    let all = acked.len() == acks.len();
    Change {
        change: n,
        apply_ms,
        acked: acked.len(),
        acked_p50_ms: quantile(&mut acked, 0.50),
        acked_p99_ms: quantile(&mut acked, 0.99),
        acked_max_ms: if all { quantile(&mut acked, 1.0) } else { None },
        received_max_ms: if all { quantile(&mut received, 1.0) } else { None },
        operator_cpu_ms: millis(cpu),
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    (!values.is_empty()).then(|| percentile(values, q))
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0_u32), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / f64::from(n) }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
