//! Where a process the test started listens, as it reports it.
//!
//! Every process a test starts binds port 0 and writes the addresses it got to the file given
//! by `--address-file` (`sluice_crds::address_file`); the test waits for that file. Nothing here
//! probes for a free port and hands it over: a port found free can be taken by anything else on
//! the machine before the process binds it, which is how a loaded CI machine got "connection
//! refused" from a sidecar that had never started.

use std::io::{BufRead as _, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use sluice_crds::address_file::Addresses;

/// How long a process may take from its start to binding every listener (a bound, not a target).
pub const BOUND_WITHIN: Duration = Duration::from_secs(30);

/// How many lines of a process's output an error about it carries.
const TAIL_LINES: usize = 40;

/// Why a process did not report where it listens.
#[derive(Debug)]
pub struct NotBound {
    /// What happened instead (it exited, or the bound passed).
    pub reason: String,
    /// Everything it printed.
    pub output: String,
}

impl NotBound {
    /// Whether it exited because an address it was given to bind was taken (`EADDRINUSE`).
    pub fn address_in_use(&self) -> bool {
        self.output.contains("Address already in use")
    }
}

impl std::fmt::Display for NotBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; the last lines it printed:\n{}", self.reason, tail(&self.output))
    }
}

impl std::error::Error for NotBound {}

/// The last [`TAIL_LINES`] lines of `output`.
pub fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// Waits until `child` has written its address file `path`, up to [`BOUND_WITHIN`]. If it exits
/// first, `readers` (the threads copying its pipes) are joined so that `output` holds all it said.
pub async fn wait_for_addresses(
    path: &Path,
    child: &mut Child,
    readers: &mut Vec<JoinHandle<()>>,
    output: &dyn Fn() -> String,
) -> Result<Addresses, NotBound> {
    let deadline = Instant::now() + BOUND_WITHIN;
    loop {
        match sluice_crds::address_file::read(path) {
            Ok(Some(addresses)) => return Ok(addresses),
            Ok(None) => {}
            Err(e) => {
                return Err(NotBound {
                    reason: e.to_string(),
                    output: output(),
                });
            }
        }
        let exited = match child.try_wait() {
            Ok(status) => status.map(|s| format!("it exited with {s} before it reported its addresses")),
            Err(e) => Some(format!("waiting for it: {e}")),
        };
        if let Some(reason) = exited {
            // It has exited, so its pipes are closed: the readers end as soon as they have copied the rest.
            for reader in readers.drain(..) {
                let _ = reader.join();
            }
            return Err(NotBound {
                reason,
                output: output(),
            });
        }
        if Instant::now() > deadline {
            return Err(NotBound {
                reason: format!("no address file at {} within {BOUND_WITHIN:?}", path.display()),
                output: output(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The address reported for listener `flag` (e.g. `admin-listen`).
pub fn listener(addresses: &Addresses, flag: &str) -> anyhow::Result<SocketAddr> {
    addresses
        .get(flag)
        .copied()
        .ok_or_else(|| anyhow::anyhow!("the address file names no {flag:?}: {addresses:?}"))
}

/// Copies a pipe into `sink` on a thread until it closes.
pub fn collect<R: Read + Send + 'static>(pipe: Option<R>, sink: &Arc<Mutex<String>>) -> Option<JoinHandle<()>> {
    let pipe = pipe?;
    let sink = Arc::clone(sink);
    Some(std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&line));
            }
            line.clear();
        }
    }))
}
