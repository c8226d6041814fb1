//! The real `sluice-sidecar` binary as a child process, for end-to-end tests.
//!
//! Tests never build the binary: the test command runs `cargo build -p sluice-sidecar`
//! first (`cargo test` alone does not build another package's binaries). It is found at
//! `$SLUICE_SIDECAR_BIN`, else `$CARGO_TARGET_DIR/debug/sluice-sidecar`, else
//! `target/debug/sluice-sidecar` in the workspace.
//!
//! [`SidecarProcess::start`] runs it in local mode on free loopback ports, waits until
//! its admin `/readyz` answers 200, keeps everything it writes to stderr (and stdout)
//! for the test to read, and kills it when dropped.

use std::io::{BufRead as _, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

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
    /// Where the sidecar keeps state when the test did not choose a place; removed on drop.
    _state_dir: Option<tempfile::TempDir>,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
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
        let binary = sidecar_binary()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::spawn(&binary, manifest_dir, extra_args).await {
                // Another process may take a port between our probe and the sidecar's bind: retry then.
                Err(e) if attempt < 3 && format!("{e:#}").contains("in use") => continue,
                other => return other,
            }
        }
    }

    async fn spawn(binary: &Path, manifest_dir: &Path, extra_args: &[&str]) -> Result<Self> {
        let (addr, admin_addr) = (free_port()?, free_port()?);
        // Keep state out of the manifests directory (it may be a checked-in example).
        let state_dir = if extra_args.contains(&"--state-dir") {
            None
        } else {
            Some(tempfile::tempdir()?)
        };
        let mut child = Command::new(binary)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--admin-listen")
            .arg(admin_addr.to_string())
            .arg("--manifests")
            .arg(manifest_dir)
            .args(extra_args)
            .args(
                state_dir
                    .as_ref()
                    .map(|d| [std::ffi::OsStr::new("--state-dir"), d.path().as_os_str()])
                    .into_iter()
                    .flatten(),
            )
            .env_remove("SLUICE_LISTEN")
            .env_remove("SLUICE_ADMIN_LISTEN")
            .env_remove("SLUICE_MANIFESTS")
            .env_remove("SLUICE_MAX_BODY_BYTES")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = collect(child.stderr.take());
        let stdout = collect(child.stdout.take());
        let mut sidecar = Self {
            addr,
            admin_addr,
            child,
            _state_dir: state_dir,
            stderr,
            stdout,
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
                // Give the reader threads a moment to drain the pipes.
                tokio::time::sleep(Duration::from_millis(100)).await;
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

/// A loopback address whose port was free a moment ago.
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(listener.local_addr()?)
}

/// Copies a pipe into a shared buffer on a thread until it closes.
fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> Arc<Mutex<String>> {
    let buffer = Arc::new(Mutex::new(String::new()));
    if let Some(pipe) = pipe {
        let sink = Arc::clone(&buffer);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&line));
                }
                line.clear();
            }
        });
    }
    buffer
}
