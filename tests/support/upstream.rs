//! An in-test upstream that speaks OpenAI's wire format and misbehaves on command.
//!
//! `POST /v1/chat/completions` and `POST /v1/embeddings` answer according to the
//! request body's `model`, so a manifest picks the behaviour per backend through
//! the backend's `model` (the sidecar rewrites the client's alias to it):
//!
//! | model | answer |
//! |---|---|
//! | `mock-ok` | a normal answer: [`OK_CONTENT`] in [`OK_PIECES`] when streamed, [`usage`] |
//! | `mock-400` | 400 `invalid_request_error` ([`BAD_REQUEST_MESSAGE`]) |
//! | `mock-401` | 401 `invalid_api_key` |
//! | `mock-429` | 429 `rate_limit_exceeded` with `Retry-After: 2` |
//! | `mock-500`, `mock-503` | 500 / 503 `server_error` |
//! | `mock-garbage` | 200 whose JSON body (or first SSE `data:` line) is not valid JSON |
//! | `mock-cut-stream` | the first [`CUT_AFTER_CHUNKS`] chunks, then the TCP connection drops (no `[DONE]`) |
//! | `mock-slow-stream` | like `mock-ok`, one chunk every [`SLOW_CHUNK_INTERVAL`] |
//! | `mock-stall` | accepts the request and never answers |
//! | `mock-whole` | like `mock-ok`, but always whole (JSON): `stream` ignored, as some OpenAI-compatible servers do |
//! | `mock-tool` | a tool call, then an answer from its result (see [`crate::mock_server::openai_tool_answer`]) |
//! | `mock-ok-*` (e.g. `mock-ok-a`) | like `mock-ok`: distinct names for distinct backends |
//! | anything else | 404 `model_not_found` |
//!
//! A test can also steer a model from Rust: [`Upstream::script`] queues behaviours its next
//! requests follow (then the name's behaviour again), [`Upstream::set_delay`] delays every
//! answer, [`Upstream::set_usage`] changes the usage it reports, and [`Upstream::hold`] keeps
//! its requests waiting until [`Upstream::release`] lets them go one by one.
//!
//! Streams follow OpenAI's format: `chat.completion.chunk` objects in `data: `
//! lines, `data: [DONE]` last; with `stream_options.include_usage` every chunk
//! carries `"usage": null` and one more chunk with `"choices": []` carries the usage.
//!
//! `GET /_requests` returns every request received (method, path, headers, JSON
//! body) as a JSON array; `DELETE /_requests` forgets them. [`Upstream::requests`]
//! gives the same to Rust tests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use futures::stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// The `created` timestamp of every answer.
pub const CREATED: u64 = 1_700_000_000;
/// The `system_fingerprint` of every chat answer.
pub const FINGERPRINT: &str = "fp_mock";
/// The streamed pieces of the `mock-ok` answer, in order.
pub const OK_PIECES: [&str; 5] = ["Hello", " from", " the", " mock", " upstream."];
/// The whole `mock-ok` answer.
pub const OK_CONTENT: &str = "Hello from the mock upstream.";
/// `usage.prompt_tokens` of every chat answer.
pub const PROMPT_TOKENS: u64 = 12;
/// `usage.completion_tokens` of every chat answer (one per piece).
pub const COMPLETION_TOKENS: u64 = 5;
/// `usage.prompt_tokens_details.cached_tokens` of every chat answer.
pub const CACHED_TOKENS: u64 = 4;
/// Chunks `mock-cut-stream` sends before dropping the connection.
pub const CUT_AFTER_CHUNKS: usize = 3;
/// Time between two chunks of `mock-slow-stream`.
pub const SLOW_CHUNK_INTERVAL: Duration = Duration::from_millis(50);
/// Vector length of embeddings when the request sets no `dimensions`.
pub const EMBEDDING_DIMENSIONS: usize = 8;
/// The message of `mock-400`'s error.
pub const BAD_REQUEST_MESSAGE: &str = "Invalid value for 'temperature': expected a number between 0 and 2.";
/// The message of `mock-401`'s error (a masked key, as OpenAI writes it).
pub const UNAUTHORIZED_MESSAGE: &str = "Incorrect API key provided: sk-test-********-123.";
/// The `Retry-After` header of `mock-429`.
pub const RETRY_AFTER_SECS: &str = "2";

