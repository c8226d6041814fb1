//! `bench-soak`: the bounded soak of issue 10 (see `sluice_bench::soak`). Exits non-zero when a
//! count disagrees, descriptors leak or memory grows beyond the bound.

// The report is the program's output: printing it is the point.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sluice_bench::soak::{self, client::Load, report};

/// Plain and streamed requests at a steady rate through the real sidecar for minutes, its
/// memory and descriptors sampled, every request and micro-dollar accounted for.
#[derive(Debug, Parser)]
#[command(name = "bench-soak")]
struct Cli {
    /// Directory with a release build of sluice-sidecar.
    #[arg(long)]
    bin_dir: PathBuf,
    /// Scratch directory: manifests, sidecar state, its log.
    #[arg(long)]
    work_dir: PathBuf,
    /// Minutes of load.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Plain requests per second.
    #[arg(long, default_value_t = 200)]
    plain_rate: u32,
    /// Streamed requests per second.
    #[arg(long, default_value_t = 20)]
    stream_rate: u32,
    /// Pause between a stream's chunks, microseconds (100 chunks: 5000 holds each stream ~0.5 s).
    #[arg(long, default_value_t = 5000)]
    stream_delay_us: u64,
    /// Requests of one kind in flight at most.
    #[arg(long, default_value_t = 256)]
    max_in_flight: u32,
    /// Ordinary users the requests rotate over.
    #[arg(long, default_value_t = 50)]
    users: u32,
    /// Every Nth request of each kind is the greedy user's (0: none).
    #[arg(long, default_value_t = 8)]
    greedy_every: u32,
    /// Seconds of warm-up whose samples are not judged.
    #[arg(long, default_value_t = 60)]
    warmup_secs: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// The most the sidecar's RSS may grow after the warm-up, MiB.
    #[arg(long, default_value_t = 8.0)]
    rss_bound_mib: f64,
    /// Where to write the markdown section.
    #[arg(long)]
    markdown: PathBuf,
    /// Where to write the figures as JSON.
    #[arg(long)]
    json: PathBuf,
    /// The command to quote in the report (default: this program's arguments).
    #[arg(long)]
    command: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli
        .command
        .clone()
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    let opts = soak::Options {
        bin_dir: cli.bin_dir,
        work_dir: cli.work_dir,
        load: Load {
            plain_rate: cli.plain_rate,
            stream_rate: cli.stream_rate,
            duration: Duration::from_secs_f64(cli.minutes * 60.0),
            max_in_flight: cli.max_in_flight,
            users: cli.users,
            greedy_every: cli.greedy_every,
            stream_model: soak::manifest::stream_model(cli.stream_delay_us),
        },
        stream_delay_us: cli.stream_delay_us,
        warmup: Duration::from_secs(cli.warmup_secs),
        sample_every: Duration::from_secs(cli.sample_secs.max(1)),
        rss_bound: (cli.rss_bound_mib * 1048576.0) as u64,
        command,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    // Interrupted, the run is dropped, which stops the sidecar it started.
    let run = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            run = soak::run(&opts) => run,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the sidecar it started was stopped"),
            _ = term.recv() => anyhow::bail!("terminated; the sidecar it started was stopped"),
        }
    })?;
    let json = serde_json::to_string_pretty(&run)?;
    // The JSON rides along in the markdown too, so the committed report carries every figure.
    let md = format!(
        "{}\n<details><summary>The same run as JSON</summary>\n\n```json\n{json}\n```\n\n</details>\n",
        report::markdown(&run)
    );
    for (path, text) in [(&cli.markdown, &md), (&cli.json, &json)] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{md}");
    eprintln!("wrote {} and {}", cli.markdown.display(), cli.json.display());
    soak::verdict(&run)
}
