//! Cluster mode: the sidecar's side of the control protocol (`sluice_crds::control`).
//!
//! One task holds the config stream open: it applies each snapshot atomically through
//! [`ConfigStore::apply`], saves it, and acks it; a snapshot that does not compile is refused
//! and the running config stays. When the stream fails it reconnects with exponential backoff
//! and full jitter, trying the next control-plane URL, re-reading the token file (projected
//! tokens rotate) and the CA file each time. At start the last saved snapshot is applied
//! first, so a sidecar whose operator is away still serves (fail static).
//!
//! Another task cuts the usage ledger into a queue of reports ([`usage::Reports`]) every
//! report interval and sends them in order; one the operator refuses for good (403) is dropped,
//! not resent forever. Usage is on disk from the moment its request settles: in the journal
//! ([`journal`]) until it is cut, then in the saved queue until acked; a restart replays both.
//! On SIGTERM the rest is cut into a final report and the whole queue is sent ([`ControlClient::flush`]).
//!
//! A third sends the budget accounts' asks for more allowance ([`allowance`]).

mod allowance;
pub mod backoff;
pub mod journal;
mod reporting;
pub mod state;
pub mod usage;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use futures::StreamExt;
use sluice_crds::{
    ConfigSnapshot,
    control::{ACK_PATH, BudgetSpend, ConfigAck, Hello, PodIdentity, WATCH_PATH, WatchEvent},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::{
    backoff::{Pacing, backoff, jitter, random},
    reporting::resume_journal,
    state::{SNAPSHOT_FILE, USAGE_FILE, UsageState},
    usage::Reports,
};
use crate::config::ConfigStore;

/// How cluster mode connects.
#[derive(Debug, Clone)]
pub struct Options {
    /// Control-plane URLs, tried in turn (`https://sluice-operator.sluice-system.svc:8443`).
    pub urls: Vec<String>,
    /// The operator's CA certificate (PEM).
    pub ca_file: PathBuf,
    /// The projected ServiceAccount token (audience `sluice`).
    pub token_file: PathBuf,
    /// Where the last snapshot, the usage journal and unacked reports are kept.
    pub state_dir: PathBuf,
    /// How often usage is reported.
    pub report_interval: Duration,
    /// The longest pause between reconnects.
    pub max_backoff: Duration,
}

/// Why one connection attempt or call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A local file could not be read.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate, or the client could not be built.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The request failed in transport.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// The operator answered with an error status.
    #[error("operator answered {status}: {body}")]
    Refused {
        /// The status.
        status: reqwest::StatusCode,
        /// Its explanation.
        body: String,
    },
    /// Nothing arrived for three heartbeats.
    #[error("the config stream went silent")]
    Silent,
    /// A line of the stream is not a known event.
    #[error("bad event on the config stream: {0}")]
    BadEvent(serde_json::Error),
}

impl ControlError {
    /// Whether a replica that does not lead answered (DESIGN §6.4: only the leader serves
    /// sidecars; the others refuse with 503).
    pub fn is_follower_refusal(&self) -> bool {
        matches!(self, Self::Refused { status, .. } if *status == reqwest::StatusCode::SERVICE_UNAVAILABLE)
    }
}

/// The shared state of the two tasks.
#[derive(Debug)]
struct Shared {
    options: Options,
    store: Arc<ConfigStore>,
    /// The pod, once the operator said who we are.
    pod: Mutex<Option<PodIdentity>>,
    /// The URL that answered last.
    url: Mutex<String>,
    reports: Mutex<Reports>,
    /// Spend to restore into budget accounts once they exist.
    restore: Mutex<Vec<BudgetSpend>>,
    /// The HTTPS client, rebuilt on every reconnect (the CA may have rotated) and reused by
    /// acks and reports in between so they keep their connection.
    http: Mutex<Option<reqwest::Client>>,
}

/// The longest pause between two attempts of one ack.
const ACK_MAX_BACKOFF: Duration = Duration::from_secs(5);

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running cluster-mode client.
#[derive(Debug, Clone)]
pub struct ControlClient {
    shared: Arc<Shared>,
}