/// One request as the upstream received it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Header names in lower case; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON; a body that is not JSON is kept as a JSON string, an empty one as null.
    pub body: Value,
}

impl RecordedRequest {
    /// A header's value, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A running upstream on `127.0.0.1`, stopped when dropped.
#[derive(Debug)]
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    controls: Arc<Mutex<Controls>>,
    server: JoinHandle<()>,
}

/// How tests steer each model beyond what its name says.
#[derive(Debug, Default)]
struct Controls {
    /// Behaviours the next requests follow, in order.
    scripts: HashMap<String, VecDeque<Behaviour>>,
    /// Time before each answer.
    delays: HashMap<String, Duration>,
    /// `(prompt_tokens, completion_tokens)` reported instead of the defaults.
    usage: HashMap<String, (u64, u64)>,
    /// Requests wait for a permit of this semaphore before answering.
    held: HashMap<String, Arc<Semaphore>>,
}

/// What the upstream does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// A normal answer.
    Ok,
    /// This status with an OpenAI error body (429 carries `Retry-After: 2`).
    Fail(StatusCode),
    /// 429 with `Retry-After` of this many seconds.
    RateLimitedFor(u64),
    /// 200 with a body that is not JSON.
    Garbage,
    /// A stream (or body) that breaks off part-way.
    CutStream,
    /// A stream with a pause between chunks.
    SlowStream,
    /// Never answers.
    Stall,
    /// A normal answer, always whole: `stream` ignored.
    Whole,
    /// 404 `model_not_found`.
    UnknownModel,
}

impl Upstream {
    /// Starts an upstream on a free loopback port.
    pub async fn start() -> Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts an upstream on `addr` (port 0 picks a free one).
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the upstream to {addr}"))?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let controls = Arc::new(Mutex::new(Controls::default()));
        let server = tokio::spawn(serve(listener, Arc::clone(&requests), Arc::clone(&controls)));
        Ok(Self {
            addr,
            requests,
            controls,
            server,
        })
    }

    /// The API root to put in a backend's `baseUrl`: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, oldest first (`/_requests` itself excluded).
    pub async fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many requests for `model` (the body's `model`, as the sidecar sent it) arrived.
    pub async fn count(&self, model: &str) -> usize {
        self.requests
            .lock()
            .map(|r| r.iter().filter(|q| q.body["model"] == model).count())
            .unwrap_or_default()
    }

    /// The next requests for `model` behave as `behaviours` say, one each, in order.
    pub fn script(&self, model: &str, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.control(|c| c.scripts.entry(model.to_owned()).or_default().extend(behaviours));
    }

    /// Every answer for `model` waits `delay` first.
    pub fn set_delay(&self, model: &str, delay: Duration) {
        self.control(|c| c.delays.insert(model.to_owned(), delay));
    }

    /// Answers for `model` report this usage.
    pub fn set_usage(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) {
        self.control(|c| c.usage.insert(model.to_owned(), (prompt_tokens, completion_tokens)));
    }

    /// Requests for `model` arriving from now on wait (already recorded) until released.
    pub fn hold(&self, model: &str) {
        self.control(|c| c.held.insert(model.to_owned(), Arc::new(Semaphore::new(0))));
    }

    /// Lets `n` held requests for `model` answer, in arrival order.
    pub fn release(&self, model: &str, n: usize) {
        self.control(|c| {
            if let Some(gate) = c.held.get(model) {
                gate.add_permits(n);
            }
        });
    }

    fn control<T>(&self, f: impl FnOnce(&mut Controls) -> T) -> Option<T> {
        self.controls.lock().ok().map(|mut c| f(&mut c))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every connection.
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, requests: Arc<Mutex<Vec<RecordedRequest>>>, controls: Arc<Mutex<Controls>>) {
    crate::mock_server::serve_connections(listener, move |request| {
        handle(request, Arc::clone(&requests), Arc::clone(&controls))
    })
    .await;
}

type Body = BoxBody<Bytes, std::io::Error>;

async fn handle(
    request: Request<Incoming>,
    log: Arc<Mutex<Vec<RecordedRequest>>>,
    controls: Arc<Mutex<Controls>>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                &format!("could not read the body: {e}"),
                "invalid_request_error",
                None,
                None,
            ));
        }
    };

    if parts.uri.path() == "/_requests" {
        return Ok(match parts.method {
            Method::GET => {
                let all = log.lock().map(|r| r.clone()).unwrap_or_default();
                json_response(StatusCode::OK, &serde_json::to_value(all).unwrap_or(Value::Null))
            }
            Method::DELETE => {
                if let Ok(mut r) = log.lock() {
                    r.clear();
                }
                json_response(StatusCode::OK, &json!({"cleared": true}))
            }
            _ => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET or DELETE",
                "invalid_request_error",
                None,
                None,
            ),
        });
    }

    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let sequence = match log.lock() {
        Ok(mut r) => {
            r.push(RecordedRequest {
                method: parts.method.to_string(),
                path: path.clone(),
                headers,
                body: body.clone(),
            });
            r.len()
        }
        Err(_) => 0,
    };

    let steer = steer(&controls, body.get("model").and_then(Value::as_str).unwrap_or_default()).await;
    let response = match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/v1/chat/completions") => chat(&body, sequence, steer).await,
        (&Method::POST, "/v1/embeddings") => embeddings(&body, steer.behaviour).await,
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("Unknown request URL: {} {path}", parts.method),
            "invalid_request_error",
            None,
            Some("unknown_url"),
        ),
    };
    Ok(response)
}

