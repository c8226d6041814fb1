//! `sluice-sidecar`: the binary's edge — flags, logging, listeners, signals.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use sluice_sidecar::{
    admin,
    config::ConfigStore,
    listener::{self, ApiState, DEFAULT_MAX_BODY_BYTES},
    manifests,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The Sluice sidecar: an OpenAI- and Anthropic-compatible LLM gateway on loopback.
#[derive(Debug, Parser)]
#[command(name = "sluice-sidecar", version)]
struct Options {
    /// Address of the API listener.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:4000")]
    listen: SocketAddr,
    /// Address of the admin listener (probes, config).
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", default_value = "127.0.0.1:4001")]
    admin_listen: SocketAddr,
    /// Directory of ModelRoute, Budget and Secret YAML files (local mode).
    #[arg(
        long,
        env = "SLUICE_MANIFESTS",
        conflicts_with = "control_plane",
        required_unless_present = "control_plane"
    )]
    manifests: Option<PathBuf>,
    /// URL of the operator's control server (cluster mode).
    #[arg(long, env = "SLUICE_CONTROL_PLANE")]
    control_plane: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// How long in-flight requests may run after SIGTERM.
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE", default_value = "30s")]
    shutdown_grace: sluice_crds::Duration,
    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    init_logging(options.log_format);
    if let Some(url) = &options.control_plane {
        bail!("--control-plane {url}: cluster mode is not available in this version; run with --manifests DIR");
    }
    let store = Arc::new(ConfigStore::default());
    let _watcher = match &options.manifests {
        Some(dir) => {
            let dir = dir
                .canonicalize()
                .with_context(|| format!("--manifests {}", dir.display()))?;
            manifests::reload(&dir, &store);
            Some(manifests::watch(dir.clone(), store.clone()).with_context(|| format!("watching {}", dir.display()))?)
        }
        None => None,
    };

    let api_listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding {}", options.listen))?;
    let admin_listener = TcpListener::bind(options.admin_listen)
        .await
        .with_context(|| format!("binding {}", options.admin_listen))?;
    tracing::info!(api = %api_listener.local_addr()?, admin = %admin_listener.local_addr()?, "listening");

    let shutdown = CancellationToken::new();
    let grace: Duration = options.shutdown_grace.get();
    let state = Arc::new(ApiState {
        config: store.clone(),
        max_body_bytes: options.max_body_bytes,
    });
    let api = tokio::spawn(listener::serve(
        api_listener,
        move |req| listener::api(req, state.clone()),
        shutdown.clone(),
        grace,
    ));
    let admin = tokio::spawn(listener::serve(
        admin_listener,
        move |req| admin::handle(req, store.clone()),
        shutdown.clone(),
        Duration::from_secs(1),
    ));

    wait_for_signal().await?;
    tracing::info!(?grace, "shutting down: draining in-flight requests");
    shutdown.cancel();
    let (api, admin) = tokio::join!(api, admin);
    api.context("API listener")?;
    admin.context("admin listener")?;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
