//! The shared-budget benchmark (issue 18, item 5; DESIGN §6.3): real sidecar processes, each
//! the sidecar of a stored pod with its own pod-bound token, against the real operator on the
//! real control plane, share one hard `Budget` while open-loop load at a fixed rate is spread
//! over them until the budget is spent. It measures what was served against the limit (the
//! overspend) beside the bound the design promises (the allowance outstanding, which the
//! operator exports as `sluice_operator_budget_outstanding_allowance_usd`), and how much of the budget
//! had been served when the first refusal came (a fleet that behaves like one budget refuses
//! only at the end).
//!
//! Nothing here fails on a figure: an overspend past the bound is reported, not asserted.

pub mod load;
pub mod manifests;
pub mod report;
pub mod route;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use kube::Api;
use sluice_crds::{Budget, MicroUsd, control::AUDIENCE};
use sluice_tests::cluster::{TestCluster, cluster_from_bin_dir};
use sluice_tests::operator::{Certs, OperatorProcess, create_pod, pod_token};
use tokio::sync::watch;

use self::load::Tally;
use self::manifests::{APP_LABEL, BUDGET, REQUEST_COST};
use self::report::Shared;
use crate::driver::procs::{self, Proc};

/// API calls in flight while the pods and tokens are made.
const SETUP_PARALLEL: usize = 16;
/// Bounds on each wait (not targets: past them the run fails or the figure is reported missing).
const GRANTED_WITHIN: Duration = Duration::from_secs(120);
const STATUS_WITHIN: Duration = Duration::from_secs(60);
/// How often the operator's outstanding allowance and the run's progress are looked at.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// With requests refused somewhere and nothing served for this long, the budget is spent.
/// (What stays outstanding then is each sidecar's remainder below one request's reservation.)
/// Long beside a report and a status interval, so a top-up still on its way is not missed.
const QUIET_FOR: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The release `sluice-operator`.
    pub operator_bin: PathBuf,
    /// The release `sluice-sidecar`.
    pub sidecar_bin: PathBuf,
    /// The release `bench-upstream`.
    pub upstream_bin: PathBuf,
    /// Directory holding `etcd`, `kube-apiserver`, `kubectl`.
    pub cluster_bin_dir: PathBuf,
    /// Scratch space (certificates, tokens, state directories, logs).
    pub work_dir: PathBuf,
    /// Sidecar processes.
    pub sidecars: usize,
    /// Requests per second over all of them.
    pub rate: u32,
    /// The Budget's limit.
    pub limit: MicroUsd,
    /// The longest the load runs.
    pub max_load: Duration,
}

/// One sidecar process of the fleet.
struct Sidecar {
    proc: Proc,
    addr: SocketAddr,
    admin: SocketAddr,
}

