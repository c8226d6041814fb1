//! The soak's client: plain and streamed chat requests at fixed rates, a bounded number in
//! flight per kind, every answer's status, outcome and cost recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;

use super::Kind;
use super::manifest;

/// The user whose share of the load is above its per-user limit, so refusals run too.
pub const GREEDY_USER: &str = "soak-greedy";
/// No answer within this long is counted as `timeout` (a bound, not a figure).
const ANSWER_WITHIN: Duration = Duration::from_secs(60);
/// The cost header of a non-streamed answer.
const COST_HEADER: &str = "x-sluice-cost-usd";

/// The load to offer.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    /// Plain requests per second.
    pub plain_rate: u32,
    /// Streamed requests per second.
    pub stream_rate: u32,
    /// How long to offer it.
    pub duration: Duration,
    /// Requests of one kind in flight at most; a tick finding none free sends nothing.
    pub max_in_flight: u32,
    /// Ordinary users the requests rotate over.
    pub users: u32,
    /// Every `greedy_every`-th request of each kind is the greedy user's.
    pub greedy_every: u32,
    /// The model of streamed requests.
    pub stream_model: String,
}

/// What the client saw, per kind.
#[derive(Debug, Default, Clone, Serialize)]
pub struct KindTally {
    /// Ticks that sent a request.
    pub sent: u64,
    /// Ticks that found the in-flight bound reached and sent nothing.
    pub not_sent: u64,
    /// Answers by outcome (`ok`, `rate_limited`, … as the sidecar's `outcome` label, or a
    /// client-side failure: `transport_error`, `timeout`, `incomplete_stream`, `bad_body`, `http_<status>`).
    pub outcomes: BTreeMap<String, u64>,
    /// Σ of the costs of answers, micro-dollars: `x-sluice-cost-usd` of plain answers; for streams
    /// (which carry no cost header) the cost of the usage chunk at the route's prices.
    pub cost_micros: u64,
    /// Distinct per-request costs seen (micro-dollars → answers).
    pub costs_seen: BTreeMap<u64, u64>,
    /// `ok` plain answers without a cost header (should be none).
    pub ok_without_cost: u64,
    /// Streams' cost headers seen (none expected: the header goes before the usage).
    pub stream_cost_headers: u64,
    /// Latency of `ok` answers, microseconds (sorted at the end).
    #[serde(skip)]
    pub latencies_us: Vec<u32>,
}

/// What the client saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Plain requests.
    pub plain: KindTally,
    /// Streamed requests.
    pub stream: KindTally,
}

impl Tally {
    /// The tally of `kind`.
    pub fn of(&self, kind: Kind) -> &KindTally {
        match kind {
            Kind::Plain => &self.plain,
            Kind::Stream => &self.stream,
        }
    }

    fn of_mut(&mut self, kind: Kind) -> &mut KindTally {
        match kind {
            Kind::Plain => &mut self.plain,
            Kind::Stream => &mut self.stream,
        }
    }
}

/// Progress readable while the load runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Answers finished (any outcome).
    pub finished: AtomicU64,
    /// Requests in flight.
    pub in_flight: AtomicU64,
}

/// One answer as the client classified it.
#[derive(Debug)]
struct Answer {
    outcome: String,
    cost: Option<u64>,
    cost_header: bool,
    latency: Duration,
}

/// Offers `load` to the sidecar at `addr`; returns what it saw once every request has ended.
pub async fn run(addr: SocketAddr, load: &Load, progress: Arc<Progress>) -> Tally {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + load.duration;
    let plain = tokio::spawn(offer(
        Kind::Plain,
        addr,
        load.clone(),
        deadline,
        client.clone(),
        tally.clone(),
        progress.clone(),
    ));
    let stream = tokio::spawn(offer(
        Kind::Stream,
        addr,
        load.clone(),
        deadline,
        client,
        tally.clone(),
        progress,
    ));
    let _ = plain.await;
    let _ = stream.await;
    let mut tally = std::mem::take(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner));
    tally.plain.latencies_us.sort_unstable();
    tally.stream.latencies_us.sort_unstable();
    tally
}

