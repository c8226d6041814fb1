//! Open-loop load spread over the sidecars: requests start on a fixed schedule (`rate` per
//! second in all, sidecar after sidecar) whatever the answers take, and every answer is tallied.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_crds::MicroUsd;
use tokio::sync::watch;

use super::manifests::{MAX_TOKENS, MODEL};

/// Requests in flight beyond which the schedule waits: a bound on what a stalled sidecar can
/// pile up, far above what the rate needs when answers are prompt.
const MAX_IN_FLIGHT: usize = 4_096;
/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything answered so far.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Requests started.
    pub sent: u64,
    /// Answered 200.
    pub served: u64,
    /// Their cost, summed from each answer's `x-sluice-cost-usd`.
    pub served_cost: MicroUsd,
    /// Refusals by HTTP status and error code.
    pub refused: BTreeMap<String, u64>,
    /// Transport failures and answers without a readable cost.
    pub failed: u64,
    /// A sample of those failures.
    pub failure_samples: Vec<String>,
    /// The first refusal (any code): when, and what had been served by then.
    pub first_refusal: Option<(Instant, MicroUsd)>,
    /// The last answer served.
    pub last_served: Option<Instant>,
}

/// The shared tally, read while the load runs.
pub type SharedTally = Arc<Mutex<Tally>>;

fn lock(t: &SharedTally) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A copy of the tally now.
pub fn snapshot(t: &SharedTally) -> Tally {
    lock(t).clone()
}

/// Sends `rate` chat requests per second over `sidecars`, in turn, until `stop` turns true;
/// returns once every request started has been answered.
pub async fn run(
    sidecars: &[SocketAddr],
    rate: u32,
    tally: SharedTally,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    anyhow::ensure!(!sidecars.is_empty(), "no sidecar to send to");
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(256)
        .build()?;
    let urls: Vec<String> = sidecars
        .iter()
        .map(|a| format!("http://{a}/v1/chat/completions"))
        .collect();
    let body = Arc::new(
        json!({"model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    );
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    // Behind schedule (a busy machine), requests go out at once to catch up: open loop.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0_usize.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let url = urls[i % urls.len()].clone();
        let (client, body, tally) = (client.clone(), body.clone(), tally.clone());
        lock(&tally).sent += 1;
        tasks.spawn(async move {
            let answer = send(&client, &url, body.as_str()).await;
            record(&tally, answer);
            drop(permit);
        });
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// One answer, reduced to what the tally needs.
enum Answer {
    Served(MicroUsd),
    Refused { status: u16, code: String },
    Failed(String),
}

async fn send(client: &reqwest::Client, url: &str, body: &str) -> Answer {
    let response = match client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Answer::Failed(format!("{url}: {e}")),
    };
    let status = response.status().as_u16();
    let cost = response
        .headers()
        .get("x-sluice-cost-usd")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<MicroUsd>().ok());
    let text = response.text().await.unwrap_or_default();
    if status == 200 {
        return match cost {
            Some(cost) => Answer::Served(cost),
            None => Answer::Failed(format!("{url}: 200 without a readable x-sluice-cost-usd")),
        };
    }
    let code = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".to_owned());
    Answer::Refused { status, code }
}

fn record(tally: &SharedTally, answer: Answer) {
    let mut t = lock(tally);
    match answer {
        Answer::Served(cost) => {
            t.served += 1;
            t.served_cost += cost;
            t.last_served = Some(Instant::now());
        }
        Answer::Refused { status, code } => {
            if t.first_refusal.is_none() {
                t.first_refusal = Some((Instant::now(), t.served_cost));
            }
            *t.refused.entry(format!("{status} {code}")).or_default() += 1;
        }
        Answer::Failed(why) => {
            t.failed += 1;
            if t.failure_samples.len() < 5 {
                t.failure_samples.push(why);
            }
        }
    }
}
