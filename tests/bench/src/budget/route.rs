//! The request path of a shared route: every sidecar of the fleet also runs a second route whose
//! Budget and route-wide limit the operator splits among them (DESIGN §6.3), and this measures
//! it the way the driver measures the local full path: added latency with one client beside a
//! direct call to the same upstream (alternating, in the same seconds), then CPU per request of
//! the whole fleet and its throughput under closed-loop load spread over every sidecar. Its own
//! Budget keeps these requests out of the shared budget's overspend figures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use serde::Serialize;
use serde_json::json;

use super::manifests::{MAX_TOKENS, MEASURE_MODEL};
use crate::driver::{percentile, procs};

/// Requests each way of the one-client comparison.
pub const ONE_CLIENT_REQUESTS: usize = 2_000;
/// Connections of the throughput run, spread over the sidecars.
const CONNECTIONS: usize = 32;
/// Requests of the throughput run.
pub const LOAD_REQUESTS: usize = 20_000;
/// Requests that warm every sidecar's route (and fetch its first allowances) before measuring.
const WARMUP_PER_SIDECAR: usize = 20;

/// What was measured (`budget.json`'s `route`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteFigures {
    /// Sidecars the load was spread over.
    pub sidecars: usize,
    /// Their CPU per request in the throughput run, microseconds.
    pub cpu_us_per_request: f64,
    /// One client: p50 through a sidecar less the direct call's, microseconds.
    pub added_p50_us: f64,
    /// The same at p99.
    pub added_p99_us: f64,
    /// The direct call's p50, microseconds.
    pub direct_p50_us: f64,
    /// Requests per second of the throughput run.
    pub rps: f64,
    /// Its connections.
    pub connections: usize,
    /// Requests measured that did not answer 200 (a limit's refusal would show here).
    pub not_ok: u64,
}

/// One sidecar: where it listens and its process.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its API listener.
    pub addr: SocketAddr,
    /// Its pid, for CPU.
    pub pid: u32,
}

/// Measures the shared route through `sidecars` beside direct calls to `upstream`.
pub async fn measure(sidecars: &[Target], upstream: SocketAddr) -> Result<RouteFigures> {
    ensure!(!sidecars.is_empty(), "no sidecar to measure");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(CONNECTIONS)
        .build()?;
    let body = Arc::new(
        json!({"model": MEASURE_MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
    );
    let url = |a: SocketAddr| format!("http://{a}/v1/chat/completions");
    let urls: Vec<String> = sidecars.iter().map(|s| url(s.addr)).collect();
    let direct = url(upstream);

    let mut not_ok = 0;
    for u in urls.iter().cycle().take(urls.len() * WARMUP_PER_SIDECAR) {
        send(&client, u, &body).await?;
    }
    // One client, alternating so both see the same moments of the machine.
    let (mut through, mut straight) = (Vec::new(), Vec::new());
    for _ in 0..ONE_CLIENT_REQUESTS {
        let (took, ok) = send(&client, &direct, &body).await?;
        straight.push(took);
        let (took, ok_sidecar) = send(&client, &urls[0], &body).await?;
        through.push(took);
        not_ok += u64::from(!ok) + u64::from(!ok_sidecar);
    }
    let p = |v: &mut Vec<f64>, q| percentile(v, q);
    let direct_p50 = p(&mut straight, 0.50);
    let added_p50 = p(&mut through, 0.50) - direct_p50;
    let added_p99 = p(&mut through, 0.99) - p(&mut straight, 0.99);

    // Closed loop over every sidecar: CPU per request and throughput.
    let cpu = || -> Result<Duration> { sidecars.iter().map(|s| procs::cpu_of(s.pid)).sum() };
    let before = cpu()?;
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (client, body, urls, next) = (client.clone(), body.clone(), urls.clone(), next.clone());
        tasks.spawn(async move {
            let mut failed = 0_u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= LOAD_REQUESTS {
                    return anyhow::Ok(failed);
                }
                let (_, ok) = send(&client, &urls[i % urls.len()], &body).await?;
                failed += u64::from(!ok);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        not_ok += done.context("a load task")??;
    }
    let elapsed = started.elapsed();
    let used = cpu()?.saturating_sub(before);
    Ok(RouteFigures {
        sidecars: sidecars.len(),
        cpu_us_per_request: used.as_secs_f64() * 1e6 / LOAD_REQUESTS as f64,
        added_p50_us: added_p50,
        added_p99_us: added_p99,
        direct_p50_us: direct_p50,
        rps: LOAD_REQUESTS as f64 / elapsed.as_secs_f64(),
        connections: CONNECTIONS,
        not_ok,
    })
}

/// One request: how long it took (µs) and whether it answered 200.
async fn send(client: &reqwest::Client, url: &str, body: &str) -> Result<(f64, bool)> {
    let start = Instant::now();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let ok = response.status().is_success();
    response.bytes().await.with_context(|| format!("reading {url}"))?;
    Ok((start.elapsed().as_secs_f64() * 1e6, ok))
}
