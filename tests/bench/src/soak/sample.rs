//! What the soak samples of the sidecar every few seconds: resident memory, open descriptors,
//! threads (read from `/proc`; RSS through [`crate::driver::procs`]).

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::driver::procs;

/// One reading of the sidecar.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the load started (negative: before it).
    pub at_s: f64,
    /// `VmRSS`, bytes.
    pub rss: u64,
    /// Entries of `/proc/<pid>/fd`.
    pub fds: usize,
    /// `Threads:` of `/proc/<pid>/status`.
    pub threads: u32,
    /// Requests the client had finished by then (both kinds).
    pub finished: u64,
    /// Requests in flight at the client.
    pub in_flight: u64,
}

/// Reads the process `pid` now.
pub fn take(pid: u32, at_s: f64, finished: u64, in_flight: u64) -> Result<Sample> {
    Ok(Sample {
        at_s,
        rss: procs::rss_of(pid)?,
        fds: fd_count(pid)?,
        threads: threads_of(pid)?,
        finished,
        in_flight,
    })
}

/// Open descriptors of `pid`.
pub fn fd_count(pid: u32) -> Result<usize> {
    let dir = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&dir)
        .with_context(|| format!("listing {dir}"))?
        .count())
}

/// Threads of `pid`.
pub fn threads_of(pid: u32) -> Result<u32> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading status of {pid}"))?;
    parse_threads(&status).with_context(|| format!("no Threads in /proc/{pid}/status"))
}

/// Reads `Threads:  7`.
pub fn parse_threads(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// How resident memory moved after the warm-up, and whether that stays within the bound.
#[derive(Debug, Clone, Serialize)]
pub struct RssVerdict {
    /// Samples taken after the warm-up, under load.
    pub samples: usize,
    /// The first of them, bytes.
    pub first: u64,
    /// Lowest, bytes.
    pub min: u64,
    /// Highest, bytes.
    pub max: u64,
    /// The last, bytes.
    pub last: u64,
    /// `last − first`, bytes (negative: it shrank).
    pub growth: i64,
    /// `max − first`, bytes.
    pub peak_growth: i64,
    /// Least-squares slope over the samples, bytes per minute.
    pub slope_per_min: f64,
    /// The bound on `growth`, bytes.
    pub bound: u64,
    /// Whether `growth` stays within `bound`.
    pub within: bool,
}

/// Judges the samples taken at or after `warmup_s` against `bound` bytes of growth.
pub fn judge_rss(samples: &[Sample], warmup_s: f64, bound: u64) -> Option<RssVerdict> {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at_s >= warmup_s).collect();
    let (first, last) = (after.first()?.rss, after.last()?.rss);
    let min = after.iter().map(|s| s.rss).min()?;
    let max = after.iter().map(|s| s.rss).max()?;
    let growth = last as i64 - first as i64;
    Some(RssVerdict {
        samples: after.len(),
        first,
        min,
        max,
        last,
        growth,
        peak_growth: max as i64 - first as i64,
        slope_per_min: slope(&after.iter().map(|s| (s.at_s, s.rss as f64)).collect::<Vec<_>>()) * 60.0,
        bound,
        within: growth <= bound as i64,
    })
}

/// Least-squares slope of `y` over `x` (0 with fewer than two points).
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_s: f64, rss: u64) -> Sample {
        Sample {
            at_s,
            rss,
            fds: 0,
            threads: 0,
            finished: 0,
            in_flight: 0,
        }
    }

    #[test]
    fn threads_are_read_from_status() {
        assert_eq!(parse_threads("Name:\tx\nThreads:\t7\nVmRSS:\t1 kB\n"), Some(7));
        assert_eq!(parse_threads("Name:\tx\n"), None);
    }

    #[test]
    fn our_own_process_has_descriptors_and_threads() {
        let pid = std::process::id();
        assert!(fd_count(pid).unwrap() >= 3);
        assert!(threads_of(pid).unwrap() >= 1);
    }

    #[test]
    fn growth_is_judged_after_the_warm_up_only() {
        let samples = [at(0.0, 100), at(10.0, 5_000), at(20.0, 5_100), at(30.0, 5_050)];
        let v = judge_rss(&samples, 10.0, 100).unwrap();
        assert_eq!(
            (v.first, v.min, v.max, v.last, v.growth),
            (5_000, 5_000, 5_100, 5_050, 50)
        );
        assert!(v.within);
        assert!(!judge_rss(&samples, 10.0, 10).unwrap().within);
        assert!(judge_rss(&samples, 99.0, 10).is_none());
    }

    #[test]
    fn slope_of_a_line() {
        let s = slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]);
        assert!((s - 2.0).abs() < 1e-9);
    }
}
