//! `bench-floor`: a bare forwarding proxy, the floor the sidecar is measured against (see
//! `sluice_bench::floor`).

use std::net::SocketAddr;

use clap::Parser;

/// A minimal hyper forwarding proxy with no features.
#[derive(Debug, Parser)]
#[command(name = "bench-floor")]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9101")]
    listen: SocketAddr,
    /// The upstream, `http://127.0.0.1:PORT`.
    #[arg(long)]
    upstream: hyper::Uri,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    sluice_bench::serve::runtime(cli.threads)?.block_on(sluice_bench::floor::run(cli.listen, &cli.upstream))
}
