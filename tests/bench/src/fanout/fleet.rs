//! The simulated sidecars: light clients in this process that speak the real control protocol
//! (`sluice_crds::control`) to the operator, each with its own pod's token and its own HTTPS
//! client — so each holds its own connection, as a real sidecar does (HTTP/2 when the operator
//! offers it: one connection carries the stream, the acks and the reports). One shared HTTP/2
//! connection would not do: a server caps the streams one connection may open (hyper: 200).
//!
//! Each holds `GET /v1/watch` open, and acks every snapshot at once with `POST /v1/ack`, the
//! way the real sidecar does once a snapshot is applied; what it saw goes to the [`Fleet`] as
//! [`Event`]s stamped where they happened.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;
use sluice_crds::control::{ACK_PATH, ConfigAck, USAGE_PATH, WATCH_PATH, WatchEvent};
use sluice_crds::{ConfigSnapshot, UsageAck, UsageReport};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::manifests::{BACKEND, ROUTE};
use super::pods::PodToken;

/// Pause before a simulated sidecar opens its stream again after it failed.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// One simulated sidecar's identity and HTTPS client.
#[derive(Debug)]
pub struct Sidecar {
    /// Its position in the fleet.
    pub index: usize,
    /// Its pod.
    pub pod: PodToken,
    url: String,
    http: reqwest::Client,
}

/// What a simulated sidecar saw, and when.
#[derive(Debug, Clone)]
pub enum Event {
    /// The stream opened with a `hello`.
    Hello {
        /// Which sidecar.
        sidecar: usize,
        /// When the line arrived.
        at: Instant,
        /// The highest usage sequence the operator applied for this pod.
        last_applied_sequence: u64,
    },
    /// A snapshot arrived and its ack was answered `204`.
    Acked {
        /// Which sidecar.
        sidecar: usize,
        /// The route's backend model in the snapshot: which change it carries.
        model: String,
        /// When the snapshot line arrived.
        received: Instant,
        /// When the ack was answered.
        acked: Instant,
    },
    /// The stream or an ack failed; the sidecar opens the stream again.
    Failed {
        /// Which sidecar.
        sidecar: usize,
        /// Why.
        error: String,
    },
}

/// When one sidecar got and acked one change.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    /// The snapshot arrived.
    pub received: Instant,
    /// The ack was answered.
    pub acked: Instant,
}

/// What the fleet knows of one sidecar.
#[derive(Debug, Default)]
struct View {
    hello: Option<Instant>,
    last_applied_sequence: u64,
    /// First ack per model.
    acks: HashMap<String, Ack>,
}

/// The simulated sidecars and what they reported.
#[derive(Debug)]
pub struct Fleet {
    sidecars: Vec<Arc<Sidecar>>,
    views: Vec<View>,
    events: mpsc::UnboundedReceiver<Event>,
    failures: Vec<String>,
    tasks: JoinSet<()>,
}

impl Fleet {
    /// Builds one client per pod for the operator at `url` (trusting `ca_pem`) and opens every
    /// stream at once.
    pub fn connect(url: &str, ca_pem: &[u8], pods: Vec<PodToken>) -> Result<Self> {
        let ca = reqwest::Certificate::from_pem(ca_pem).context("reading the operator's CA")?;
        let mut sidecars = Vec::with_capacity(pods.len());
        for (index, pod) in pods.into_iter().enumerate() {
            let http = reqwest::Client::builder()
                .tls_certs_only([ca.clone()])
                .connect_timeout(Duration::from_secs(30))
                .build()
                .context("building an HTTPS client")?;
            sidecars.push(Arc::new(Sidecar {
                index,
                pod,
                url: url.to_owned(),
                http,
            }));
        }
        let (tx, events) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        for sidecar in &sidecars {
            tasks.spawn(hold(sidecar.clone(), tx.clone()));
        }
        Ok(Self {
            views: sidecars.iter().map(|_| View::default()).collect(),
            sidecars,
            events,
            failures: Vec::new(),
            tasks,
        })
    }

    /// The sidecars.
    pub fn sidecars(&self) -> &[Arc<Sidecar>] {
        &self.sidecars
    }

    /// How many sidecars there are.
    pub fn len(&self) -> usize {
        self.sidecars.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sidecars.is_empty()
    }

    /// Stream or ack failures so far (each followed by a reconnect).
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// When each sidecar's first `hello` arrived.
    pub fn hellos(&self) -> Vec<Option<Instant>> {
        self.views.iter().map(|v| v.hello).collect()
    }

    /// The highest usage sequence the operator reported applied for each sidecar's pod.
    pub fn last_applied_sequences(&self) -> Vec<u64> {
        self.views.iter().map(|v| v.last_applied_sequence).collect()
    }

