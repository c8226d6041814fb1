//! `sluice-test-upstream [--listen 127.0.0.1:0] [--address-file PATH] [--protocol openai|anthropic|gemini]`:
//! an in-test upstream as a process, for tests in other languages. With `--address-file` it
//! writes `{"listen":"127.0.0.1:PORT"}` there once it is bound (the same file the sidecar and the
//! operator write, `sluice_crds::address_file`); it serves until killed.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use sluice_tests::{anthropic_upstream::AnthropicUpstream, gemini_upstream::GeminiUpstream, upstream::Upstream};

/// An upstream whose behaviour the request's model chooses (see `tests/support/upstream.rs`,
/// `anthropic_upstream.rs` and `gemini_upstream.rs`).
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
    /// The wire protocol to speak.
    #[arg(long, value_enum, default_value_t = Protocol::Openai)]
    protocol: Protocol,
}

/// The wire protocols the in-test upstreams speak.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Protocol {
    /// OpenAI's Chat Completions and embeddings, under `/v1`.
    Openai,
    /// Anthropic's Messages API, `/v1/messages`.
    Anthropic,
    /// Google's Gemini API, `/v1beta/models/…`.
    Gemini,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    // Each kind stops when dropped: hold the one started until the process ends.
    let (addr, _running): (SocketAddr, Box<dyn std::any::Any>) = match args.protocol {
        Protocol::Openai => {
            let upstream = Upstream::bind(args.listen).await?;
            (upstream.addr, Box::new(upstream))
        }
        Protocol::Anthropic => {
            let upstream = AnthropicUpstream::bind(args.listen).await?;
            (upstream.addr(), Box::new(upstream))
        }
        Protocol::Gemini => {
            let upstream = GeminiUpstream::bind(args.listen).await?;
            (upstream.addr(), Box::new(upstream))
        }
    };
    if let Some(path) = &args.address_file {
        sluice_crds::address_file::write(path, &[("listen".to_owned(), addr)].into())?;
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
