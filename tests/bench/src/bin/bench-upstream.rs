//! `bench-upstream`: the fast OpenAI-compatible upstream the benchmarks call (see
//! `sluice_bench::upstream`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// A fast OpenAI chat-completions upstream for benchmarks, on loopback.
#[derive(Debug, Parser)]
#[command(name = "bench-upstream")]
struct Cli {
    /// Address to listen on; port 0 picks a free one (see --address-file).
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Once bound, write `{"listen":"127.0.0.1:PORT"}` to this file (a temporary file renamed
    /// into place, so it is read whole or not at all): how a launcher learns the port it got.
    #[arg(long)]
    address_file: Option<PathBuf>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    sluice_bench::serve::runtime(cli.threads)?
        .block_on(sluice_bench::upstream::run(cli.listen, cli.address_file.as_deref()))
}