/// What the controls say for one request, after its hold and delay were served.
#[derive(Clone, Copy)]
struct Steer {
    behaviour: Behaviour,
    usage: Option<(u64, u64)>,
}

async fn steer(controls: &Mutex<Controls>, model: &str) -> Steer {
    let (scripted, delay, usage, gate) = match controls.lock() {
        Ok(mut c) => (
            c.scripts.get_mut(model).and_then(VecDeque::pop_front),
            c.delays.get(model).copied(),
            c.usage.get(model).copied(),
            c.held.get(model).cloned(),
        ),
        Err(_) => (None, None, None, None),
    };
    if let Some(gate) = gate
        && let Ok(permit) = gate.acquire().await
    {
        permit.forget();
    }
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Steer {
        behaviour: scripted.unwrap_or_else(|| behaviour(model)),
        usage,
    }
}

fn behaviour(model: &str) -> Behaviour {
    match model {
        "mock-ok" => Behaviour::Ok,
        m if m.starts_with("mock-ok-") => Behaviour::Ok,
        "mock-400" => Behaviour::Fail(StatusCode::BAD_REQUEST),
        "mock-401" => Behaviour::Fail(StatusCode::UNAUTHORIZED),
        "mock-429" => Behaviour::Fail(StatusCode::TOO_MANY_REQUESTS),
        "mock-500" => Behaviour::Fail(StatusCode::INTERNAL_SERVER_ERROR),
        "mock-503" => Behaviour::Fail(StatusCode::SERVICE_UNAVAILABLE),
        "mock-garbage" => Behaviour::Garbage,
        "mock-cut-stream" => Behaviour::CutStream,
        "mock-slow-stream" => Behaviour::SlowStream,
        "mock-stall" => Behaviour::Stall,
        "mock-whole" => Behaviour::Whole,
        _ => Behaviour::UnknownModel,
    }
}

