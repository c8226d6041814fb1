//! `sluice-operator`: `run` the operator, print the `crds`, or make `certs` for the control server.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Client,
    runtime::{
        events::{Recorder, Reporter},
        reflector,
    },
};
use sluice_crds::{Budget, ModelRoute};
use sluice_operator::{
    admin, budget_controller,
    ca_publisher::CaPublisher,
    certs,
    cli::{Cli, Command, LogFormat, RunOptions},
    context::Context,
    control_server::{self, ControlServer, auth::Authenticator},
    leader::LeaderElector,
    managed_certs::{self, ManagedCerts},
    metrics::Metrics,
    pod_controller, push, route_controller, serve, usage,
    webhook::{self, inject::InjectConfig},
};
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds { out } => emit_crds(out),
        Command::Certs { out, sans } => write_certs(&out, &sans),
        Command::Run(options) => {
            let options = *options;
            init_logging(options.log_format);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?
                .block_on(run(options))
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn emit_crds(out: Option<PathBuf>) -> anyhow::Result<()> {
    use std::io::Write;
    let manifests = sluice_crds::crd_manifests().context("serializing the CRDs")?;
    match out {
        Some(dir) => {
            for (file, yaml) in manifests {
                let path = dir.join(file);
                std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            for (i, (_, yaml)) in manifests.iter().enumerate() {
                if i > 0 {
                    writeln!(stdout, "---")?;
                }
                stdout.write_all(yaml.as_bytes())?;
            }
        }
    }
    Ok(())
}

fn write_certs(dir: &std::path::Path, sans: &[String]) -> anyhow::Result<()> {
    let generated = certs::generate(sans)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    certs::write_file(&dir.join("ca.crt"), &generated.ca_pem, false)?;
    certs::write_file(&dir.join("tls.crt"), &generated.cert_pem, false)?;
    certs::write_file(&dir.join("tls.key"), &generated.key_pem, true)?;
    Ok(())
}

fn tls_config(options: &RunOptions) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
        let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
        return Ok(certs::server_config(&cert_pem, &key_pem)?);
    }
    let generated = certs::generate(&options.sans)?;
    if let Some(path) = &options.ca_out {
        certs::write_file(path, &generated.ca_pem, false)?;
        tracing::info!(path = %path.display(), "wrote the generated CA certificate");
    }
    Ok(certs::server_config(
        generated.cert_pem.as_bytes(),
        generated.key_pem.as_bytes(),
    )?)
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn run(options: RunOptions) -> anyhow::Result<()> {
    let inject = Arc::new(
        options
            .inject
            .clone()
            .into_config()
            .context("sidecar injection flags")?,
    );
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let shutdown = CancellationToken::new();
    let (tls, ca_publisher) = serving_tls(&options, &client, &shutdown).await?;
    let metrics = Arc::new(Metrics::default());
    let telemetry = sluice_telemetry::init("sluice-operator", metrics.spans_dropped.clone())
        .context("starting OpenTelemetry tracing from the OTEL_* variables")?;
    if let Some(t) = &telemetry {
        // The endpoint is not logged: a URL may carry credentials.
        tracing::info!(protocol = ?t.settings().protocol, sampler = ?t.settings().sampler, "exporting traces over OTLP");
    }
    let (ready_tx, ready_rx) = watch::channel(false);
    let listeners = bind_listeners(&options).await?;
    tokio::spawn(admin::serve(
        listeners.admin,
        admin::AdminState {
            metrics: metrics.clone(),
            ready: ready_rx,
        },
        shutdown.clone(),
    ));
    spawn_signal_handler(shutdown.clone());
    // The webhook is stateless: every replica serves it from the start, leader or not.
    if let Some(webhook_listener) = listeners.webhook {
        tracing::info!(webhook = %webhook_listener.local_addr()?, "serving the injection webhook");
        let (inject, ca) = (inject.clone(), ca_publisher.clone());
        let handler = move |req| webhook::server::handle(req, inject.clone(), ca.clone());
        tokio::spawn(serve::serve_https(
            webhook_listener,
            tls.clone(),
            handler,
            shutdown.clone(),
        ));
    }

    let identity = options
        .identity
        .clone()
        .unwrap_or_else(|| format!("sluice-operator-{}", std::process::id()));
    let elector = LeaderElector::new(
        client.clone(),
        &options.lease_namespace,
        &options.lease_name,
        &identity,
        options.lease_duration.get(),
    );
    let (ctx, writers) = build_context(&options, &client, &identity, &inject, &metrics);
    // Every replica listens for sidecars; followers answer 503 (see `control_server`).
    let (leading_tx, leading_rx) = watch::channel(false);
    tracing::info!(control = %listeners.control.local_addr()?, admin = %listeners.admin_addr, "serving");
    let server = Arc::new(ControlServer {
        ctx: ctx.clone(),
        auth: Authenticator::new(client.clone()),
        leading: leading_rx,
    });
    let control_stop = shutdown.child_token();
    tokio::spawn(control_server::serve(
        listeners.control,
        tls,
        server,
        control_stop.clone(),
    ));

    tracing::info!(identity, lease = %options.lease_name, "waiting to become the leader");
    let leader = Leader {
        elector,
        ready: ready_tx,
        leading: leading_tx,
        control_stop,
        metrics,
    };
    let result = leader.run(ctx, writers, &shutdown).await;
    if let Some(telemetry) = telemetry {
        telemetry.shutdown(TRACE_FLUSH).await;
    }
    result
}

/// How long the spans of the last reconciles may take to leave at shutdown: well inside the
/// pod's termination grace, whatever the collector does.
const TRACE_FLUSH: Duration = Duration::from_secs(5);

/// The control server's and the webhook's TLS config, with the publisher of the CA when the
/// operator manages its certificates (`--tls-secret-name`); else from files or generated.
async fn serving_tls(
    options: &RunOptions,
    client: &Client,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Arc<rustls::ServerConfig>, Option<Arc<CaPublisher>>)> {
    let Some(secret_name) = &options.tls_secret_name else {
        return Ok((tls_config(options)?, None));
    };
    let (managed, tls) = ManagedCerts::start(
        client.clone(),
        managed_certs::Settings {
            namespace: options.lease_namespace.clone(),
            secret_name: secret_name.clone(),
            webhook_config_name: options.webhook_config_name.clone(),
            names: options.sans.clone(),
            lifetime: options.cert_lifetime.get(),
            renew_before: options.cert_renew_before.get(),
        },
    )
    .await
    .with_context(|| format!("operator-managed certificates in Secret {secret_name}"))?;
    // The CA goes where injected sidecars mount it, unless they read a Secret that
    // something else distributes (`--ca-secret`).
    let publisher = options.inject.ca_secret.is_none().then(|| {
        Arc::new(CaPublisher::new(
            client.clone(),
            options.inject.ca_configmap.clone(),
            options.inject.ca_key.clone(),
            managed.ca(),
        ))
    });
    if let Some(publisher) = &publisher {
        tokio::spawn(publisher.clone().run(shutdown.clone()));
    }
    // Every replica keeps its certificate current, so a new leader serves a valid one.
    tokio::spawn(managed.run(shutdown.clone()));
    Ok((tls, publisher))
}

/// Every listener, bound.
struct Listeners {
    admin: TcpListener,
    admin_addr: SocketAddr,
    control: TcpListener,
    webhook: Option<TcpListener>,
}

/// Binds the admin, control and (with `--webhook-listen`) webhook listeners, in that order,
/// then writes the `--address-file` once all of them are bound.
async fn bind_listeners(options: &RunOptions) -> anyhow::Result<Listeners> {
    let admin = TcpListener::bind(options.admin_listen)
        .await
        .with_context(|| format!("binding {}", options.admin_listen))?;
    let admin_addr = admin.local_addr()?;
    // Every replica binds every listener before the election (followers serve the webhook and
    // answer control calls with 503), so the address file says where each one is from the start.
    let control = TcpListener::bind(options.control_listen)
        .await
        .with_context(|| format!("binding {}", options.control_listen))?;
    let webhook = match options.webhook_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?,
        ),
        None => None,
    };
    if let Some(path) = &options.address_file {
        let mut addresses = sluice_crds::address_file::Addresses::new();
        addresses.insert("admin-listen".into(), admin_addr);
        addresses.insert("control-listen".into(), control.local_addr()?);
        if let Some(listener) = &webhook {
            addresses.insert("webhook-listen".into(), listener.local_addr()?);
        }
        sluice_crds::address_file::write(path, &addresses)?;
    }
    Ok(Listeners {
        admin,
        admin_addr,
        control,
        webhook,
    })
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
}

