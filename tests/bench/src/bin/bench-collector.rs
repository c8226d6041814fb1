//! `bench-collector`: a counting OTLP/gRPC receiver for the tracing row of the benchmarks (see
//! `sluice_bench::collector`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Receives OTLP/gRPC trace exports on loopback and counts the spans (`GET /count` on --listen).
#[derive(Debug, Parser)]
#[command(name = "bench-collector")]
struct Cli {
    /// The HTTP listener (`/healthz`, `/count`); port 0 picks a free one (see --address-file).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The OTLP/gRPC listener.
    #[arg(long, default_value = "127.0.0.1:0")]
    grpc: SocketAddr,
    /// Once bound, write `{"listen":…,"grpc":…}` to this file.
    #[arg(long)]
    address_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One worker: a collector stand-in must not take the cores the measured processes use.
    sluice_bench::serve::runtime(1)?.block_on(sluice_bench::collector::run(
        cli.listen,
        cli.grpc,
        cli.address_file.as_deref(),
    ))
}
