//! The real `sluice-operator` binary as a child process, sidecars in cluster mode, and pods
//! with tokens bound to them — for end-to-end tests against the real API server
//! ([`crate::cluster`]).
//!
//! Like the sidecar, the operator binary is built by the test command, not by the tests:
//! `$SLUICE_OPERATOR_BIN`, else `target/debug/sluice-operator` in the workspace.
//!
//! Every process here binds port 0 and reports where it listens in an address file
//! ([`crate::addresses`]); spawning one waits for that report.
//!
//! Each test runs its own operator with `--watch-namespace` set to the test's namespace and
//! its leader Lease (and usage ledgers) in it, so the tests of one binary share the API server
//! without sharing an operator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::addresses::{self, Addresses, NotBound, collect, listener};
use crate::cluster::TestCluster;

/// Overrides where the operator binary is.
pub const OPERATOR_BIN_ENV: &str = "SLUICE_OPERATOR_BIN";

/// How long a process may take to come up (a bound, not a target).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The operator binary this test run uses.
pub fn operator_binary() -> Result<PathBuf> {
    crate::sidecar::workspace_binary(OPERATOR_BIN_ENV, "sluice-operator")
}

/// A child process whose output is kept for the test, killed when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    output: Arc<Mutex<String>>,
    /// The threads copying stderr and stdout into `output`.
    readers: Vec<JoinHandle<()>>,
}

impl Process {
    /// Spawns `command` with stdout and stderr captured.
    pub fn spawn(name: &str, mut command: Command) -> Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let output = Arc::new(Mutex::new(String::new()));
        let readers = [
            collect(child.stderr.take(), &output),
            collect(child.stdout.take(), &output),
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok(Self {
            name: name.to_owned(),
            child,
            output,
            readers,
        })
    }

    /// Spawns `command`, which was given `--address-file address_file` (a path that does not
    /// exist yet), and waits until the process reports where it listens. When it does not, the
    /// error is a [`NotBound`] carrying its output (see [`NotBound::address_in_use`]).
    pub async fn spawn_reporting(name: &str, command: Command, address_file: &Path) -> Result<(Self, Addresses)> {
        let mut process = Self::spawn(name, command)?;
        let output = Arc::clone(&process.output);
        let output = move || output.lock().map(|s| s.clone()).unwrap_or_default();
        let reported =
            addresses::wait_for_addresses(address_file, &mut process.child, &mut process.readers, &output).await;
        match reported {
            Ok(reported) => Ok((process, reported)),
            Err(e) => {
                let _ = process.kill();
                Err(anyhow::Error::new(e).context(format!("{name} did not start")))
            }
        }
    }

    /// Its process id (for `/proc/<pid>` figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) -> Result<()> {
        let _ = self.child.kill();
        self.child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM and waits for it to exit.
    pub async fn terminate(&mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("running kill")?;
        let deadline = Instant::now() + READY_WITHIN;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("{} did not exit after SIGTERM:\n{}", self.name, self.output());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }

    /// Waits until its output contains `needle`.
    pub async fn wait_for_output(&self, needle: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while !self.output().contains(needle) {
            if Instant::now() > deadline {
                bail!(
                    "{} did not print {needle:?} within {within:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.name, self.output());
        }
    }
}

/// A CA and serving certificate for `127.0.0.1`, made by `sluice-operator certs`.
#[derive(Debug, Clone)]
pub struct Certs {
    /// `ca.crt`, `tls.crt`, `tls.key`.
    pub dir: PathBuf,
}

impl Certs {
    /// Writes them into `dir`.
    pub fn generate(dir: &Path) -> Result<Self> {
        Self::generate_with(&operator_binary()?, dir)
    }

    /// Writes them into `dir` with the operator binary `binary`.
    pub fn generate_with(binary: &Path, dir: &Path) -> Result<Self> {
        let out = Command::new(binary)
            .args(["certs", "--san", "127.0.0.1", "--san", "localhost", "--out"])
            .arg(dir)
            .output()
            .context("running sluice-operator certs")?;
        if !out.status.success() {
            bail!("sluice-operator certs failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Self { dir: dir.to_owned() })
    }

    /// The CA sidecars trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}

/// A running operator, at the addresses it reported.
#[derive(Debug)]
pub struct OperatorProcess {
    /// Its control server (`https://127.0.0.1:PORT`).
    pub control_url: String,
    /// Its admin listener.
    pub admin_addr: SocketAddr,
    /// Its webhook listener, when `--webhook-listen` was given (`127.0.0.1:0` picks a port).
    pub webhook_addr: Option<SocketAddr>,
    /// The process.
    pub process: Process,
    /// Holds the address file.
    _dir: tempfile::TempDir,
}

impl OperatorProcess {
    /// Starts an operator for `cluster`'s namespace named `identity`, with extra flags, and
    /// waits until its listeners are bound (not until it leads: see [`wait_ready`](Self::wait_ready)).
    pub async fn spawn(cluster: &TestCluster, certs: &Certs, identity: &str, extra: &[&str]) -> Result<Self> {
        let log = "info,sluice_operator=debug,kube=warn";
        Self::spawn_binary(&operator_binary()?, cluster, certs, identity, extra, log).await
    }

    /// Like [`spawn`](Self::spawn), running `binary` with `log` as its `SLUICE_LOG` filter.
    ///
    /// `--control-listen ADDR` in `extra` restarts an operator at the address an earlier one
    /// reported, for tests whose sidecars keep its URL across the restart (as pods keep their
    /// Service's name). That port was the kernel's pick for the earlier process, which is gone:
    /// it is free unless something else took it since, the one case retried (`EADDRINUSE`, for
    /// a bound: an outgoing connection's port is released when it closes). No port is ever
    /// probed free and handed over.
    pub async fn spawn_binary(
        binary: &Path,
        cluster: &TestCluster,
        certs: &Certs,
        identity: &str,
        extra: &[&str],
        log: &str,
    ) -> Result<Self> {
        let pinned = extra.contains(&"--control-listen");
        let deadline = Instant::now() + addresses::BOUND_WITHIN;
        loop {
            match Self::spawn_once(binary, cluster, certs, identity, extra, log, &[]).await {
                Err(e)
                    if pinned
                        && Instant::now() < deadline
                        && e.downcast_ref::<NotBound>().is_some_and(NotBound::address_in_use) =>
                {
                    eprintln!("the pinned control address is taken; starting again: {e:#}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    /// Like [`spawn`](Self::spawn), with environment variables set for the operator (e.g.
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub async fn spawn_with_env(
        cluster: &TestCluster,
        certs: &Certs,
        identity: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let log = "info,sluice_operator=debug,kube=warn";
        Self::spawn_once(&operator_binary()?, cluster, certs, identity, extra, log, env).await
    }

    async fn spawn_once(
        binary: &Path,
        cluster: &TestCluster,
        certs: &Certs,
        identity: &str,
        extra: &[&str],
        log: &str,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let address_file = dir.path().join("addresses.json");
        let mut command = Command::new(binary);
        command.arg("run");
        // `--watch-namespace ""` in `extra` watches every namespace.
        if !extra.contains(&"--watch-namespace") {
            command.args(["--watch-namespace", &cluster.namespace]);
        }
        // Short timings for tests, unless `extra` sets them.
        for (flag, value) in [
            ("--lease-duration", "3s"),
            ("--status-interval", "1s"),
            ("--heartbeat", "2s"),
        ] {
            if !extra.contains(&flag) {
                command.args([flag, value]);
            }
        }
        if !extra.contains(&"--control-listen") {
            command.args(["--control-listen", "127.0.0.1:0"]);
        }
        command.args(["--admin-listen", "127.0.0.1:0"]);
        command.arg("--address-file").arg(&address_file);
        // `--tls-secret-name` in `extra`: the operator manages its own certificate.
        if !extra.contains(&"--tls-secret-name") {
            command
                .arg("--tls-cert")
                .arg(certs.dir.join("tls.crt"))
                .arg("--tls-key")
                .arg(certs.dir.join("tls.key"));
        }
        // `--lease-namespace` in `extra`: the operator's own namespace (its Lease and the usage
        // ledgers) is another than the one it serves.
        if !extra.contains(&"--lease-namespace") {
            command.args(["--lease-namespace", &cluster.namespace]);
        }
        command
            .args(["--identity", identity])
            .args(extra)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("SLUICE_LOG", log)
            .envs(env.iter().copied());
        for var in [
            "SLUICE_CONTROL_LISTEN",
            "SLUICE_ADMIN_LISTEN",
            "SLUICE_WEBHOOK_LISTEN",
            "SLUICE_ADDRESS_FILE",
            "POD_NAMESPACE",
            "POD_NAME",
        ] {
            command.env_remove(var);
        }
        let name = format!("operator {identity}");
        let (process, reported) = Process::spawn_reporting(&name, command, &address_file).await?;
        Ok(Self {
            control_url: format!("https://{}", listener(&reported, "control-listen")?),
            admin_addr: listener(&reported, "admin-listen")?,
            webhook_addr: reported.get("webhook-listen").copied(),
            process,
            _dir: dir,
        })
    }

    /// The control address, for `--control-listen` in a restart at the same place.
    pub fn control_addr(&self) -> &str {
        self.control_url.trim_start_matches("https://")
    }

    /// Starts an operator and waits until it leads and is ready.
    pub async fn start(cluster: &TestCluster, certs: &Certs, identity: &str) -> Result<Self> {
        let mut operator = Self::spawn(cluster, certs, identity, &[]).await?;
        operator.wait_ready(READY_WITHIN).await?;
        Ok(operator)
    }

    /// Whether `/readyz` answers 200 (it leads and has reconciled what it found).
    pub async fn is_ready(&self) -> bool {
        let url = format!("http://{}/readyz", self.admin_addr);
        let client = reqwest::Client::new();
        matches!(client.get(url).timeout(Duration::from_secs(2)).send().await, Ok(r) if r.status().is_success())
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if !self.process.is_running() {
                bail!("operator exited:\n{}", self.process.output());
            }
            if self.is_ready().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("operator not ready within {within:?}:\n{}", self.process.output());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        let url = format!("http://{}/metrics", self.admin_addr);
        Ok(reqwest::get(url).await?.text().await?)
    }
}

/// A stored pod (it never runs) labelled as carrying a sidecar; returns its UID.
pub async fn create_pod(client: &Client, namespace: &str, name: &str, labels: &[(&str, &str)]) -> Result<String> {
    let mut all: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    all.insert("sluice.dev/sidecar".into(), "injected".into());
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(all),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("sluice-test-app:never-pulled".into()),
                ..Container::default()
            }],
            automount_service_account_token: Some(false),
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    let created = Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {namespace}/{name}"))?;
    created.metadata.uid.context("the API server gave the pod no UID")
}

/// A token of the namespace's `default` ServiceAccount bound to pod `name` (UID `uid`), for
/// `audience`: what the kubelet would project into the pod.
pub async fn pod_token(client: &Client, namespace: &str, name: &str, uid: &str, audience: &str) -> Result<String> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.to_owned()],
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.to_owned()),
                uid: Some(uid.to_owned()),
            }),
            expiration_seconds: Some(3600),
        },
        ..TokenRequest::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let answer: TokenRequest = api
        .create_subresource("token", "default", &PostParams::default(), &request)
        .await
        .context("requesting a pod-bound token")?;
    Ok(answer.status.map(|s| s.token).unwrap_or_default())
}

/// A pod with its token on disk, as the injected sidecar would see it.
#[derive(Debug, Clone)]
pub struct TestPod {
    /// The pod's name.
    pub name: String,
    /// Its UID.
    pub uid: String,
    /// The token file.
    pub token_file: PathBuf,
    /// The sidecar's state directory (the `emptyDir`).
    pub state_dir: PathBuf,
}

impl TestPod {
    /// Creates pod `name` with `labels` and writes a `sluice`-audience token for it under `dir`.
    pub async fn create(cluster: &TestCluster, dir: &Path, name: &str, labels: &[(&str, &str)]) -> Result<Self> {
        let uid = create_pod(&cluster.client, &cluster.namespace, name, labels).await?;
        let token = pod_token(&cluster.client, &cluster.namespace, name, &uid, "sluice").await?;
        let pod_dir = dir.join(name);
        std::fs::create_dir_all(&pod_dir)?;
        let token_file = pod_dir.join("token");
        std::fs::write(&token_file, token)?;
        Ok(Self {
            name: name.to_owned(),
            uid,
            token_file,
            state_dir: pod_dir.join("state"),
        })
    }
}

/// A sidecar in cluster mode.
#[derive(Debug)]
pub struct ClusterSidecar {
    /// Its API listener.
    pub addr: SocketAddr,
    /// Its admin listener.
    pub admin_addr: SocketAddr,
    /// The process.
    pub process: Process,
    /// Holds the address file.
    _dir: tempfile::TempDir,
}

impl ClusterSidecar {
    /// Starts the sidecar of `pod` against `urls` (comma-separated) trusting `ca`; waits until
    /// its listeners are bound, not until it has a config.
    pub async fn spawn(pod: &TestPod, urls: &str, ca: &Path) -> Result<Self> {
        Self::spawn_with_env(pod, urls, ca, &[]).await
    }

    /// Like [`spawn`](Self::spawn), with extra environment variables (e.g. `SLUICE_LOG`).
    pub async fn spawn_with_env(pod: &TestPod, urls: &str, ca: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let binary = crate::sidecar::sidecar_binary()?;
        let dir = tempfile::tempdir()?;
        let address_file = dir.path().join("addresses.json");
        let mut command = Command::new(binary);
        command
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--address-file")
            .arg(&address_file)
            .args(["--control-plane", urls])
            .arg("--control-plane-ca")
            .arg(ca)
            .arg("--token-file")
            .arg(&pod.token_file)
            .arg("--state-dir")
            .arg(&pod.state_dir)
            .args(["--max-backoff", "1s"]);
        // Reports every 500 ms unless `env` sets the interval.
        if !env.iter().any(|(k, _)| *k == "SLUICE_USAGE_INTERVAL") {
            command.args(["--usage-interval", "500ms"]);
        }
        for var in [
            "SLUICE_LISTEN",
            "SLUICE_ADMIN_LISTEN",
            "SLUICE_ADDRESS_FILE",
            "SLUICE_MANIFESTS",
            "SLUICE_CONTROL_PLANE",
            "SLUICE_STATE_DIR",
            "SLUICE_CONTROL_PLANE_CA",
            "SLUICE_TOKEN_FILE",
        ] {
            command.env_remove(var);
        }
        command.envs(env.iter().copied());
        let name = format!("sidecar {}", pod.name);
        let (process, reported) = Process::spawn_reporting(&name, command, &address_file).await?;
        Ok(Self {
            addr: listener(&reported, "listen")?,
            admin_addr: listener(&reported, "admin-listen")?,
            process,
            _dir: dir,
        })
    }

    /// The API root, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `GET /config` on the admin listener, when a config is loaded.
    pub async fn config(&self) -> Option<serde_json::Value> {
        let url = format!("http://{}/config", self.admin_addr);
        let response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }
}

/// What one chat request through a sidecar got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatAnswer {
    /// The HTTP status.
    pub status: u16,
    /// `x-sluice-backend`.
    pub backend: String,
    /// `x-sluice-cost-usd`.
    pub cost: String,
}

impl ClusterSidecar {
    /// Sends one non-streamed chat request for `model`; `None` when the sidecar did not answer.
    pub async fn chat(&self, model: &str) -> Option<ChatAnswer> {
        let response = reqwest::Client::new()
            .post(format!("{}/chat/completions", self.base_url()))
            .timeout(Duration::from_secs(10))
            .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .ok()?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        Some(ChatAnswer {
            status: response.status().as_u16(),
            backend: header("x-sluice-backend"),
            cost: header("x-sluice-cost-usd"),
        })
    }

