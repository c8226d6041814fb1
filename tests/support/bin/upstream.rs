//! `sluice-test-upstream --listen 127.0.0.1:0`: the in-test OpenAI upstream as a process, for tests
//! in other languages. Its first stdout line is `listening on 127.0.0.1:PORT`; it serves until killed.

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Result;
use clap::Parser;
use sluice_tests::upstream::Upstream;

/// An OpenAI-compatible upstream whose behaviour the request's `model` chooses (see `tests/support/upstream.rs`).
#[derive(Debug, Parser)]
#[command(name = "sluice-test-upstream")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let upstream = Upstream::bind(args.listen).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", upstream.addr)?;
    stdout.flush()?;
    drop(stdout);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
