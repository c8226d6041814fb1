//! A real Kubernetes API server for tests.
//!
//! [`cluster`] hands each test a [`TestCluster`]: a `kube::Client`, a fresh
//! namespace (with its `default` ServiceAccount), the kubeconfig path and the
//! `kubectl`/`helm` binaries. Behind it, one control plane per test binary:
//! etcd + kube-apiserver started by `tests/cluster/up` on first use and shared
//! by every test of the binary. Statics never drop, so teardown does not rely
//! on Rust: `up --watch-pid <this process>` leaves a watchdog that runs
//! `tests/cluster/down` as soon as this process exits, however it exits
//! (success, panic, abort, SIGKILL).
//!
//! Which cluster (see `tests/cluster/README.md`):
//! - default: the local control plane, binaries from `$SLUICE_CLUSTER_BIN`,
//!   else `tests/cluster/build --print-bin-dir` (this never builds; run
//!   `tests/cluster/build` first).
//! - `SLUICE_TEST_CLUSTER=external`: the cluster of `$KUBECONFIG` (which must
//!   be set: an ambient `~/.kube/config` is never picked up by accident).
//!
//! When no control plane is available the test is skipped with a loud message
//! on stderr ([`cluster`] returns `Ok(None)`), unless `SLUICE_REQUIRE_CLUSTER=1`
//! (CI), which turns the skip into a panic.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// `1`: a missing control plane fails the test instead of skipping it.
pub const REQUIRE_ENV: &str = "SLUICE_REQUIRE_CLUSTER";
/// Directory holding `etcd`, `kube-apiserver`, `kubectl`, `helm`.
pub const BIN_ENV: &str = "SLUICE_CLUSTER_BIN";
/// `external`: use the cluster of `$KUBECONFIG` instead of starting one.
pub const MODE_ENV: &str = "SLUICE_TEST_CLUSTER";