async fn chat(body: &Value, sequence: usize, steer: Steer) -> Response<Body> {
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
            None,
        );
    };
    let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
    let id = format!("chatcmpl-mock-{sequence}");
    if model == "mock-tool" {
        return crate::mock_server::openai_tool_answer(body, &id, sequence, streamed, include_usage);
    }
    let with_usage = |mut v: Value| {
        if let (Some((prompt, completion)), Some(usage)) = (steer.usage, v.get_mut("usage").filter(|u| u.is_object())) {
            usage["prompt_tokens"] = json!(prompt);
            usage["completion_tokens"] = json!(completion);
            usage["total_tokens"] = json!(prompt + completion);
        }
        v
    };
    match steer.behaviour {
        Behaviour::Ok | Behaviour::SlowStream if !streamed => {
            json_response(StatusCode::OK, &with_usage(completion(&id, model)))
        }
        Behaviour::Whole => json_response(StatusCode::OK, &with_usage(completion(&id, model))),
        Behaviour::Ok => sse(steps(
            completion_chunks(&id, model, include_usage)
                .into_iter()
                .map(with_usage)
                .collect(),
            Duration::ZERO,
            true,
        )),
        Behaviour::SlowStream => sse(steps(
            completion_chunks(&id, model, include_usage),
            SLOW_CHUNK_INTERVAL,
            true,
        )),
        Behaviour::CutStream if streamed => {
            let mut chunks = completion_chunks(&id, model, include_usage);
            chunks.truncate(CUT_AFTER_CHUNKS);
            sse(steps(chunks, Duration::from_millis(10), false))
        }
        Behaviour::CutStream => {
            // Promise the whole answer, send half of it, then drop the connection.
            let whole = completion(&id, model).to_string();
            let half = Bytes::from(whole.as_bytes()[..whole.len() / 2].to_vec());
            let steps = VecDeque::from([Step::Send(half), Step::Wait(Duration::from_millis(10)), Step::Cut]);
            let mut response = stream_response(steps, "application/json");
            if let Ok(length) = whole.len().to_string().parse() {
                response.headers_mut().insert(header::CONTENT_LENGTH, length);
            }
            response
        }
        Behaviour::Garbage if streamed => {
            let steps = VecDeque::from([
                Step::Send(Bytes::from_static(
                    b"data: {\"id\": \"chatcmpl-garbage\", \"object\": \"chat.completion.chunk\", \"choices\": [\n\n",
                )),
                Step::Send(Bytes::from_static(b"data: [DONE]\n\n")),
            ]);
            stream_response(steps, "text/event-stream")
        }
        Behaviour::Garbage => raw_response(
            StatusCode::OK,
            "application/json",
            r#"{"id": "chatcmpl-garbage", "object": "chat.completion", "choices": ["#,
        ),
        Behaviour::Fail(status) => failure(status),
        Behaviour::RateLimitedFor(secs) => rate_limited_for(secs),
        Behaviour::Stall => std::future::pending().await,
        Behaviour::UnknownModel => model_not_found(model),
    }
}

async fn embeddings(body: &Value, behaviour: Behaviour) -> Response<Body> {
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
            None,
        );
    };
    match behaviour {
        Behaviour::Ok | Behaviour::SlowStream | Behaviour::CutStream | Behaviour::Whole => {}
        Behaviour::Fail(status) => return failure(status),
        Behaviour::RateLimitedFor(secs) => return rate_limited_for(secs),
        Behaviour::Garbage => {
            return raw_response(StatusCode::OK, "application/json", r#"{"object": "list", "data": ["#);
        }
        Behaviour::Stall => return std::future::pending().await,
        Behaviour::UnknownModel => return model_not_found(model),
    }
    let Some(inputs) = embedding_inputs(body.get("input").unwrap_or(&Value::Null)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "'input' must be a string, an array of strings, or an array of token arrays",
            "invalid_request_error",
            Some("input"),
            None,
        );
    };
    let dimensions = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(EMBEDDING_DIMENSIONS, |d| d as usize);
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    json_response(StatusCode::OK, &embedding_list(model, &inputs, dimensions, base64))
}

/// Each input of an embeddings request as its count of whitespace-separated words (tokens for token arrays).
fn embedding_inputs(input: &Value) -> Option<Vec<u64>> {
    let words = |s: &str| s.split_whitespace().count() as u64;
    match input {
        Value::String(s) => Some(vec![words(s)]),
        Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => {
            Some(vec![items.len() as u64])
        }
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Some(words(s)),
                Value::Array(tokens) => Some(tokens.len() as u64),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The vector the upstream gives input `index`: `index + 0.125 * (j + 1)`, exact in `f32` and JSON.
pub fn embedding_vector(index: usize, dimensions: usize) -> Vec<f32> {
    (0..dimensions)
        .map(|j| index as f32 + 0.125 * (j as f32 + 1.0))
        .collect()
}

/// The embeddings `list` object for inputs of the given token counts.
pub fn embedding_list(model: &str, input_tokens: &[u64], dimensions: usize, base64: bool) -> Value {
    let data: Vec<Value> = input_tokens
        .iter()
        .enumerate()
        .map(|(index, _)| {
            let vector = embedding_vector(index, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(base64_encode(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens: u64 = input_tokens.iter().sum();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}

/// The usage of every chat answer.
pub fn usage() -> Value {
    json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

/// The `chat.completion` object the upstream answers with.
pub fn completion(id: &str, model: &str) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": OK_CONTENT, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": usage(),
        "service_tier": "default"
    })
}

/// The `chat.completion.chunk` objects of a streamed answer, in order: a role chunk, one chunk per
/// piece of [`OK_PIECES`], a `finish_reason` chunk and, with `include_usage`, the usage chunk (and
/// `"usage": null` on every other chunk).
pub fn completion_chunks(id: &str, model: &str, include_usage: bool) -> Vec<Value> {
    let chunk = |delta: Value, finish_reason: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    )];
    chunks.extend(
        OK_PIECES
            .iter()
            .map(|piece| chunk(json!({"content": piece}), Value::Null)),
    );
    chunks.push(chunk(json!({}), json!("stop")));
    if include_usage {
        chunks.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [],
            "usage": usage()
        }));
    }
    chunks
}

