//! Load from `oha`: one run is one child process whose JSON summary becomes a [`Load`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::apis::RequestKind;
use super::results::Load;

/// How `oha` is driven.
#[derive(Debug, Clone)]
pub struct Oha {
    binary: PathBuf,
    /// `--output-format json` on recent versions, `--json` before.
    json_flag: Vec<&'static str>,
}

/// How much load one run offers.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// `connections` clients as fast as they can, for a while (whole seconds), in-flight requests
    /// finished at the end (`-w`) rather than counted as errors.
    Closed {
        /// Concurrent connections.
        connections: u32,
        /// For how long.
        duration: Duration,
    },
    /// A fixed rate with latency correction (open loop), for a while.
    Rate {
        /// Requests per second offered.
        rate: u32,
        /// Connections available to carry it.
        connections: u32,
        /// For how long.
        duration: Duration,
    },
    /// A fixed number of requests.
    Count {
        /// Concurrent connections.
        connections: u32,
        /// Requests in all.
        requests: u64,
    },
}

impl Oha {
    /// Finds out which JSON flag `binary` takes.
    pub fn new(binary: &Path) -> Result<Self> {
        let help = std::process::Command::new(binary)
            .arg("--help")
            .output()
            .with_context(|| format!("running {} --help", binary.display()))?;
        let help = String::from_utf8_lossy(&help.stdout);
        let json_flag = if help.contains("--output-format") {
            vec!["--output-format", "json"]
        } else if help.contains("--json") {
            vec!["--json"]
        } else {
            bail!("{} offers neither --output-format json nor --json", binary.display());
        };
        Ok(Self {
            binary: binary.to_owned(),
            json_flag,
        })
    }

    /// The arguments of one run of `request` against `addr`, with `headers` added to every request.
    fn args(&self, addr: SocketAddr, request: &RequestKind, headers: &[(String, String)], shape: Shape) -> Vec<String> {
        let body = String::from_utf8_lossy(&request.body);
        let mut args: Vec<String> = ["--no-tui", "-m", "POST", "-H", "content-type: application/json"]
            .into_iter()
            .chain(["-H", "x-sluice-user: bench-user", "-d", &body])
            .chain(self.json_flag.iter().copied())
            .map(str::to_owned)
            .collect();
        for (name, value) in headers {
            args.extend(["-H".to_owned(), format!("{name}: {value}")]);
        }
        let secs = |d: Duration| format!("{}s", d.as_secs().max(1));
        match shape {
            Shape::Closed { connections, duration } => {
                args.extend([
                    "-c".into(),
                    connections.to_string(),
                    "-z".into(),
                    secs(duration),
                    "-w".into(),
                ]);
            }
            Shape::Rate {
                rate,
                connections,
                duration,
            } => {
                args.extend([
                    "-c".into(),
                    connections.to_string(),
                    "-q".into(),
                    rate.to_string(),
                    "--latency-correction".into(),
                    "-z".into(),
                    secs(duration),
                    "-w".into(),
                ]);
            }
            Shape::Count { connections, requests } => {
                args.extend(["-c".into(), connections.to_string(), "-n".into(), requests.to_string()]);
            }
        }
        args.push(format!("http://{addr}{}", request.path));
        args
    }

    /// Runs `oha` once with `request` and reads its summary.
    pub async fn run(
        &self,
        addr: SocketAddr,
        request: &RequestKind,
        headers: &[(String, String)],
        shape: Shape,
    ) -> Result<Load> {
        let args = self.args(addr, request, headers, shape);
        let out = tokio::process::Command::new(&self.binary)
            .args(&args)
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("running {}", self.binary.display()))?;
        if !out.status.success() {
            bail!(
                "oha {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let json: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("oha printed no JSON: {}", String::from_utf8_lossy(&out.stdout)))?;
        parse(&json)
    }
}

/// Reads oha's JSON summary: `summary.requestsPerSec`, `latencyPercentiles` (seconds),
/// `statusCodeDistribution`, `errorDistribution`.
pub fn parse(json: &Value) -> Result<Load> {
    let seconds_to_us = |key: &str| -> Result<f64> {
        json["latencyPercentiles"][key]
            .as_f64()
            .map(|s| s * 1e6)
            .with_context(|| format!("oha's JSON has no latencyPercentiles.{key}"))
    };
    let count = |v: &Value| -> u64 {
        v.as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0)
    };
    let statuses = &json["statusCodeDistribution"];
    let ok = statuses["200"].as_u64().unwrap_or(0);
    let failed = count(statuses) - ok + count(&json["errorDistribution"]);
    Ok(Load {
        rps: json["summary"]["requestsPerSec"]
            .as_f64()
            .context("oha's JSON has no summary.requestsPerSec")?,
        p50_us: seconds_to_us("p50")?,
        p90_us: seconds_to_us("p90")?,
        p99_us: seconds_to_us("p99")?,
        ok,
        failed,
        cpu_us_per_request: None,
        upstream_cpu_us_per_request: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_read_in_microseconds() {
        let json = serde_json::json!({
            "summary": {"successRate": 1.0, "requestsPerSec": 1234.5},
            "latencyPercentiles": {"p50": 0.0001, "p90": 0.0002, "p99": 0.0005},
            "statusCodeDistribution": {"200": 990, "429": 10},
            "errorDistribution": {"connection closed": 2}
        });
        let load = parse(&json).unwrap();
        assert_eq!(load.rps, 1234.5);
        assert!((load.p50_us - 100.0).abs() < 1e-9);
        assert!((load.p99_us - 500.0).abs() < 1e-9);
        assert_eq!((load.ok, load.failed), (990, 12));
    }
}