/// The control plane shared by the tests of this binary.
#[derive(Debug, Clone)]
struct Shared {
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    helm: PathBuf,
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
enum Availability {
    Ready(Shared),
    /// Binaries not built/found: skip (or fail under `SLUICE_REQUIRE_CLUSTER=1`).
    Unavailable(String),
    /// Binaries there but the control plane did not come up: always a failure.
    Failed(String),
}

static SHARED: OnceLock<Availability> = OnceLock::new();
static NAMESPACE_SEQ: AtomicU32 = AtomicU32::new(0);
/// What `kubectl apply -f crds/` printed, once per process (CRDs are cluster-scoped).
static CRDS: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// One test's view of the cluster.
pub struct TestCluster {
    /// A client for the cluster (admin).
    pub client: Client,
    /// A namespace made for this test, with a `default` ServiceAccount.
    pub namespace: String,
    /// Admin kubeconfig; `kubectl --kubeconfig` / `KUBECONFIG` take it.
    pub kubeconfig: PathBuf,
    /// `kubectl` binary.
    pub kubectl: PathBuf,
    /// `helm` binary.
    pub helm: PathBuf,
    /// State of the local control plane (`pki/ca.crt`, `logs/`); `None` for an external cluster.
    pub state_dir: Option<PathBuf>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("namespace", &self.namespace)
            .field("kubeconfig", &self.kubeconfig)
            .field("kubectl", &self.kubectl)
            .field("helm", &self.helm)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// What a command printed and how it ended.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl CmdOutput {
    /// Stdout if the command succeeded, otherwise an error carrying both streams.
    pub fn ok(self) -> Result<String> {
        if self.success {
            Ok(self.stdout)
        } else {
            Err(anyhow!(
                "command failed\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout,
                self.stderr
            ))
        }
    }
}

/// The repository root (the parent of `tests/`).
pub fn repo_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

/// A cluster and a fresh namespace for the test `test` (the name goes into the
/// namespace name). `Ok(None)`: no control plane here, the test should return
/// early; a loud skip message has been printed. Panics instead of skipping
/// when `SLUICE_REQUIRE_CLUSTER=1`.
pub async fn cluster(test: &str) -> Result<Option<TestCluster>> {
    let availability = match SHARED.get() {
        Some(a) => a.clone(),
        None => tokio::task::spawn_blocking(|| SHARED.get_or_init(start).clone())
            .await
            .context("starting the control plane")?,
    };
    let shared = match availability {
        Availability::Ready(shared) => shared,
        Availability::Failed(error) => bail!("the test control plane failed to start: {error}"),
        Availability::Unavailable(reason) => {
            skip(test, &reason);
            return Ok(None);
        }
    };
    open(shared, test).await.map(Some)
}

/// Like [`cluster`], but the local control plane's binaries come from `bin_dir` (not from
/// `$SLUICE_CLUSTER_BIN` or `tests/cluster/build`), and a missing one is an error, never a
/// skip: for tools (the benchmarks) that are handed the directory.
pub async fn cluster_from_bin_dir(test: &str, bin_dir: &Path) -> Result<TestCluster> {
    let availability = match SHARED.get() {
        Some(a) => a.clone(),
        None => {
            let bin_dir = bin_dir.to_owned();
            tokio::task::spawn_blocking(move || SHARED.get_or_init(|| start_from(&bin_dir)).clone())
                .await
                .context("starting the control plane")?
        }
    };
    match availability {
        Availability::Ready(shared) => open(shared, test).await,
        Availability::Failed(error) | Availability::Unavailable(error) => {
            bail!("no control plane from {}: {error}", bin_dir.display())
        }
    }
}

/// A client and a fresh namespace for `test` on the started control plane.
async fn open(shared: Shared, test: &str) -> Result<TestCluster> {
    let client = client_for(&shared.kubeconfig).await?;
    let namespace = namespace_name(test);
    create_namespace(&client, &namespace).await?;
    Ok(TestCluster {
        client,
        namespace,
        kubeconfig: shared.kubeconfig,
        kubectl: shared.kubectl,
        helm: shared.helm,
        state_dir: shared.state_dir,
    })
}

impl TestCluster {
    /// A new client for the same cluster (a `kube::Client` is bound to the
    /// runtime it was made in).
    pub async fn new_client(&self) -> Result<Client> {
        client_for(&self.kubeconfig).await
    }

    /// Runs `kubectl ARGS` against this cluster (no namespace implied), with
    /// `stdin` fed in when given. A non-zero exit is returned, not an error.
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<CmdOutput> {
        let mut cmd = tokio::process::Command::new(&self.kubectl);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args);
        run_command(cmd, &self.kubectl, stdin).await
    }

    /// Runs `kubectl ARGS` in this test's namespace.
    pub async fn kubectl_ns(&self, args: &[&str], stdin: Option<&str>) -> Result<CmdOutput> {
        let ns = format!("--namespace={}", self.namespace);
        let mut all = vec![ns.as_str()];
        all.extend_from_slice(args);
        self.kubectl(&all, stdin).await
    }

    /// Runs `helm ARGS` against this cluster, with helm's caches kept out of `$HOME`.
    pub async fn helm(&self, args: &[&str], stdin: Option<&str>) -> Result<CmdOutput> {
        let home = match &self.state_dir {
            Some(dir) => dir.join("helm"),
            None => std::env::temp_dir().join(format!("sluice-helm-{}", std::process::id())),
        };
        let mut cmd = tokio::process::Command::new(&self.helm);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .args(args);
        run_command(cmd, &self.helm, stdin).await
    }

