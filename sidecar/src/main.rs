//! `sluice-sidecar`: the binary's edge — flags, logging, listeners, signals.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice_sidecar::{
    accounting::{ledger::UsageLedger, recorder::Recorder},
    admin,
    budget::{Budgets, state_file},
    config::ConfigStore,
    control,
    listener::{self, ApiState, DEFAULT_MAX_BODY_BYTES},
    log_fields, log_line, manifests,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The Sluice sidecar: an OpenAI- and Anthropic-compatible LLM gateway on loopback.
#[derive(Debug, Parser)]
#[command(name = "sluice-sidecar", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeOptions,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print each budget's spend, remaining money and reset time from the local state.
    Status(StatusOptions),
}

#[derive(Debug, Args)]
struct ServeOptions {
    /// Address of the API listener.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:4000")]
    listen: SocketAddr,
    /// Let the API listener bind a non-loopback address. Whoever reaches it spends this pod's
    /// keys and budgets, so this is refused unless asked for.
    #[arg(long, env = "SLUICE_ALLOW_NON_LOOPBACK")]
    allow_non_loopback: bool,
    /// Address of the admin listener (probes and metrics for anyone; config and budgets for
    /// loopback peers only).
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", default_value = "127.0.0.1:4001")]
    admin_listen: SocketAddr,
    /// Once both listeners are bound, write their addresses to this file as one JSON object,
    /// `{"admin-listen":"127.0.0.1:PORT","listen":"127.0.0.1:PORT"}` (written whole: a temporary
    /// file renamed into place). With port 0 in --listen/--admin-listen, this is how whoever
    /// started the sidecar learns the ports it got.
    #[arg(long, env = "SLUICE_ADDRESS_FILE")]
    address_file: Option<PathBuf>,
    /// Directory of ModelRoute, Budget and Secret YAML files (local mode).
    #[arg(long, env = "SLUICE_MANIFESTS", conflicts_with = "control_plane")]
    manifests: Option<PathBuf>,
    /// URL of the operator's control server (cluster mode); a comma-separated list is tried in turn.
    #[arg(long, env = "SLUICE_CONTROL_PLANE")]
    control_plane: Option<String>,
    #[command(flatten)]
    cluster: ClusterOptions,
    #[command(flatten)]
    state: StateOptions,
    /// How often local mode saves budget spend; a crash loses at most this much.
    #[arg(long, env = "SLUICE_STATE_FLUSH_INTERVAL", default_value = "1s")]
    state_flush_interval: sluice_crds::Duration,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// How long in-flight requests may run after SIGTERM.
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE", default_value = "30s")]
    shutdown_grace: sluice_crds::Duration,
    /// Label metrics by user (`x-sluice-user` or the body's `user`); unbounded cardinality.
    #[arg(long, env = "SLUICE_METRICS_USER_LABEL")]
    metrics_user_label: bool,
    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Cluster mode: how to reach and trust the operator.
#[derive(Debug, Args)]
struct ClusterOptions {
    /// The operator's CA certificate (PEM), as the webhook projects it.
    #[arg(
        long,
        env = "SLUICE_CONTROL_PLANE_CA",
        default_value = "/var/run/secrets/sluice/ca.crt"
    )]
    control_plane_ca: PathBuf,
    /// The projected ServiceAccount token (audience `sluice`); re-read on every reconnect.
    #[arg(long, env = "SLUICE_TOKEN_FILE", default_value = "/var/run/secrets/sluice/token")]
    token_file: PathBuf,
    /// How often usage is reported to the operator.
    #[arg(long, env = "SLUICE_USAGE_INTERVAL", default_value = "1s")]
    usage_interval: sluice_crds::Duration,
    /// The longest pause between reconnects to the operator.
    #[arg(long, env = "SLUICE_MAX_BACKOFF", default_value = "30s")]
    max_backoff: sluice_crds::Duration,
}

/// Where cluster mode keeps its state when no --state-dir is given: the injected `emptyDir`.
const CLUSTER_STATE_DIR: &str = "/var/run/sluice";

#[derive(Debug, Args)]
struct StateOptions {
    /// Directory for state kept across restarts (budget spend in local mode). Default:
    /// `$XDG_STATE_HOME/sluice`, else `~/.local/state/sluice`.
    #[arg(long, env = "SLUICE_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct StatusOptions {
    /// Directory of the manifests the sidecar runs with.
    #[arg(long, env = "SLUICE_MANIFESTS")]
    manifests: PathBuf,
    #[command(flatten)]
    state: StateOptions,
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
        .with_timer(log_line::UtcMicros)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .fmt_fields(log_fields::PlainFields)
            .event_format(log_line::PlainLine::new())
            .init(),
        LogFormat::Json => builder.json().init(),
    }
}

