//! The operator's footprint from `/proc/<pid>`: RSS now, its high-water mark, CPU time, and
//! a sampler for the peak RSS over a phase.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};

pub use crate::driver::procs::{cpu_of, rss_of};

/// Bytes in a MiB.
pub const MIB: f64 = 1024.0 * 1024.0;

/// `VmHWM` (peak RSS since start) of a process in bytes.
pub fn hwm_of(pid: u32) -> Result<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading status of {pid}"))?;
    parse_kib_field(&status, "VmHWM:").with_context(|| format!("no VmHWM in /proc/{pid}/status"))
}

/// Reads a `Name:   1234 kB` line of `/proc/<pid>/status` as bytes.
pub fn parse_kib_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples a process's RSS every few milliseconds until stopped; keeps the largest.
#[derive(Debug)]
pub struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    /// Starts sampling `pid` every `every`.
    pub fn start(pid: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_of(pid).unwrap_or(0)));
        let task = {
            let (stop, peak) = (stop.clone(), peak.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(rss) = rss_of(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(every).await;
                }
            })
        };
        Self { stop, peak, task }
    }

    /// Stops sampling; the peak seen, in bytes (one last sample included).
    pub async fn finish(self, pid: u32) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        if let Ok(rss) = rss_of(pid) {
            self.peak.fetch_max(rss, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\tsluice-operator\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_kib_field(status, "VmHWM:"), Some(20 * 1024 * 1024));
        assert_eq!(parse_kib_field(status, "VmRSS:"), Some(10 * 1024 * 1024));
        assert_eq!(parse_kib_field(status, "VmSwap:"), None);
    }
}
