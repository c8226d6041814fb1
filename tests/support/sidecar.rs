//! The real `sluice-sidecar` binary as a child process, for end-to-end tests.
//!
//! Tests never build the binary: the test command runs `cargo build -p sluice-sidecar`
//! first (`cargo test` alone does not build another package's binaries). It is found at
//! `$SLUICE_SIDECAR_BIN`, else `$CARGO_TARGET_DIR/debug/sluice-sidecar`, else
//! `target/debug/sluice-sidecar` in the workspace.
//!
//! [`SidecarProcess::start`] runs it in local mode on loopback port 0, waits for the address
//! file in which it reports the ports it got ([`crate::addresses`]), then until its admin
//! `/readyz` answers 200; it keeps everything the sidecar writes to stderr (and stdout) for the
//! test to read, and kills it when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::addresses::{self, collect, listener};

/// Overrides where the sidecar binary is.
pub const SIDECAR_BIN_ENV: &str = "SLUICE_SIDECAR_BIN";

/// How long a sidecar may take to become ready before the test gives up (a bound, not a target).
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running `sluice-sidecar`, killed when dropped.
#[derive(Debug)]
pub struct SidecarProcess {
    /// The API listener (`--listen`).
    pub addr: SocketAddr,
    /// The admin listener (`--admin-listen`).
    pub admin_addr: SocketAddr,
    child: Child,
    /// Holds the address file, and the state when the test did not choose a place; removed on drop.
    _dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    /// The threads copying stderr and stdout.
    readers: Vec<JoinHandle<()>>,
}

/// The sidecar binary this test run uses.
pub fn sidecar_binary() -> Result<PathBuf> {
    workspace_binary(SIDECAR_BIN_ENV, "sluice-sidecar")
}

/// A binary of this workspace: `$env` if set, else `target/debug/<name>` (or under
/// `$CARGO_TARGET_DIR`). Tests never build it; the test command does beforehand.
pub fn workspace_binary(env: &str, name: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("${env} is {}, which is not a file", path.display());
        }
        return Ok(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    let path = target
        .join("debug")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "{} not found: build it first with `cargo build -p {name}` (the test command does), or set ${env}",
            path.display()
        );
    }
    Ok(path)
}

impl SidecarProcess {
    /// Starts the sidecar on `--manifests manifest_dir` and waits until it is ready.
    pub async fn start(manifest_dir: &Path) -> Result<Self> {
        Self::start_with_args(manifest_dir, &[]).await
    }

    /// Like [`start`](Self::start), with extra command-line arguments (e.g. `--max-body-bytes 1024`).
    pub async fn start_with_args(manifest_dir: &Path, extra_args: &[&str]) -> Result<Self> {
        Self::start_with_env(manifest_dir, extra_args, &[]).await
    }

    /// Like [`start_with_args`](Self::start_with_args), with environment variables set (e.g. a
    /// pod's AWS identity or `OTEL_EXPORTER_OTLP_ENDPOINT`); the test runner's own AWS identity and
    /// `OTEL_*` settings are never passed on.
    pub async fn start_with_env(manifest_dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let binary = sidecar_binary()?;
        let dir = tempfile::tempdir()?;
        let address_file = dir.path().join("addresses.json");
        // Keep state out of the manifests directory (it may be a checked-in example).
        let state_dir = dir.path().join("state");
        let default_state = (!extra_args.contains(&"--state-dir"))
            .then(|| [std::ffi::OsStr::new("--state-dir"), state_dir.as_os_str()])
            .into_iter()
            .flatten();
        let mut child = Command::new(&binary)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--address-file")
            .arg(&address_file)
            .arg("--manifests")
            .arg(manifest_dir)
            .args(extra_args)
            .args(default_state)
            .env_remove("SLUICE_LISTEN")
            .env_remove("SLUICE_ADMIN_LISTEN")
            .env_remove("SLUICE_ADDRESS_FILE")
            .env_remove("SLUICE_MANIFESTS")
            .env_remove("SLUICE_MAX_BODY_BYTES")
            .env_remove("AWS_ROLE_ARN")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
            .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .env_remove("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_STS")
            .envs(
                std::env::vars()
                    .filter(|(k, _)| k.starts_with("OTEL_"))
                    .map(|(k, _)| (k, "")),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let (stderr, stdout) = Default::default();
        let mut readers: Vec<_> = [
            collect(child.stderr.take(), &stderr),
            collect(child.stdout.take(), &stdout),
        ]
        .into_iter()
        .flatten()
        .collect();
        let output = || stderr.lock().map(|s| s.clone()).unwrap_or_default();
        let reported = addresses::wait_for_addresses(&address_file, &mut child, &mut readers, &output)
            .await
            .map_err(anyhow::Error::new)
            .and_then(|r| Ok((listener(&r, "listen")?, listener(&r, "admin-listen")?)));
        let (addr, admin_addr) = match reported {
            Ok(addresses) => addresses,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the sidecar did not start: {e}");
            }
        };
        let mut sidecar = Self {
            addr,
            admin_addr,
            child,
            _dir: dir,
            stderr,
            stdout,
            readers,
        };
        sidecar.wait_ready().await?;
        Ok(sidecar)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let url = self.admin_url("/readyz");
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // It has exited: the readers end once they have copied what is left in the pipes.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                bail!(
                    "sidecar exited with {status} before it was ready; stderr:\n{}",
                    self.stderr()
                );
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("sidecar not ready within {READY_WITHIN:?}; stderr:\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The OpenAI API root, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// A URL on the API listener, e.g. `url("/v1/models")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL on the admin listener, e.g. `admin_url("/config")`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    /// Everything the sidecar wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Everything the sidecar wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until stderr contains `needle`, up to `within`; the error carries the stderr seen.
    pub async fn wait_for_stderr(&self, needle: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if self.stderr().contains(needle) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "stderr did not show {needle:?} within {within:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends SIGTERM (a graceful stop) and waits for the process to exit.
    pub async fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("running kill")?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed");
        }
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "sidecar did not exit within {READY_WITHIN:?} of SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl SidecarProcess {
    /// The operating-system process id, e.g. to read `/proc/<pid>/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- sidecar stderr ---\n{}--- sidecar stdout ---\n{}",
                self.stderr(),
                self.stdout()
            );
        }
    }
}