impl StateOptions {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.state_dir {
            return Ok(dir.clone());
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .context("no --state-dir given and neither XDG_STATE_HOME nor HOME is set")?;
        Ok(base.join("sluice"))
    }

    /// One state file per manifests directory, so sidecars on one machine do not share spend.
    fn budget_file(&self, manifests: &Path) -> anyhow::Result<PathBuf> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(manifests.as_os_str().as_encoded_bytes());
        let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Ok(self.dir()?.join(format!("budgets-{tag}.json")))
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Status(options)) => status(&options),
        None => serve(cli.serve),
    }
}

/// `sluice-sidecar status`: the budgets of a manifests directory and their saved spend.
fn status(options: &StatusOptions) -> anyhow::Result<()> {
    let dir = options
        .manifests
        .canonicalize()
        .with_context(|| format!("--manifests {}", options.manifests.display()))?;
    let loaded = manifests::load(&dir, &|name| std::env::var(name).ok())?;
    let budgets = Budgets::default();
    let now = jiff::Timestamp::now();
    budgets.apply(&loaded.snapshot.budgets, now)?;
    let file = options.state.budget_file(&dir)?;
    state_file::restore(&file, &budgets, now)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<32} {:>14} {:>14} {:>14} {:<12} {:<30} {:<30}",
        "BUDGET", "LIMIT", "SPENT", "REMAINING", "ENFORCEMENT", "PERIOD START", "RESETS AT"
    )?;
    for account in budgets.all() {
        let v = account.view(now);
        let enforcement = format!("{:?}", v.enforcement).to_lowercase();
        writeln!(
            out,
            "{:<32} {:>14} {:>14} {:>14} {:<12} {:<30} {:<30}",
            v.budget,
            v.limit.to_string(),
            v.spent.to_string(),
            v.remaining.to_string(),
            enforcement,
            v.period_start,
            v.resets_at.as_deref().unwrap_or("never"),
        )?;
    }
    writeln!(out, "(state file: {})", file.display())?;
    Ok(())
}

#[tokio::main]
async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    init_logging(options.log_format);
    if !options.listen.ip().to_canonical().is_loopback() && !options.allow_non_loopback {
        bail!(
            "--listen {} is not a loopback address: anyone who reaches it would spend this pod's API keys \
             and budgets; bind 127.0.0.1 (the default), or pass --allow-non-loopback to mean it",
            options.listen
        );
    }
    let recorder = Recorder {
        user_labels: options.metrics_user_label,
        // Only the operator takes usage reports; local mode keeps spend in its state file.
        ledger: options.control_plane.is_some().then(UsageLedger::default),
        ..Recorder::default()
    };
    // Before any request: the tracer is read once per request and set once per process.
    let telemetry = sluice_telemetry::init("sluice-sidecar", recorder.metrics.spans_dropped.clone())
        .context("starting OpenTelemetry tracing from the OTEL_* variables")?;
    if let Some(t) = &telemetry {
        let s = t.settings();
        // The endpoint is not logged: a URL may carry credentials.
        tracing::info!(protocol = ?s.protocol, sampler = ?s.sampler, "exporting traces over OTLP");
    }
    let store = Arc::new(ConfigStore::new(recorder));
    let shutdown = CancellationToken::new();
    let mode = match (&options.control_plane, &options.manifests) {
        (Some(urls), _) => start_cluster(urls, &options, &store, &shutdown)?,
        (None, Some(dir)) => start_local(dir, &options, &store, &shutdown)?,
        (None, None) => bail!("give --manifests DIR (local mode) or --control-plane URL (cluster mode)"),
    };

    let api_listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding {}", options.listen))?;
    let admin_listener = TcpListener::bind(options.admin_listen)
        .await
        .with_context(|| format!("binding {}", options.admin_listen))?;
    let (api_addr, admin_addr) = (api_listener.local_addr()?, admin_listener.local_addr()?);
    tracing::info!(api = %api_addr, admin = %admin_addr, "listening");
    if let Some(path) = &options.address_file {
        let addresses = [("listen", api_addr), ("admin-listen", admin_addr)]
            .map(|(flag, addr)| (flag.to_owned(), addr))
            .into();
        sluice_crds::address_file::write(path, &addresses)?;
    }

    let grace: Duration = options.shutdown_grace.get();
    // In cluster mode the last usage report must leave before the kubelet's SIGKILL too: the
    // drain gets the grace less what the flush keeps for itself, so the whole shutdown fits
    // the grace.
    let drain = match &mode {
        Mode::Cluster { .. } => grace.saturating_sub(flush_reserve(grace)),
        Mode::Local { .. } => grace,
    };
    let state = Arc::new(ApiState {
        config: store.clone(),
        max_body_bytes: options.max_body_bytes,
    });
    let api = tokio::spawn(listener::serve(
        api_listener,
        move |req| listener::api(req, state.clone()),
        shutdown.clone(),
        drain,
    ));
    let admin_store = store.clone();
    let admin = tokio::spawn(listener::serve(
        admin_listener,
        move |req| admin::handle(req, admin_store.clone()),
        shutdown.clone(),
        Duration::from_secs(1),
    ));

    wait_for_signal().await?;
    let deadline = tokio::time::Instant::now() + grace;
    tracing::info!(?grace, "shutting down: draining in-flight requests");
    shutdown.cancel();
    let (api, admin) = tokio::join!(api, admin);
    api.context("API listener")?;
    admin.context("admin listener")?;
    // Last: requests drained above have settled their spend.
    match mode {
        Mode::Local { flusher, _watcher } => flusher.await.context("budget flusher")?,
        Mode::Cluster { client, task } => {
            // All of what the drain left of the grace, and never less than the reserve.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            client.flush(left.max(flush_reserve(grace))).await;
            task.await.context("control-plane client")?;
        }
    }
    // The spans of the drained requests, in what is left of the grace.
    if let Some(telemetry) = telemetry {
        telemetry
            .shutdown(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await;
    }
    Ok(())
}

