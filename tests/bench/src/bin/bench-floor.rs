//! `bench-floor`: a bare forwarding proxy, the floor the sidecar is measured against (see
//! `sluice_bench::floor`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// A minimal hyper forwarding proxy with no features.
#[derive(Debug, Parser)]
#[command(name = "bench-floor")]
struct Cli {
    /// Address to listen on; port 0 picks a free one (see --address-file).
    #[arg(long, default_value = "127.0.0.1:9101")]
    listen: SocketAddr,
    /// Once bound, write `{"listen":"127.0.0.1:PORT"}` to this file (a temporary file renamed
    /// into place, so it is read whole or not at all): how a launcher learns the port it got.
    #[arg(long)]
    address_file: Option<PathBuf>,
    /// The upstream, `http://127.0.0.1:PORT`.
    #[arg(long)]
    upstream: hyper::Uri,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    sluice_bench::serve::runtime(cli.threads)?.block_on(sluice_bench::floor::run(
        cli.listen,
        cli.address_file.as_deref(),
        &cli.upstream,
    ))
}