impl ControlClient {
    /// Applies the saved snapshot (fail static) and starts the stream and report tasks.
    pub fn start(options: Options, store: Arc<ConfigStore>, shutdown: CancellationToken) -> (Self, JoinHandle<()>) {
        // Before any snapshot applies: every account of cluster mode asks through it.
        let (asker, asks) = tokio::sync::mpsc::unbounded_channel();
        store.budgets().set_asker(asker);
        match state::load::<ConfigSnapshot>(&options.state_dir, SNAPSHOT_FILE) {
            Ok(Some(snapshot)) => match store.apply(&snapshot) {
                Ok(_) => {
                    tracing::info!(version = %snapshot.version, "serving the last saved config until the operator answers")
                }
                Err(e) => tracing::warn!(error = %e, "the saved config no longer applies; waiting for the operator"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the saved config; waiting for the operator"),
        }
        let usage = match state::load::<UsageState>(&options.state_dir, USAGE_FILE) {
            Ok(state) => state.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the saved usage reports; starting without them");
                UsageState::default()
            }
        };
        let usage = Reports::new(usage);
        if let Some(ledger) = store.recorder().ledger.as_ref() {
            resume_journal(&options.state_dir, usage.state().journal_floor, ledger);
        }
        if !usage.is_empty() {
            tracing::info!(
                reports = usage.len(),
                "usage reports saved before the restart will be sent"
            );
        }
        let shared = Arc::new(Shared {
            url: Mutex::new(options.urls.first().cloned().unwrap_or_default()),
            options,
            store,
            pod: Mutex::new(None),
            reports: Mutex::new(usage),
            restore: Mutex::new(Vec::new()),
            http: Mutex::new(None),
        });
        let client = Self { shared };
        let stream = client.clone();
        let reporter = client.clone();
        let asker = client.clone();
        let stop = shutdown.clone();
        let stop_asks = shutdown.clone();
        let handle = tokio::spawn(async move {
            let reports = tokio::spawn(async move { reporter.report_until(stop).await });
            let asking = tokio::spawn(async move { asker.ask_until(asks, stop_asks).await });
            stream.stream_until(shutdown).await;
            let _ = reports.await;
            let _ = asking.await;
        });
        (client, handle)
    }

    /// The current client, built on first use.
    fn http(&self) -> Result<reqwest::Client, ControlError> {
        if let Some(client) = locked(&self.shared.http).clone() {
            return Ok(client);
        }
        self.fresh_http()
    }

    /// A client built from the CA file as it is now.
    fn fresh_http(&self) -> Result<reqwest::Client, ControlError> {
        let path = &self.shared.options.ca_file;
        let pem = std::fs::read(path).map_err(|source| ControlError::File {
            path: path.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ControlError::Tls(e.to_string()))?;
        if certs.is_empty() {
            return Err(ControlError::Tls(format!("{} holds no certificate", path.display())));
        }
        let client = reqwest::Client::builder()
            .tls_certs_only(certs)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ControlError::Tls(e.to_string()))?;
        *locked(&self.shared.http) = Some(client.clone());
        Ok(client)
    }

    fn token(&self) -> Result<String, ControlError> {
        let path = &self.shared.options.token_file;
        std::fs::read_to_string(path)
            .map(|t| t.trim().to_owned())
            .map_err(|source| ControlError::File {
                path: path.clone(),
                source,
            })
    }

    async fn stream_until(&self, shutdown: CancellationToken) {
        let urls = self.shared.options.urls.clone();
        let mut pacing = Pacing::new(self.shared.options.max_backoff);
        let mut index = 0usize;
        loop {
            let url = urls.get(index % urls.len().max(1)).cloned().unwrap_or_default();
            let started = Instant::now();
            let result = tokio::select! {
                r = self.stream_once(&url) => r,
                () = shutdown.cancelled() => return,
            };
            let follower = matches!(&result, Err(e) if e.is_follower_refusal());
            match result {
                Ok(()) => tracing::warn!(url, "the config stream ended; reconnecting"),
                Err(e) => {
                    let serving = if self.shared.store.current().is_some() {
                        "serving the current config"
                    } else {
                        "no config to serve until it answers"
                    };
                    tracing::warn!(url, error = %crate::wire::with_causes(&e), "control plane unavailable; {serving}");
                }
            }
            index += 1;
            let pause = jitter(pacing.next(follower, started.elapsed()), random());
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn stream_once(&self, url: &str) -> Result<(), ControlError> {
        let http = self.fresh_http()?;
        let response = http
            .get(format!("{url}{WATCH_PATH}"))
            .bearer_auth(self.token()?)
            .send()
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(ControlError::Refused { status, body });
        }
        *locked(&self.shared.url) = url.to_owned();
        // An ack is retried while its stream lasts and no newer snapshot supersedes it (a
        // late ack of an older version would make the operator think the sidecar behind).
        let alive = CancellationToken::new();
        let _ended = alive.clone().drop_guard();
        let mut ack_scope = alive.child_token();
        let mut silent_after = Duration::from_secs(45);
        let mut body = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(silent_after, body.next()).await {
                Err(_) => return Err(ControlError::Silent),
                Ok(None) => return Ok(()),
                Ok(Some(chunk)) => chunk?,
            };
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event: WatchEvent = serde_json::from_slice(line).map_err(ControlError::BadEvent)?;
                match event {
                    WatchEvent::Hello(hello) => {
                        silent_after = Duration::from_secs(hello.heartbeat_secs.max(1).saturating_mul(3));
                        self.hello(hello);
                    }
                    WatchEvent::Snapshot(snapshot) => {
                        ack_scope.cancel();
                        ack_scope = alive.child_token();
                        let traced = crate::telemetry::control::applying(line, &snapshot.version);
                        self.apply(&http, url, snapshot, ack_scope.clone(), traced);
                    }
                    WatchEvent::Heartbeat => {}
                }
            }
        }
    }