    /// Installs `crds/` the way users do (`kubectl apply -f crds/`, client-side)
    /// and waits until both CRDs are Established. Runs once per test binary;
    /// every caller gets what that one `kubectl apply` printed.
    pub async fn install_crds(&self) -> Result<String> {
        let out = CRDS
            .get_or_try_init(|| async {
                // With the trailing slash, as users type it (and a symlinked dir works).
                let dir = format!("{}/", repo_root().join("crds").display());
                let out = self
                    .kubectl(&["apply", "-f", &dir], None)
                    .await?
                    .ok()
                    .context("kubectl apply -f crds/")?;
                self.wait_established(&["crd/modelroutes.sluice.dev", "crd/budgets.sluice.dev"])
                    .await
                    .context("waiting for the CRDs to be Established")?;
                anyhow::Ok(out)
            })
            .await?;
        Ok(out.clone())
    }

    /// Waits until every CRD named (`crd/NAME`) is Established. `kubectl wait` fails at once,
    /// instead of waiting, while a new CRD has no status conditions yet ("accessor error:
    /// <nil>"), so it is asked again until it really waits.
    pub async fn wait_established(&self, crds: &[&str]) -> Result<()> {
        let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        args.extend_from_slice(crds);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let waited = self.kubectl(&args, None).await?;
            if waited.success {
                return Ok(());
            }
            if !waited.stderr.contains("accessor error") || std::time::Instant::now() > deadline {
                waited.ok()?;
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // The local control plane goes away with the process (and has no
        // namespace controller to finish a deletion); a real cluster keeps
        // what a test leaves, so remove the namespace there.
        if self.state_dir.is_none() {
            let _ = std::process::Command::new(&self.kubectl)
                .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
                .args([
                    "delete",
                    "namespace",
                    &self.namespace,
                    "--wait=false",
                    "--ignore-not-found",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `cmd` (the program `program`) with `stdin`, capturing both output streams.
pub async fn run_command(mut cmd: tokio::process::Command, program: &Path, stdin: Option<&str>) -> Result<CmdOutput> {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("running {}", program.display()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use tokio::io::AsyncWriteExt as _;
        pipe.write_all(input.as_bytes()).await.context("writing stdin")?;
        drop(pipe);
    }
    let out = child.wait_with_output().await.context("waiting for the command")?;
    Ok(CmdOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// An admin client for the cluster of `kubeconfig`.
pub async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("loading the kubeconfig")?;
    Client::try_from(config).context("building a kube client")
}

/// `t-<test name>-<pid><n>`, a valid DNS label, unique per process and test.
fn namespace_name(test: &str) -> String {
    let mut name: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(40);
    let name = name.trim_matches('-');
    let seq = NAMESPACE_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("t-{name}-{:x}{seq}", std::process::id())
}

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let meta = ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta,
                ..Namespace::default()
            },
        )
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    // No controller-manager: the `default` ServiceAccount is ours to make.
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".to_owned()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match Api::<ServiceAccount>::namespaced(client.clone(), name)
        .create(&PostParams::default(), &sa)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating serviceaccount {name}/default")),
    }
}

#[allow(
    clippy::panic,
    reason = "SLUICE_REQUIRE_CLUSTER=1 asks for a missing cluster to fail the test"
)]
fn skip(test: &str, reason: &str) {
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{test}: no Kubernetes control plane and {REQUIRE_ENV}=1: {reason}");
    }
    let bar = "!".repeat(78);
    let banner = format!(
        "\n{bar}\n!! SKIPPED {test}: no Kubernetes control plane\n!! {reason}\n\
         !! Build one with `tests/cluster/build` (or set {BIN_ENV}, or {MODE_ENV}=external with KUBECONFIG).\n\
         !! {REQUIRE_ENV}=1 makes this skip a failure (CI sets it).\n{bar}\n"
    );
    // Straight to fd 2: the test harness captures `eprintln!`, and a skip must not pass silently.
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_all(banner.as_bytes());
}

