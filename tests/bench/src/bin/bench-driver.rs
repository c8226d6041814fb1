//! `bench-driver`: runs the benchmarks of `tests/bench/run` and writes their report (see
//! `sluice_bench::driver`).

// The report is the program's output: printing it is the point.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Parser;
use sluice_bench::driver::{self, report};

/// Measures the sidecar beside a direct call and a bare forwarding proxy, on loopback.
#[derive(Debug, Parser)]
#[command(name = "bench-driver")]
struct Cli {
    /// The short run (about a minute): fewer requests, same scenarios.
    #[arg(long)]
    quick: bool,
    /// Also measure LiteLLM, Portkey's gateway and onwards, installed by `tests/bench/run --peers`
    /// in this directory (each with a `status` file).
    #[arg(long)]
    peers_dir: Option<PathBuf>,
    /// The operator fan-out results (`fanout.json`, `fanout.md` from `bench-fanout`) to report.
    #[arg(long)]
    fanout_dir: Option<PathBuf>,
    /// Why the operator fan-out was not measured (reported in its place).
    #[arg(long)]
    fanout_missing: Option<String>,
    /// The shared-budget results (`budget.json`, `budget.md` from `bench-budget`) to report.
    #[arg(long)]
    budget_dir: Option<PathBuf>,
    /// Why the shared budget was not measured (reported in its place).
    #[arg(long)]
    budget_missing: Option<String>,
    /// The request-path profile (`tests/bench/profile.md`), included verbatim when present.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Directory with release builds of bench-upstream, bench-floor and sluice-sidecar.
    #[arg(long)]
    bin_dir: PathBuf,
    /// The oha binary.
    #[arg(long, default_value = "oha")]
    oha: PathBuf,
    /// The repository (for the commit measured).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Scratch directory: manifests, sidecar state, logs.
    #[arg(long)]
    work_dir: PathBuf,
    /// Where to write the markdown report.
    #[arg(long)]
    markdown: PathBuf,
    /// Where to write the results as JSON (the plot reads them).
    #[arg(long)]
    json: PathBuf,
    /// The plot's path as the markdown links it, when one will be drawn.
    #[arg(long)]
    plot_link: Option<String>,
    /// Slow streams held open at once for the memory figure.
    #[arg(long, default_value_t = 1000)]
    streams_held: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let opts = driver::Options {
        quick: cli.quick,
        bin_dir: cli.bin_dir,
        oha: cli.oha,
        repo: cli.repo,
        work_dir: cli.work_dir,
        streams_held: cli.streams_held,
        peers_dir: cli.peers_dir,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    // Interrupted (Ctrl-C, or the script's time bound), the run is dropped, which stops every
    // process it started.
    let run = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            run = driver::run(&opts) => run,
            _ = tokio::signal::ctrl_c() => bail!("interrupted; the processes it started were stopped"),
            _ = term.recv() => bail!("terminated; the processes it started were stopped"),
        }
    })?;
    let json = serde_json::to_string_pretty(&run)?;
    std::fs::write(&cli.json, json).with_context(|| format!("writing {}", cli.json.display()))?;
    let extras = report::Extras::read(
        cli.fanout_dir.as_deref(),
        cli.fanout_missing.as_deref(),
        cli.profile.as_deref(),
    )
    .with_budget(cli.budget_dir.as_deref(), cli.budget_missing.as_deref());
    let md = report::markdown(&run, cli.plot_link.as_deref(), &extras);
    std::fs::write(&cli.markdown, &md).with_context(|| format!("writing {}", cli.markdown.display()))?;
    println!("{md}");
    eprintln!("wrote {} and {}", cli.markdown.display(), cli.json.display());
    Ok(())
}