/// The OpenAI error object.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// The error body each failing model answers with, by status.
pub fn failure_body(status: StatusCode) -> Value {
    match status.as_u16() {
        400 => error_body(
            BAD_REQUEST_MESSAGE,
            "invalid_request_error",
            Some("temperature"),
            Some("invalid_value"),
        ),
        401 => error_body(
            UNAUTHORIZED_MESSAGE,
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        429 => error_body(
            "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 2s.",
            "requests",
            None,
            Some("rate_limit_exceeded"),
        ),
        503 => error_body(
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
            None,
        ),
        _ => error_body(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
    }
}

fn failure(status: StatusCode) -> Response<Body> {
    let mut response = json_response(status, &failure_body(status));
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    response
}

fn rate_limited_for(secs: u64) -> Response<Body> {
    let mut response = failure(StatusCode::TOO_MANY_REQUESTS);
    if let Ok(value) = header::HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn model_not_found(model: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        &format!("The model `{model}` does not exist or you do not have access to it."),
        "invalid_request_error",
        None,
        Some("model_not_found"),
    )
}

fn error(status: StatusCode, message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Response<Body> {
    json_response(status, &error_body(message, kind, param, code))
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    raw_response(status, "application/json", &body.to_string())
}

fn raw_response(status: StatusCode, content_type: &'static str, body: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_owned()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    headers.insert("x-request-id", header::HeaderValue::from_static("req_mock"));
    response
}

/// One step of a streamed body.
enum Step {
    Send(Bytes),
    Wait(Duration),
    /// Fail the body, which makes hyper drop the connection.
    Cut,
}

/// SSE steps for `chunks`, `interval` apart, ending with `data: [DONE]` when `done`.
fn steps(chunks: Vec<Value>, interval: Duration, done: bool) -> VecDeque<Step> {
    let mut steps = VecDeque::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        if i > 0 && !interval.is_zero() {
            steps.push_back(Step::Wait(interval));
        }
        steps.push_back(Step::Send(Bytes::from(format!("data: {chunk}\n\n"))));
    }
    if done {
        steps.push_back(Step::Send(Bytes::from_static(b"data: [DONE]\n\n")));
    } else {
        steps.push_back(Step::Wait(Duration::from_millis(10)));
        steps.push_back(Step::Cut);
    }
    steps
}

fn sse(steps: VecDeque<Step>) -> Response<Body> {
    stream_response(steps, "text/event-stream")
}

fn stream_response(steps: VecDeque<Step>, content_type: &'static str) -> Response<Body> {
    let frames = stream::unfold(steps, |mut steps| async move {
        loop {
            match steps.pop_front()? {
                Step::Wait(d) => tokio::time::sleep(d).await,
                Step::Send(bytes) => return Some((Ok(Frame::data(bytes)), steps)),
                Step::Cut => {
                    let cut = std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "mock-cut-stream drops the connection",
                    );
                    return Some((Err(cut), steps));
                }
            }
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    headers.insert("x-request-id", header::HeaderValue::from_static("req_mock"));
    response
}

/// Standard base64 with padding, as OpenAI encodes `encoding_format: base64` embeddings.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(&1.0f32.to_le_bytes()), "AACAPw==");
    }
}
