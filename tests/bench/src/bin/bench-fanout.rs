//! `bench-fanout`: the operator fan-out benchmark (see `sluice_bench::fanout`). Writes
//! `fanout.json` and `fanout.md` into `--out-dir` and prints the table; fails only when the
//! measurement could not be made, never on a timing.

// The table is the program's output: printing it is the point.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Parser;
use sluice_bench::fanout::{self, report};

/// Measures how fast a route change reaches many simulated sidecars through the real operator,
/// and how fast their usage reaches status.
#[derive(Debug, Parser)]
#[command(name = "bench-fanout")]
struct Cli {
    /// The release `sluice-operator` binary.
    #[arg(long)]
    operator_bin: PathBuf,
    /// Directory holding `etcd`, `kube-apiserver`, `kubectl` and `helm` (`tests/cluster/build --print-bin-dir`).
    #[arg(long)]
    cluster_bin_dir: PathBuf,
    /// Where `fanout.json` and `fanout.md` go.
    #[arg(long)]
    out_dir: PathBuf,
    /// Simulated sidecars.
    /// (Issue 21's target is for 5,000.)
    #[arg(long, default_value_t = 5000)]
    sidecars: usize,
    /// Route changes applied one after another.
    #[arg(long, default_value_t = 5)]
    changes: usize,
    /// Rounds of usage reports (one from every sidecar each).
    #[arg(long, default_value_t = 3)]
    usage_rounds: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.out_dir).with_context(|| format!("creating {}", cli.out_dir.display()))?;
    let opts = fanout::Options {
        operator_bin: std::path::absolute(&cli.operator_bin)?,
        cluster_bin_dir: std::path::absolute(&cli.cluster_bin_dir)?,
        work_dir: std::env::temp_dir().join(format!("sluice-bench-fanout-{}", std::process::id())),
        sidecars: cli.sidecars,
        changes: cli.changes,
        usage_rounds: cli.usage_rounds,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    // Interrupted, the run is dropped: the operator is killed with it, and the control plane's
    // watchdog takes etcd and the API server down when this process exits.
    let result = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            run = fanout::run(&opts) => run,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = term.recv() => bail!("terminated"),
        }
    });
    let _ = std::fs::remove_dir_all(&opts.work_dir);
    let result = result?;
    let json_path = cli.out_dir.join("fanout.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = cli.out_dir.join("fanout.md");
    std::fs::write(&md_path, report::markdown(&result)).with_context(|| format!("writing {}", md_path.display()))?;
    println!("{}", report::table(&result));
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}