    fn hello(&self, hello: Hello) {
        tracing::info!(pod = %hello.pod.name, namespace = %hello.pod.namespace,
            last_applied_sequence = hello.last_applied_sequence, "connected to the control plane");
        *locked(&self.shared.pod) = Some(hello.pod.clone());
        let changed = locked(&self.shared.reports).hello(&hello);
        if changed {
            self.save_usage();
        }
        *locked(&self.shared.restore) = hello.budgets;
        self.restore_spend();
    }

    /// Puts the operator's record of this pod's spend into the budget accounts that exist.
    fn restore_spend(&self) {
        let now = jiff::Timestamp::now();
        let budgets = self.shared.store.budgets();
        locked(&self.shared.restore).retain(|spend| match budgets.get(&spend.budget) {
            Some(account) => {
                account.restore(spend.period_start, spend.spent, now);
                false
            }
            None => true,
        });
    }

    fn apply(
        &self,
        http: &reqwest::Client,
        url: &str,
        snapshot: ConfigSnapshot,
        ack_scope: CancellationToken,
        traced: Option<opentelemetry::Context>,
    ) {
        let result = self.shared.store.apply(&snapshot);
        let refused = result.as_ref().err().map(ToString::to_string);
        crate::telemetry::control::applied(traced.as_ref(), refused.as_deref());
        match result {
            Ok(changed) => {
                if changed {
                    tracing::info!(version = %snapshot.version, routes = snapshot.routes.len(), "config applied");
                }
                self.restore_spend();
                if let Err(e) = state::save_snapshot(&self.shared.options.state_dir, &snapshot) {
                    tracing::warn!(error = %e, "cannot save the config; a restart without the operator would not serve it");
                }
                let ack = ConfigAck {
                    version: snapshot.version,
                };
                let (http, url, client) = (http.clone(), url.to_owned(), self.clone());
                // The ack carries the apply span's `traceparent` (see `telemetry::attempt::traced`).
                tokio::spawn(crate::telemetry::attempt::scope(traced, async move {
                    tokio::select! {
                        () = client.send_ack(http, &url, &ack) => {}
                        () = ack_scope.cancelled() => {}
                    }
                }));
            }
            Err(e) => {
                tracing::error!(version = %snapshot.version, error = %e, "config refused; the running config stays");
            }
        }
    }

    /// Sends `ack` until the operator takes it; the caller stops it when its stream ends.
    ///
    /// The first try shares the stream's connection, to the replica that sent the snapshot. A
    /// failed one (that replica stopped leading, the connection broke) is retried on a new
    /// connection each time, which behind a Service may reach another replica; a lost ack
    /// would leave the sidecar counted out of sync.
    async fn send_ack(&self, mut http: reqwest::Client, url: &str, ack: &ConfigAck) {
        let mut attempt = 0u32;
        loop {
            match self.ack_once(&http, url, ack).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, version = %ack.version, "ack failed; retrying"),
            }
            tokio::time::sleep(backoff(attempt, ACK_MAX_BACKOFF, random())).await;
            attempt = attempt.saturating_add(1);
            match self.fresh_http() {
                Ok(fresh) => http = fresh,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot rebuild the control client; retrying the ack on the old one")
                }
            }
        }
    }

    async fn ack_once(&self, http: &reqwest::Client, url: &str, ack: &ConfigAck) -> Result<(), ControlError> {
        let request = http
            .post(format!("{url}{ACK_PATH}"))
            .bearer_auth(self.token()?)
            .timeout(Duration::from_secs(10))
            .json(ack);
        let response = crate::telemetry::attempt::traced(request).send().await?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        Err(ControlError::Refused {
            status,
            body: response.text().await.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests;
