//! `bench-upstream`: the fast OpenAI-compatible upstream the benchmarks call (see
//! `sluice_bench::upstream`).

use std::net::SocketAddr;

use clap::Parser;

/// A fast OpenAI chat-completions upstream for benchmarks, on loopback.
#[derive(Debug, Parser)]
#[command(name = "bench-upstream")]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    sluice_bench::serve::runtime(cli.threads)?.block_on(sluice_bench::upstream::run(cli.listen))
}