    fn record(&mut self, event: Event) {
        match event {
            Event::Hello {
                sidecar,
                at,
                last_applied_sequence,
            } => {
                if let Some(v) = self.views.get_mut(sidecar) {
                    v.hello.get_or_insert(at);
                    v.last_applied_sequence = last_applied_sequence;
                }
            }
            Event::Acked {
                sidecar,
                model,
                received,
                acked,
            } => {
                if let Some(v) = self.views.get_mut(sidecar) {
                    v.acks.entry(model).or_insert(Ack { received, acked });
                }
            }
            Event::Failed { sidecar, error } => self.failures.push(format!("sidecar {sidecar}: {error}")),
        }
    }

    /// Closes every stream (the operator sees its sidecars go away).
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }

    /// Takes in what has arrived without waiting.
    pub fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.record(event);
        }
    }

    /// Waits until every sidecar has acked a snapshot whose backend model is `model`, or until
    /// `within` has passed; each sidecar's ack (`None`: not within the bound).
    pub async fn wait_acked(&mut self, model: &str, within: Duration) -> Vec<Option<Ack>> {
        let deadline = tokio::time::Instant::now() + within;
        self.drain();
        while self.views.iter().any(|v| !v.acks.contains_key(model)) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.record(event),
                Ok(None) | Err(_) => break,
            }
        }
        self.views.iter().map(|v| v.acks.get(model).copied()).collect()
    }
}

impl Sidecar {
    /// Sends `report` as the real sidecar does: unchanged again while the operator answers
    /// `503` (not persisted in time). The ack, and how many times it was resent.
    pub async fn report(&self, report: &UsageReport) -> Result<(UsageAck, u32)> {
        let mut resent = 0;
        loop {
            let response = self
                .http
                .post(format!("{}{USAGE_PATH}", self.url))
                .bearer_auth(&self.pod.token)
                .json(report)
                .send()
                .await
                .with_context(|| format!("sending the usage report of {}", self.pod.name))?;
            let status = response.status();
            if status.is_success() {
                let ack: UsageAck = response.json().await.context("reading a usage ack")?;
                return Ok((ack, resent));
            }
            let body = response.text().await.unwrap_or_default();
            if status != reqwest::StatusCode::SERVICE_UNAVAILABLE || resent >= 10 {
                bail!("usage report of {} answered {status}: {body}", self.pod.name);
            }
            resent += 1;
        }
    }
}

/// Keeps one sidecar's stream open until the task is dropped.
async fn hold(sidecar: Arc<Sidecar>, events: mpsc::UnboundedSender<Event>) {
    loop {
        let error = match stream(&sidecar, &events).await {
            Ok(()) => "the config stream ended".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if events
            .send(Event::Failed {
                sidecar: sidecar.index,
                error,
            })
            .is_err()
        {
            return;
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// One stream: reads its lines until it ends, acking each snapshot.
async fn stream(sidecar: &Sidecar, events: &mpsc::UnboundedSender<Event>) -> Result<()> {
    let response = sidecar
        .http
        .get(format!("{}{WATCH_PATH}", sidecar.url))
        .bearer_auth(&sidecar.pod.token)
        .send()
        .await
        .context("opening the config stream")?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("the config stream was answered {status}: {body}");
    }
    let mut body = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk.context("reading the config stream")?);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let at = Instant::now();
            let event: WatchEvent = serde_json::from_slice(&line).context("a line of the config stream")?;
            let sent = match event {
                WatchEvent::Hello(hello) => events.send(Event::Hello {
                    sidecar: sidecar.index,
                    at,
                    last_applied_sequence: hello.last_applied_sequence,
                }),
                WatchEvent::Snapshot(snapshot) => {
                    ack(sidecar, &snapshot).await?;
                    events.send(Event::Acked {
                        sidecar: sidecar.index,
                        model: model_of(&snapshot),
                        received: at,
                        acked: Instant::now(),
                    })
                }
                WatchEvent::Heartbeat => Ok(()),
            };
            if sent.is_err() {
                // The fleet is gone: the benchmark is over.
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn ack(sidecar: &Sidecar, snapshot: &ConfigSnapshot) -> Result<()> {
    let response = sidecar
        .http
        .post(format!("{}{ACK_PATH}", sidecar.url))
        .bearer_auth(&sidecar.pod.token)
        .json(&ConfigAck {
            version: snapshot.version.clone(),
        })
        .send()
        .await
        .context("sending an ack")?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("the ack was answered {status}: {body}");
    }
    Ok(())
}

/// The model of the benchmark route's backend in `snapshot` (empty when it has no such route).
pub fn model_of(snapshot: &ConfigSnapshot) -> String {
    snapshot
        .routes
        .iter()
        .filter(|r| r.key.name == ROUTE)
        .flat_map(|r| r.spec.backends.iter())
        .find(|b| b.name.as_str() == BACKEND)
        .map(|b| b.model.to_string())
        .unwrap_or_default()
}