/// Sends requests of `kind` at its rate until `deadline`, then waits for the last to end.
async fn offer(
    kind: Kind,
    addr: SocketAddr,
    load: Load,
    deadline: Instant,
    client: Client<HttpConnector, Full<Bytes>>,
    tally: Arc<Mutex<Tally>>,
    progress: Arc<Progress>,
) {
    let rate = match kind {
        Kind::Plain => load.plain_rate,
        Kind::Stream => load.stream_rate,
    };
    if rate == 0 {
        return;
    }
    let permits = Arc::new(Semaphore::new(load.max_in_flight as usize));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    // A late tick is sent at once: the rate holds on average.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let uri = format!("http://{addr}/v1/chat/completions");
    let mut n: u64 = 0;
    loop {
        ticks.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        n += 1;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            lock(&tally).of_mut(kind).not_sent += 1;
            continue;
        };
        lock(&tally).of_mut(kind).sent += 1;
        let user = user_of(n, load.users, load.greedy_every);
        let body = body_of(kind, &load.stream_model);
        let (client, uri, tally, progress) = (client.clone(), uri.clone(), tally.clone(), progress.clone());
        progress.in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let answer = match tokio::time::timeout(ANSWER_WITHIN, ask(&client, &uri, kind, &user, body)).await {
                Ok(answer) => answer,
                Err(_) => Answer {
                    outcome: "timeout".into(),
                    cost: None,
                    cost_header: false,
                    latency: ANSWER_WITHIN,
                },
            };
            record(&mut lock(&tally), kind, answer);
            progress.in_flight.fetch_sub(1, Ordering::Relaxed);
            progress.finished.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    // Every permit back: every request of this kind has ended.
    let _ = permits.acquire_many(load.max_in_flight).await;
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

fn record(tally: &mut Tally, kind: Kind, answer: Answer) {
    let t = tally.of_mut(kind);
    if answer.outcome == "ok" {
        t.latencies_us
            .push(u32::try_from(answer.latency.as_micros()).unwrap_or(u32::MAX));
        match answer.cost {
            Some(cost) => {
                t.cost_micros += cost;
                *t.costs_seen.entry(cost).or_insert(0) += 1;
            }
            None => t.ok_without_cost += 1,
        }
    } else if let Some(cost) = answer.cost {
        // A refused or failed answer that still names a cost counts towards the spend too.
        t.cost_micros += cost;
        *t.costs_seen.entry(cost).or_insert(0) += 1;
    }
    if kind == Kind::Stream && answer.cost_header {
        t.stream_cost_headers += 1;
    }
    *t.outcomes.entry(answer.outcome).or_insert(0) += 1;
}

/// The user of the `n`-th request of a kind.
pub fn user_of(n: u64, users: u32, greedy_every: u32) -> String {
    if greedy_every > 0 && n.is_multiple_of(u64::from(greedy_every)) {
        GREEDY_USER.to_owned()
    } else {
        format!("soak-user-{}", n % u64::from(users.max(1)))
    }
}

fn body_of(kind: Kind, stream_model: &str) -> Bytes {
    match kind {
        Kind::Plain => Bytes::from(format!(
            "{{\"model\":\"{}\",\"messages\":[{{\"role\":\"system\",\"content\":\"You are terse.\"}},\
             {{\"role\":\"user\",\"content\":\"Say hello to the soak in five words.\"}}],\"max_tokens\":32}}",
            manifest::PLAIN_MODEL
        )),
        Kind::Stream => Bytes::from(format!(
            "{{\"model\":\"{stream_model}\",\"stream\":true,\"stream_options\":{{\"include_usage\":true}},\
             \"messages\":[{{\"role\":\"user\",\"content\":\"Count to one hundred.\"}}],\"max_tokens\":200}}"
        )),
    }
}

async fn ask(client: &Client<HttpConnector, Full<Bytes>>, uri: &str, kind: Kind, user: &str, body: Bytes) -> Answer {
    let started = Instant::now();
    let failed = |outcome: &str| Answer {
        outcome: outcome.to_owned(),
        cost: None,
        cost_header: false,
        latency: started.elapsed(),
    };
    let Ok(req) = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-sluice-user", user)
        .body(Full::new(body))
    else {
        return failed("bad_request_built");
    };
    let Ok(resp) = client.request(req).await else {
        return failed("transport_error");
    };
    let status = resp.status();
    let header_cost = resp
        .headers()
        .get(COST_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| manifest::parse_usd_micros(v).ok_or(()));
    let cost_header = header_cost.is_some();
    let header_cost = match header_cost {
        Some(Ok(c)) => Some(c),
        Some(Err(())) => return failed("bad_cost_header"),
        None => None,
    };
    let mut body = resp.into_body();
    if status != StatusCode::OK {
        let Ok(collected) = body.collect().await else {
            return failed("transport_error");
        };
        return Answer {
            outcome: refusal_outcome(status, &collected.to_bytes()),
            cost: header_cost,
            cost_header,
            latency: started.elapsed(),
        };
    }
    match kind {
        Kind::Plain => {
            let Ok(collected) = body.collect().await else {
                return failed("transport_error");
            };
            let json: Option<serde_json::Value> = serde_json::from_slice(&collected.to_bytes()).ok();
            let answered = json.is_some_and(|j| j["choices"].as_array().is_some_and(|c| !c.is_empty()));
            if !answered {
                return failed("bad_body");
            }
            Answer {
                outcome: "ok".into(),
                cost: header_cost,
                cost_header,
                latency: started.elapsed(),
            }
        }
        Kind::Stream => {
            let mut events = SseTally::default();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return failed("transport_error");
                };
                if let Ok(data) = frame.into_data() {
                    events.feed(&data);
                }
            }
            let complete = events.done && events.content_chunks == u64::from(manifest::STREAM_CHUNKS);
            match (complete, events.usage) {
                (true, Some((prompt, completion))) => Answer {
                    outcome: "ok".into(),
                    cost: Some(manifest::cost_micros(prompt, completion)),
                    cost_header,
                    latency: started.elapsed(),
                },
                _ => failed("incomplete_stream"),
            }
        }
    }
}

