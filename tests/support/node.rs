//! A real single-node cluster for tests: the control plane of [`crate::cluster`] plus
//! containerd, kubelet, kube-controller-manager, kube-scheduler, kube-proxy and CoreDNS,
//! started by `tests/cluster/up DIR --node`, with Sluice's images built from the workspace's
//! binaries and imported by `tests/cluster/images`.
//!
//! One node per machine and one per test binary: [`node`] starts it on first use and every
//! test of the binary shares it (one namespace each, and [`Node::exclusive`] around whatever
//! touches the shared installation). `up --watch-pid` leaves a watchdog that tears the node
//! down and restores the machine as soon as this process exits, however it exits. The state
//! directory (`$SLUICE_NODE_DIR`, default `$TMPDIR/sluice-node`) keeps every component's log
//! and the pods' logs after the run, for a post-mortem.
//!
//! Needs root, the Debian packages `.ci/run` installs and `tests/cluster/build`. Without them
//! the test is skipped with a banner, unless `SLUICE_REQUIRE_CLUSTER=1` (CI).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use anyhow::{Context as _, Result, anyhow, bail};
use kube::Client;

use crate::cluster::{CmdOutput, REQUIRE_ENV, client_for, find_bin_dir, repo_root, run_command};

/// Where the node keeps its state and logs.
pub const DIR_ENV: &str = "SLUICE_NODE_DIR";

/// The node shared by this test binary's tests.
#[derive(Debug)]
pub struct Node {
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// `kubectl` binary.
    pub kubectl: PathBuf,
    /// `helm` binary.
    pub helm: PathBuf,
    /// The node's state directory (`logs/` holds every component's log).
    pub state_dir: PathBuf,
    /// Image references by name (`sluice-operator`, `sluice-sidecar`, `sluice-test-upstream`, `sluice-test-app`).
    pub images: BTreeMap<String, String>,
    exclusive: tokio::sync::Mutex<()>,
}

static NODE: OnceLock<std::result::Result<Node, (bool, String)>> = OnceLock::new();

/// The shared node, started on first use; `Ok(None)` when this machine cannot run one and
/// `SLUICE_REQUIRE_CLUSTER` is not `1` (the test then returns after a loud banner).
pub async fn node(test: &str) -> Result<Option<&'static Node>> {
    let started = tokio::task::spawn_blocking(|| NODE.get_or_init(start)).await?;
    match started {
        Ok(node) => Ok(Some(node)),
        Err((true, reason)) => Err(anyhow!("the test node did not come up: {reason}")),
        Err((false, reason)) if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") => {
            Err(anyhow!("{REQUIRE_ENV}=1 but no node can run here: {reason}"))
        }
        Err((false, reason)) => {
            use std::io::Write as _;
            let banner = format!("\n!! SKIPPED {test}: no test node ({reason})\n\n");
            let _ = std::io::stderr().lock().write_all(banner.as_bytes());
            Ok(None)
        }
    }
}

impl Node {
    /// A fresh admin client (a client belongs to the runtime it was made on).
    pub async fn client(&self) -> Result<Client> {
        client_for(&self.kubeconfig).await
    }

    /// Serialises the tests that change what all of them share (the Sluice installation).
    pub async fn exclusive(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.exclusive.lock().await
    }

    /// The image reference of `name`.
    pub fn image(&self, name: &str) -> Result<&str> {
        self.images
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("tests/cluster/images made no {name} image"))
    }

    /// Runs kubectl against the node.
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<CmdOutput> {
        let mut cmd = tokio::process::Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        run_command(cmd, &self.kubectl, stdin).await
    }

    /// Runs helm against the node.
    pub async fn helm(&self, args: &[&str]) -> Result<CmdOutput> {
        let mut cmd = tokio::process::Command::new(&self.helm);
        let helm_home = self.state_dir.join("helm");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HELM_CACHE_HOME", helm_home.join("cache"))
            .env("HELM_CONFIG_HOME", helm_home.join("config"))
            .env("HELM_DATA_HOME", helm_home.join("data"));
        run_command(cmd, &self.helm, None).await
    }
}

fn start() -> std::result::Result<Node, (bool, String)> {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Err((false, "the node needs root".to_owned()));
    }
    let bin_dir = find_bin_dir().map_err(|e| (false, e))?;
    for tool in ["kubelet", "kube-proxy", "coredns", "pause"] {
        if !bin_dir.join(tool).is_file() {
            return Err((
                false,
                format!("{} has no {tool} (run tests/cluster/build)", bin_dir.display()),
            ));
        }
    }
    if !Path::new("/usr/bin/containerd").is_file() {
        return Err((false, "containerd is not installed (.ci/run installs it)".to_owned()));
    }
    start_node(&bin_dir).map_err(|e| (true, format!("{e:#}")))
}

fn start_node(bin_dir: &Path) -> Result<Node> {
    let dir = std::env::var_os(DIR_ENV)
        .filter(|d| !d.is_empty())
        .map_or_else(|| std::env::temp_dir().join("sluice-node"), PathBuf::from);
    let up = repo_root().join("tests/cluster/up");
    let out = std::process::Command::new(&up)
        .arg(&dir)
        .arg("--node")
        .arg("--watch-pid")
        .arg(std::process::id().to_string())
        .env(crate::cluster::BIN_ENV, bin_dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", up.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{} {} --node failed (logs in {}/logs):\n{stderr}",
            up.display(),
            dir.display(),
            dir.display()
        );
    }
    eprint!("{stderr}");
    let images_cmd = repo_root().join("tests/cluster/images");
    let mut images = std::process::Command::new(&images_cmd);
    images.arg(&dir).stdin(Stdio::null());
    // The binaries the other cross-process tests use (tests/run sets these).
    let operator = std::env::var_os("SLUICE_OPERATOR_BIN").filter(|b| !b.is_empty());
    if let Some(parent) = operator.as_deref().map(Path::new).and_then(Path::parent) {
        images.arg("--bin-dir").arg(parent);
    }
    let out = images
        .output()
        .with_context(|| format!("running {}", images_cmd.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed:\n{}",
            images_cmd.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let images = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, reference)| (name.to_owned(), reference.to_owned()))
        .collect();
    Ok(Node {
        kubeconfig: dir.join("kubeconfig"),
        kubectl: bin_dir.join("kubectl"),
        helm: bin_dir.join("helm"),
        state_dir: dir,
        images,
        exclusive: tokio::sync::Mutex::new(()),
    })
}