/// Of the shutdown grace, what the final usage flush keeps for itself in cluster mode: a
/// quarter, at most 5 s (a report is one small POST; the rest is for retries on a handover).
fn flush_reserve(grace: Duration) -> Duration {
    (grace / 4).min(Duration::from_secs(5))
}

/// What runs beside the listeners, by mode.
enum Mode {
    /// Manifests from a directory, spend in a local state file.
    Local {
        flusher: tokio::task::JoinHandle<()>,
        _watcher: notify::RecommendedWatcher,
    },
    /// Config from the operator, usage to it.
    Cluster {
        client: control::ControlClient,
        task: tokio::task::JoinHandle<()>,
    },
}

fn start_local(
    manifest_dir: &Path,
    options: &ServeOptions,
    store: &Arc<ConfigStore>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Mode> {
    let dir = manifest_dir
        .canonicalize()
        .with_context(|| format!("--manifests {}", manifest_dir.display()))?;
    manifests::reload(&dir, store);
    let watcher =
        manifests::watch(dir.clone(), store.clone()).with_context(|| format!("watching {}", dir.display()))?;
    let state_file = options.state.budget_file(&dir)?;
    match state_file::restore(&state_file, store.budgets(), jiff::Timestamp::now()) {
        Ok(n) => tracing::info!(file = %state_file.display(), budgets = n, "budget spend restored"),
        Err(e) => bail!("{e}; move the file away to start from zero spend"),
    }
    let flusher = tokio::spawn(state_file::flush_until(
        state_file,
        store.budgets().clone(),
        options.state_flush_interval.get(),
        shutdown.clone(),
    ));
    Ok(Mode::Local {
        flusher,
        _watcher: watcher,
    })
}

fn start_cluster(
    urls: &str,
    options: &ServeOptions,
    store: &Arc<ConfigStore>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Mode> {
    let urls: Vec<String> = urls
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() || urls.iter().any(|u| !u.starts_with("https://")) {
        bail!("--control-plane takes https:// URLs (comma-separated), got {urls:?}");
    }
    let cluster = &options.cluster;
    let options = control::Options {
        urls,
        ca_file: cluster.control_plane_ca.clone(),
        token_file: cluster.token_file.clone(),
        state_dir: options
            .state
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(CLUSTER_STATE_DIR)),
        report_interval: cluster.usage_interval.get(),
        max_backoff: cluster.max_backoff.get(),
    };
    let (client, task) = control::ControlClient::start(options, store.clone(), shutdown.clone());
    Ok(Mode::Cluster { client, task })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_flush_keeps_a_quarter_of_the_grace_up_to_five_seconds() {
        assert_eq!(flush_reserve(Duration::from_secs(30)), Duration::from_secs(5));
        assert_eq!(flush_reserve(Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(flush_reserve(Duration::ZERO), Duration::ZERO);
    }
}