/// Runs the benchmark.
pub async fn run(opts: &Options) -> Result<Shared> {
    anyhow::ensure!(
        opts.sidecars > 0 && opts.rate > 0,
        "--sidecars and --rate must be at least 1"
    );
    let logs = opts.work_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let cluster = cluster_from_bin_dir("bench-budget", &opts.cluster_bin_dir).await?;
    cluster.install_crds().await?;
    let (_upstream, upstream) = procs::start_server(
        "bench-upstream",
        &opts.upstream_bin,
        &[],
        &logs.join("upstream.addresses.json"),
        "/healthz",
        &logs.join("upstream.log"),
    )
    .await?;
    cluster
        .kubectl_ns(
            &["apply", "-f", "-"],
            Some(&manifests::manifests(opts.limit, &upstream.to_string())),
        )
        .await?
        .ok()
        .context("kubectl apply of the Budget and the route")?;

    eprintln!("bench-budget: creating {} pods and their tokens", opts.sidecars);
    let pods = create_pods(&cluster, &opts.work_dir, opts.sidecars).await?;
    let certs = Certs::generate_with(&opts.operator_bin, &opts.work_dir)?;
    let mut operator =
        OperatorProcess::spawn_binary(&opts.operator_bin, &cluster, &certs, "bench-budget", &[], "info").await?;
    operator.wait_ready(Duration::from_secs(60)).await?;

    eprintln!("bench-budget: starting {} sidecars", opts.sidecars);
    let mut fleet = Vec::with_capacity(pods.len());
    for pod in &pods {
        fleet.push(start_sidecar(opts, pod, &operator.control_url, &certs.ca(), &logs).await?);
    }
    for s in &fleet {
        wait_granted(s.admin).await?;
    }
    eprintln!("bench-budget: measuring the route with its own budget and a route-wide limit");
    let targets: Vec<route::Target> = fleet
        .iter()
        .map(|s| route::Target {
            addr: s.addr,
            pid: s.proc.pid(),
        })
        .collect();
    let route = route::measure(&targets, upstream).await?;
    eprintln!(
        "bench-budget: every sidecar holds an allowance; {} req/s until the budget is spent",
        opts.rate
    );

    let tally: load::SharedTally = Arc::new(Mutex::new(Tally::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let addrs: Vec<SocketAddr> = fleet.iter().map(|s| s.addr).collect();
    let load = tokio::spawn({
        let (tally, rate) = (tally.clone(), opts.rate);
        async move { load::run(&addrs, rate, tally, stop_rx).await }
    });
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    let stopped_by = loop {
        tick.tick().await;
        let outstanding = outstanding(&operator, &cluster.namespace).await;
        let t = load::snapshot(&tally);
        samples.push(report::Sample {
            at_ms: millis(started.elapsed()),
            outstanding,
            served: t.served_cost,
        });
        let quiet = t.last_served.is_none_or(|at| at.elapsed() >= QUIET_FOR);
        if t.first_refusal.is_some() && quiet {
            break "spent";
        }
        if started.elapsed() >= opts.max_load {
            break "time bound";
        }
    };
    let _ = stop_tx.send(true);
    load.await.context("the load task")??;
    let load_s = started.elapsed().as_secs_f64();
    let t = load::snapshot(&tally);
    eprintln!(
        "bench-budget: load stopped ({stopped_by}): {} sent, {} served for ${}",
        t.sent, t.served, t.served_cost
    );

    let status_wait = Instant::now();
    let in_status = wait_status(&cluster, t.served_cost).await;
    let result = report::build(report::Inputs {
        opts,
        tally: &t,
        samples: &samples,
        started,
        load_s,
        stopped_by,
        in_status,
        status_after_ms: millis(status_wait.elapsed()),
        route: Some(route),
    });
    drop(fleet);
    operator.process.terminate().await?;
    Ok(result)
}

/// A pod of the fleet: its token on disk and its state directory.
struct Pod {
    name: String,
    dir: PathBuf,
}

async fn create_pods(cluster: &TestCluster, work_dir: &Path, count: usize) -> Result<Vec<Pod>> {
    let client = &cluster.client;
    let namespace = cluster.namespace.as_str();
    futures::stream::iter(0..count)
        .map(|i| async move {
            let name = format!("shared-{i:03}");
            let uid = create_pod(client, namespace, &name, &[APP_LABEL]).await?;
            let token = pod_token(client, namespace, &name, &uid, AUDIENCE)
                .await
                .with_context(|| format!("token for pod {name}"))?;
            anyhow::ensure!(!token.is_empty(), "the API server returned an empty token for {name}");
            let dir = work_dir.join("pods").join(&name);
            std::fs::create_dir_all(dir.join("state"))?;
            std::fs::write(dir.join("token"), token)?;
            Ok(Pod { name, dir })
        })
        .buffered(SETUP_PARALLEL)
        .try_collect()
        .await
}

/// Starts the sidecar of `pod` in cluster mode, as the webhook would inject it: the product's
/// defaults everywhere (usage interval included), its own token and state directory.
async fn start_sidecar(opts: &Options, pod: &Pod, control: &str, ca: &Path, logs: &Path) -> Result<Sidecar> {
    let address_file = pod.dir.join("addresses.json");
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--control-plane",
        control,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([
        "--address-file".to_owned(),
        address_file.display().to_string(),
        "--control-plane-ca".to_owned(),
        ca.display().to_string(),
        "--token-file".to_owned(),
        pod.dir.join("token").display().to_string(),
        "--state-dir".to_owned(),
        pod.dir.join("state").display().to_string(),
    ])
    .collect();
    // Access lines at this rate would be most of the run's disk writes.
    let env = [("SLUICE_LOG", "warn".to_owned())];
    let log = logs.join(format!("sidecar-{}.log", pod.name));
    let mut proc = Proc::spawn_with_env(
        &format!("sluice-sidecar ({})", pod.name),
        &opts.sidecar_bin,
        &args,
        &env,
        &log,
    )?;
    let reported = proc
        .wait_for_addresses(&address_file)
        .await
        .with_context(|| format!("sidecar of {} (its log: {})", pod.name, log.display()))?;
    let listener = |flag: &str| {
        reported
            .get(flag)
            .copied()
            .with_context(|| format!("{} names no {flag}", address_file.display()))
    };
    Ok(Sidecar {
        addr: listener("listen")?,
        admin: listener("admin-listen")?,
        proc,
    })
}

/// Waits until the sidecar at `admin` holds an allowance of the budget.
async fn wait_granted(admin: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + GRANTED_WITHIN;
    loop {
        if let Ok(text) = procs::get_text(admin, "/budgets").await
            && granted(&text).is_some_and(|g| g > MicroUsd::ZERO)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the sidecar with admin {admin} held no allowance within {GRANTED_WITHIN:?}");
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// The allowance of the benchmark's budget in a sidecar's `/budgets`.
fn granted(budgets: &str) -> Option<MicroUsd> {
    let views: serde_json::Value = serde_json::from_str(budgets).ok()?;
    views
        .as_array()?
        .iter()
        .find(|v| v["budget"].as_str().is_some_and(|b| b.ends_with(&format!("/{BUDGET}"))))?["allowanceUSD"]
        .as_str()?
        .parse()
        .ok()
}

/// The operator's outstanding allowance of the budget (its `/metrics`), when it can be read.
async fn outstanding(operator: &OperatorProcess, namespace: &str) -> Option<MicroUsd> {
    let text = operator.metrics().await.ok()?;
    outstanding_in(&text, namespace)
}

/// Reads `sluice_operator_budget_outstanding_allowance_usd{…budget="shared"…}` from metrics text; the
/// gauge is in dollars as a float, rounded back to micro-dollars.
fn outstanding_in(metrics: &str, namespace: &str) -> Option<MicroUsd> {
    let budget = format!("budget=\"{BUDGET}\"");
    let ns = format!("namespace=\"{namespace}\"");
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("sluice_operator_budget_outstanding_allowance_usd{") && l.contains(&budget) && l.contains(&ns)
        })
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|usd| MicroUsd::new((usd * 1e6).round().max(0.0) as u64))
}

/// Waits until the Budget's `status.spentUSD` is `expected`; returns what it last showed.
async fn wait_status(cluster: &TestCluster, expected: MicroUsd) -> Option<MicroUsd> {
    let api: Api<Budget> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let deadline = Instant::now() + STATUS_WITHIN;
    let mut last = None;
    loop {
        if let Ok(b) = api.get_status(BUDGET).await {
            last = b.status.map(|s| s.spent_usd);
        }
        if last == Some(expected) || Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// Requests the limit pays for.
pub fn requests_in(limit: MicroUsd) -> u64 {
    limit.micros() / REQUEST_COST.micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outstanding_allowance_is_read_for_this_budget_and_namespace_only() {
        let text = "# TYPE sluice_operator_budget_outstanding_allowance_usd gauge\n\
            sluice_operator_budget_outstanding_allowance_usd{namespace=\"other\",budget=\"shared\"} 9.0\n\
            sluice_operator_budget_outstanding_allowance_usd{namespace=\"ns\",budget=\"shared\"} 0.04518\n";
        assert_eq!(outstanding_in(text, "ns"), Some(MicroUsd::new(45_180)));
        assert_eq!(outstanding_in(text, "absent"), None);
    }

    #[test]
    fn the_allowance_is_read_from_the_sidecars_budget_view() {
        let text =
            r#"[{"budget":"ns/other","allowanceUSD":"5.000000"},{"budget":"ns/shared","allowanceUSD":"0.054000"}]"#;
        assert_eq!(granted(text), Some(MicroUsd::new(54_000)));
        assert_eq!(granted("not json"), None);
    }
}