/// The outcome of a non-200 answer, named as the sidecar's `outcome` label where one applies.
pub fn refusal_outcome(status: StatusCode, body: &[u8]) -> String {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
    match (status.as_u16(), code.as_deref()) {
        (429, Some("budget_exceeded")) => "budget_refused".into(),
        (429, Some("rate_limited")) => "rate_limited".into(),
        (502..=504, _) => "upstream_error".into(),
        (s, _) => format!("http_{s}"),
    }
}

/// What a stream's events said: content chunks, the usage chunk, the closing `[DONE]`.
#[derive(Debug, Default)]
pub struct SseTally {
    buffer: Vec<u8>,
    /// Chunks carrying `delta.content`.
    pub content_chunks: u64,
    /// `(prompt_tokens, completion_tokens)` of the usage chunk.
    pub usage: Option<(u64, u64)>,
    /// Whether `data: [DONE]` arrived.
    pub done: bool,
}

impl SseTally {
    /// Takes the next bytes of the stream (events may straddle frames).
    pub fn feed(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
            self.event(&event[..end]);
        }
    }

    fn event(&mut self, event: &[u8]) {
        let text = String::from_utf8_lossy(event);
        for line in text.lines() {
            let Some(payload) = line.strip_prefix("data:") else {
                continue;
            };
            let payload = payload.trim();
            if payload == "[DONE]" {
                self.done = true;
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(payload) else {
                continue;
            };
            if v["choices"][0]["delta"]["content"].is_string() {
                self.content_chunks += 1;
            }
            if let (Some(p), Some(c)) = (
                v["usage"]["prompt_tokens"].as_u64(),
                v["usage"]["completion_tokens"].as_u64(),
            ) {
                self.usage = Some((p, c));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_request_is_the_greedy_users() {
        assert_eq!(user_of(8, 50, 8), GREEDY_USER);
        assert_eq!(user_of(9, 50, 8), "soak-user-9");
        assert_eq!(user_of(51, 50, 8), "soak-user-1");
        assert_eq!(user_of(8, 50, 0), "soak-user-8");
    }

    #[test]
    fn refusals_are_named_like_the_sidecars_outcomes() {
        let body = br#"{"error":{"message":"m","type":"t","code":"rate_limited","param":null}}"#;
        assert_eq!(refusal_outcome(StatusCode::TOO_MANY_REQUESTS, body), "rate_limited");
        let body = br#"{"error":{"code":"budget_exceeded"}}"#;
        assert_eq!(refusal_outcome(StatusCode::TOO_MANY_REQUESTS, body), "budget_refused");
        assert_eq!(refusal_outcome(StatusCode::BAD_GATEWAY, b""), "upstream_error");
        assert_eq!(refusal_outcome(StatusCode::BAD_REQUEST, b"{}"), "http_400");
    }

    #[test]
    fn sse_events_are_counted_across_frames() {
        let mut t = SseTally::default();
        t.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"del");
        t.feed(b"ta\":{\"content\":\"b\"}}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
        t.feed(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n");
        assert_eq!((t.content_chunks, t.usage, t.done), (2, Some((12, 2)), true));
    }

    #[test]
    fn bodies_are_json_and_name_their_model() {
        let plain: serde_json::Value = serde_json::from_slice(&body_of(Kind::Plain, "x")).unwrap();
        assert_eq!(plain["model"], manifest::PLAIN_MODEL);
        let stream: serde_json::Value = serde_json::from_slice(&body_of(Kind::Stream, "m-stream-1")).unwrap();
        assert_eq!(stream["stream_options"]["include_usage"], true);
        assert_eq!(stream["model"], "m-stream-1");
    }
}