    /// Waits until a request for `model` is answered 200 by `backend`.
    pub async fn wait_served_by(&self, model: &str, backend: &str, within: Duration) -> Result<()> {
        eventually(&format!("{model} served by backend {backend}"), within, || async {
            self.chat(model)
                .await
                .filter(|a| a.status == 200 && a.backend == backend)
        })
        .await
        .map(|_| ())
    }
}

/// The holder of Lease `name` in `namespace`.
pub async fn lease_holder(client: &Client, namespace: &str, name: &str) -> Option<String> {
    let api: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), namespace);
    api.get(name).await.ok()?.spec?.holder_identity
}

/// Polls `probe` every 100 ms until it returns `Some`, up to `within`; the error says `what`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many `sluice-sidecar` containers (native sidecar or plain) a pod's JSON holds.
pub fn sidecar_count(pod: &serde_json::Value) -> usize {
    let count = |list: &serde_json::Value| {
        list.as_array()
            .map_or(0, |l| l.iter().filter(|c| c["name"] == "sluice-sidecar").count())
    };
    count(&pod["spec"]["initContainers"]) + count(&pod["spec"]["containers"])
}

/// Waits until the API server injects the sidecar into `pod` (a manifest) in `namespace`,
/// asking with a server-side dry run. The API server sees webhook configurations, their
/// `caBundle` and namespace labels through caches, so one written a moment ago may not count yet;
/// a pod created for real meanwhile would be stored without the sidecar for good.
pub async fn wait_until_injected(c: &TestCluster, namespace: &str, pod: &str, within: Duration) -> Result<()> {
    let args = ["apply", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-"];
    eventually(
        &format!("the webhook injecting into pods of {namespace}"),
        within,
        || async {
            let out = c.kubectl(&args, Some(pod)).await.ok().filter(|o| o.success)?;
            let object: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            (sidecar_count(&object) > 0).then_some(())
        },
    )
    .await
}

/// Posts usage reports to an operator's control server as a pod would, with the pod's token.
#[derive(Debug, Clone)]
pub struct UsagePoster {
    http: reqwest::Client,
    url: String,
}

impl UsagePoster {
    /// A client of the control server at `url` (`https://…`) trusting `certs`' CA.
    pub fn new(certs: &Certs, url: &str) -> Result<Self> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.ca())?)?;
        Ok(Self {
            http: reqwest::Client::builder().tls_certs_only([ca]).build()?,
            url: url.to_owned(),
        })
    }

    /// Sends a report as `pod`; the status and body of the answer, whatever it is.
    pub async fn post(&self, pod: &TestPod, body: &serde_json::Value) -> Result<(u16, String)> {
        let token = std::fs::read_to_string(&pod.token_file)?;
        let response = self
            .http
            .post(format!("{}{}", self.url, sluice_crds::control::USAGE_PATH))
            .bearer_auth(token)
            .json(body)
            .send()
            .await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// Sends a report as `pod`; the acked sequence (an error for any other answer).
    pub async fn send(&self, pod: &TestPod, body: &serde_json::Value) -> Result<u64> {
        let (status, text) = self.post(pod, body).await?;
        anyhow::ensure!(status == 200, "report answered {status}: {text}");
        let answer: serde_json::Value = serde_json::from_str(&text)?;
        answer["sequence"].as_u64().context("no sequence in the ack")
    }
}
