//! `sluice-test-upstream [--listen 127.0.0.1:0] [--address-file PATH] [--protocol openai|anthropic|gemini|vertex|azure|bedrock]`:
//! the in-test upstream as a process, for tests in other languages and the node's pods. With
//! `--address-file` it writes `{"listen":"127.0.0.1:PORT"}` there once it is bound (the same file
//! the sidecar and the operator write, `sluice_crds::address_file`); it serves until killed.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use sluice_tests::upstream::{Upstream, Wire};

/// An upstream whose behaviour the request's model chooses (see `tests/support/upstream/`).
#[derive(Debug, Parser)]
#[command(name = "sluice-test-upstream")]
struct Args {
    /// Address to listen on; port 0 picks a free one (see --address-file).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Once bound, write `{"listen":"127.0.0.1:PORT"}` to this file (a temporary file renamed
    /// into place, so it is read whole or not at all): how a launcher learns the port it got.
    #[arg(long)]
    address_file: Option<PathBuf>,
    /// The wire protocols to speak (repeat, or separate with commas); the first answers paths
    /// none of them serves.
    #[arg(long = "protocol", value_enum, value_delimiter = ',', default_values_t = [Wire::OpenAi])]
    protocols: Vec<Wire>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    // It stops when dropped: hold it until the process ends.
    let upstream = Upstream::bind(args.listen, &args.protocols).await?;
    if let Some(path) = &args.address_file {
        sluice_crds::address_file::write(path, &[("listen".to_owned(), upstream.addr)].into())?;
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
