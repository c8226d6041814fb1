//! `bench-budget`: the shared-budget benchmark (see `sluice_bench::budget`). Writes
//! `budget.json` and `budget.md` into `--out-dir` and prints the table; fails only when the
//! measurement could not be made, never on a figure.

// The table is the program's output: printing it is the point.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Parser;
use sluice_bench::budget::{self, report};
use sluice_crds::MicroUsd;

/// Drives one hard Budget shared by many real sidecars through the real operator until it is
/// spent, and measures the overspend beside its bound.
#[derive(Debug, Parser)]
#[command(name = "bench-budget")]
struct Cli {
    /// The release `sluice-operator` binary.
    #[arg(long)]
    operator_bin: PathBuf,
    /// The release `sluice-sidecar` binary.
    #[arg(long)]
    sidecar_bin: PathBuf,
    /// The release `bench-upstream` binary.
    #[arg(long)]
    upstream_bin: PathBuf,
    /// Directory holding `etcd`, `kube-apiserver` and `kubectl` (`tests/cluster/build --print-bin-dir`).
    #[arg(long)]
    cluster_bin_dir: PathBuf,
    /// Where `budget.json` and `budget.md` go.
    #[arg(long)]
    out_dir: PathBuf,
    /// Sidecar processes.
    #[arg(long, default_value_t = 50)]
    sidecars: usize,
    /// Requests per second over all of them.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// The Budget's limit in dollars (each request costs $0.00009).
    #[arg(long, default_value = "2.70")]
    limit: MicroUsd,
    /// The longest the load runs.
    #[arg(long, default_value = "120s")]
    max_load: sluice_crds::Duration,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.out_dir).with_context(|| format!("creating {}", cli.out_dir.display()))?;
    let work_dir = std::env::temp_dir().join(format!("sluice-bench-budget-{}", std::process::id()));
    let opts = budget::Options {
        operator_bin: std::path::absolute(&cli.operator_bin)?,
        sidecar_bin: std::path::absolute(&cli.sidecar_bin)?,
        upstream_bin: std::path::absolute(&cli.upstream_bin)?,
        cluster_bin_dir: std::path::absolute(&cli.cluster_bin_dir)?,
        work_dir: work_dir.clone(),
        sidecars: cli.sidecars,
        rate: cli.rate,
        limit: cli.limit,
        max_load: cli.max_load.get(),
    };
    // 50 sidecars each hold a few connections; the default soft limit may be 1,024.
    sluice_bench::fanout::raise_nofile(cli.sidecars.saturating_mul(64))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    // Interrupted, the run is dropped: every child is killed with it, and the control plane's
    // watchdog takes etcd and the API server down when this process exits.
    let result = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            run = budget::run(&opts) => run,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = term.recv() => bail!("terminated"),
        }
    });
    let kept_logs = cli.out_dir.join("budget-logs");
    let _ = std::fs::remove_dir_all(&kept_logs);
    let _ = std::fs::rename(work_dir.join("logs"), &kept_logs);
    let _ = std::fs::remove_dir_all(&work_dir);
    let result = result?;
    let json_path = cli.out_dir.join("budget.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = cli.out_dir.join("budget.md");
    std::fs::write(&md_path, report::markdown(&result)).with_context(|| format!("writing {}", md_path.display()))?;
    println!("{}", report::table(&result));
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}