/// The writers of the context's stores: the controllers fill them while this replica leads.
struct Writers {
    routes: reflector::store::Writer<ModelRoute>,
    budgets: reflector::store::Writer<Budget>,
    pods: reflector::store::Writer<Pod>,
}

/// The shared state of the controllers and the control server, and the writers of its stores.
fn build_context(
    options: &RunOptions,
    client: &Client,
    identity: &str,
    inject: &Arc<InjectConfig>,
    metrics: &Arc<Metrics>,
) -> (Arc<Context>, Writers) {
    let (routes, routes_writer) = reflector::store();
    let (budgets, budgets_writer) = reflector::store();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let reporter = Reporter {
        controller: "sluice-operator".into(),
        instance: Some(identity.to_owned()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        options.settings(inject),
        (routes, budgets, pods),
        Recorder::new(client.clone(), reporter),
        metrics.clone(),
    ));
    let writers = Writers {
        routes: routes_writer,
        budgets: budgets_writer,
        pods: pods_writer,
    };
    (ctx, writers)
}

/// The election and what this replica does while it leads.
struct Leader {
    elector: LeaderElector,
    /// The admin listener's readiness.
    ready: watch::Sender<bool>,
    /// Whether the control server serves sidecars (else it answers 503).
    leading: watch::Sender<bool>,
    /// Stops the control server once this replica no longer leads.
    control_stop: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Leader {
    /// Waits for the lease, runs the controllers while holding it, then stops them and
    /// releases it (or fails, when the lease was lost, so that a restart rejoins the election).
    async fn run(mut self, ctx: Arc<Context>, writers: Writers, shutdown: &CancellationToken) -> anyhow::Result<()> {
        // Ready means serving (DESIGN §6.4). A replica that finds another leader at start is
        // ready at once; one that leads from the start is ready once it serves sidecars too
        // (synced, below), so `helm install --wait` returns when the whole operator works.
        // Once ready, a replica stays ready through a takeover: the webhook never loses an
        // endpoint to it.
        let follower_ready = self.ready.clone();
        let first_round_lost = move || {
            follower_ready.send_if_modified(|ready| !std::mem::replace(ready, true));
        };
        if !self.elector.acquire(shutdown, first_round_lost).await {
            return Ok(());
        }
        self.leading.send_replace(true);
        self.metrics.leader.set(1);

        let work = shutdown.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(route_controller::run(ctx.clone(), writers.routes, work.clone()));
        tasks.spawn(budget_controller::run(ctx.clone(), writers.budgets, work.clone()));
        tasks.spawn(pod_controller::run(ctx.clone(), writers.pods, work.clone()));
        tasks.spawn(push::when_synced(ctx.clone(), self.ready.clone()));
        {
            let ctx = ctx.clone();
            let work = work.clone();
            tasks.spawn(async move { usage::run_flusher(&ctx, work).await });
        }

        let held = self.elector.hold(shutdown).await;
        self.leading.send_replace(false);
        self.metrics.leader.set(0);
        self.control_stop.cancel();
        work.cancel();
        // Let the controllers stop and the flusher write what it holds, within a bound.
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        match held {
            Ok(()) => {
                if let Err(e) = self.elector.release().await {
                    tracing::warn!(error = %e, "could not release the lease");
                }
                Ok(())
            }
            Err(e) => bail!("{e}; exiting so that a restart rejoins the election"),
        }
    }
}