/// Finds the binaries and starts (or points at) the control plane. Runs once per process.
fn start() -> Availability {
    let external = match std::env::var(MODE_ENV) {
        Ok(m) if m == "external" => true,
        Ok(m) if m.is_empty() || m == "local" => false,
        Ok(m) => {
            return Availability::Failed(format!("{MODE_ENV}={m}: expected `local` or `external`"));
        }
        Err(_) => false,
    };
    let bin_dir = find_bin_dir();
    if external {
        return start_external(bin_dir.ok());
    }
    let bin_dir = match bin_dir {
        Ok(dir) => dir,
        Err(reason) => return Availability::Unavailable(reason),
    };
    match start_local(&bin_dir) {
        Ok(shared) => Availability::Ready(shared),
        Err(e) => Availability::Failed(format!("{e:#}")),
    }
}

/// The control plane's bin dir: `$SLUICE_CLUSTER_BIN`, else what `tests/cluster/build` built.
pub fn find_bin_dir() -> std::result::Result<PathBuf, String> {
    let dir = match std::env::var_os(BIN_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let build = repo_root().join("tests/cluster/build");
            let out = std::process::Command::new(&build)
                .arg("--print-bin-dir")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", build.display()))?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
        }
    };
    check_tools(&dir)?;
    Ok(dir)
}

fn check_tools(dir: &Path) -> std::result::Result<(), String> {
    for tool in ["etcd", "kube-apiserver", "kubectl", "helm"] {
        if !dir.join(tool).is_file() {
            return Err(format!("{} has no {tool}", dir.display()));
        }
    }
    Ok(())
}

/// The local control plane from the binaries in `bin_dir`.
fn start_from(bin_dir: &Path) -> Availability {
    if let Err(reason) = check_tools(bin_dir) {
        return Availability::Unavailable(reason);
    }
    match start_local(bin_dir) {
        Ok(shared) => Availability::Ready(shared),
        Err(e) => Availability::Failed(format!("{e:#}")),
    }
}

fn start_external(bin_dir: Option<PathBuf>) -> Availability {
    let Some(kubeconfig) = std::env::var_os("KUBECONFIG").filter(|k| !k.is_empty()) else {
        return Availability::Failed(format!("{MODE_ENV}=external needs KUBECONFIG set"));
    };
    let kubeconfig = PathBuf::from(kubeconfig);
    if std::env::split_paths(&kubeconfig).count() != 1 || !kubeconfig.is_file() {
        return Availability::Failed(format!(
            "{MODE_ENV}=external needs KUBECONFIG to name one existing file, got {}",
            kubeconfig.display()
        ));
    }
    let (kubectl, helm) = match bin_dir {
        Some(dir) => (dir.join("kubectl"), dir.join("helm")),
        None => (PathBuf::from("kubectl"), PathBuf::from("helm")),
    };
    let found = std::process::Command::new(&kubectl)
        .args(["version", "--client"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        return Availability::Unavailable(format!(
            "no kubectl: neither tests/cluster/build's nor one on PATH ({})",
            kubectl.display()
        ));
    }
    eprintln!(
        "sluice tests: using the external cluster of KUBECONFIG={}",
        kubeconfig.display()
    );
    Availability::Ready(Shared {
        kubeconfig,
        kubectl,
        helm,
        state_dir: None,
    })
}

fn start_local(bin_dir: &Path) -> Result<Shared> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("sluice-cluster-{}-{nanos:x}", std::process::id()));
    let up = repo_root().join("tests/cluster/up");
    let out = std::process::Command::new(&up)
        .arg(&dir)
        .arg("--watch-pid")
        .arg(std::process::id().to_string())
        .env(BIN_ENV, bin_dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", up.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{} {} failed:\n{stderr}", up.display(), dir.display());
    }
    eprint!("{stderr}");
    let kubeconfig = dir.join("kubeconfig");
    if !kubeconfig.is_file() {
        bail!("{} did not write {}", up.display(), kubeconfig.display());
    }
    Ok(Shared {
        kubeconfig,
        kubectl: bin_dir.join("kubectl"),
        helm: bin_dir.join("helm"),
        state_dir: Some(dir),
    })
}
