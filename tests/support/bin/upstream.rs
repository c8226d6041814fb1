//! `sluice-test-upstream --listen 127.0.0.1:0 [--protocol openai|anthropic|gemini]`: an in-test
//! upstream as a process, for tests in other languages. Its first stdout line is
//! `listening on 127.0.0.1:PORT`; it serves until killed.

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use sluice_tests::{anthropic_upstream::AnthropicUpstream, gemini_upstream::GeminiUpstream, upstream::Upstream};

/// An upstream whose behaviour the request's model chooses (see `tests/support/upstream.rs`,
/// `anthropic_upstream.rs` and `gemini_upstream.rs`).
#[derive(Debug, Parser)]
#[command(name = "sluice-test-upstream")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
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
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;
    drop(stdout);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
