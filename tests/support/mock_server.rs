//! What the Anthropic and Gemini in-test upstreams share: a loopback HTTP server that records
//! every request and answers through a handler, bodies that arrive in steps (pausing, or breaking
//! the connection on command), and the tool conversation every upstream plays.
//!
//! `GET /_requests` returns every request received as a JSON array; `DELETE /_requests` forgets
//! them, as with the OpenAI upstream.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use futures::stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::upstream::RecordedRequest;

/// The tool every upstream's `mock-tool` model calls.
pub const TOOL_NAME: &str = "get_weather";
/// The city it asks about.
pub const TOOL_CITY: &str = "Paris";
/// What `mock-tool` answers once it has the tool's result: this, then the result's text.
pub const TOOL_ANSWER_PREFIX: &str = "The weather in Paris: ";

/// The arguments of the `mock-tool` call.
pub fn tool_arguments() -> Value {
    json!({"city": TOOL_CITY})
}

/// A response body.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Answers one recorded request; the number counts requests received, this one included.
pub type Handler =
    Arc<dyn Fn(RecordedRequest, usize) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// A running server on loopback, stopped when dropped.
pub struct MockServer {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// Serves `handler` on `addr` (port 0 picks a free one).
    pub async fn bind(addr: SocketAddr, handler: Handler) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding a mock upstream to {addr}"))?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let server = tokio::spawn(serve(listener, Arc::clone(&requests), handler));
        Ok(Self { addr, requests, server })
    }

    /// Every request received so far, oldest first (`/_requests` itself excluded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every connection.
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, requests: Arc<Mutex<Vec<RecordedRequest>>>, handler: Handler) {
    serve_connections(listener, move |request| {
        handle(request, Arc::clone(&requests), Arc::clone(&handler))
    })
    .await;
}

/// Accepts connections on `listener` for ever, answering each request (HTTP/1 or HTTP/2) with
/// `handle`; the in-test upstreams' accept loop.
pub async fn serve_connections<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        connections.spawn(async move {
            // A connection that ends in error (a dropped stream, a client that went away) is expected here.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service_fn(handle))
                .await;
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
}

async fn handle(
    request: Request<Incoming>,
    log: Arc<Mutex<Vec<RecordedRequest>>>,
    handler: Handler,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    if parts.uri.path() == "/_requests" {
        return Ok(match parts.method {
            Method::GET => {
                let all = log.lock().map(|r| r.clone()).unwrap_or_default();
                json_response(StatusCode::OK, &serde_json::to_value(all).unwrap_or(Value::Null))
            }
            _ => {
                if let Ok(mut r) = log.lock() {
                    r.clear();
                }
                json_response(StatusCode::OK, &json!({"cleared": true}))
            }
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
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path,
        headers,
        body,
    };
    let sequence = match log.lock() {
        Ok(mut r) => {
            r.push(recorded.clone());
            r.len()
        }
        Err(_) => 0,
    };
    Ok(handler(recorded, sequence).await)
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    raw_response(status, "application/json", &body.to_string())
}

/// A response with a fixed body.
pub fn raw_response(status: StatusCode, content_type: &'static str, body: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_owned()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response
}

/// One step of a body sent in steps.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes.
    Send(Bytes),
    /// Pause.
    Wait(Duration),
    /// Fail the body, which makes hyper drop the connection.
    Cut,
}

/// A `200` whose body is sent step by step.
pub fn stream_response(steps: VecDeque<Step>, content_type: &'static str) -> Response<Body> {
    let frames = stream::unfold(steps, |mut steps| async move {
        loop {
            match steps.pop_front()? {
                Step::Wait(d) => tokio::time::sleep(d).await,
                Step::Send(bytes) => return Some((Ok(Frame::data(bytes)), steps)),
                Step::Cut => {
                    let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the mock drops the connection");
                    return Some((Err(cut), steps));
                }
            }
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    response
}

/// A JSON body promised whole (its `Content-Length` set) of which only half is sent before the
/// connection drops.
pub fn cut_json_response(whole: &Value) -> Response<Body> {
    let whole = whole.to_string();
    let half = Bytes::from(whole.as_bytes()[..whole.len() / 2].to_vec());
    let steps = VecDeque::from([Step::Send(half), Step::Wait(Duration::from_millis(10)), Step::Cut]);
    let mut response = stream_response(steps, "application/json");
    if let Ok(length) = whole.len().to_string().parse() {
        response.headers_mut().insert(header::CONTENT_LENGTH, length);
    }
    response
}

/// The OpenAI upstream's `mock-tool`: a `get_weather` call (streamed with its arguments in two
/// pieces), or, once the last message is the tool's result, [`TOOL_ANSWER_PREFIX`] and the result.
pub fn openai_tool_answer(
    body: &Value,
    id: &str,
    sequence: usize,
    streamed: bool,
    include_usage: bool,
) -> Response<Body> {
    use crate::upstream::{CREATED, FINGERPRINT, completion, usage};
    let model = body["model"].as_str().unwrap_or_default();
    let last = body.get("messages").and_then(Value::as_array).and_then(|m| m.last());
    let result = last.filter(|m| m["role"] == "tool").map(|m| match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    });
    let call_id = format!("call_mock_{sequence}");
    let arguments = tool_arguments().to_string();
    let (message, finish) = match &result {
        Some(result) => (
            json!({"role": "assistant", "content": format!("{TOOL_ANSWER_PREFIX}{result}")}),
            "stop",
        ),
        None => (
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": call_id, "type": "function",
                "function": {"name": TOOL_NAME, "arguments": arguments}}]}),
            "tool_calls",
        ),
    };
    if !streamed {
        let mut whole = completion(id, model);
        whole["choices"][0]["message"] = message;
        whole["choices"][0]["finish_reason"] = json!(finish);
        return json_response(StatusCode::OK, &whole);
    }
    let chunk = |delta: Value, finish_reason: Value| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut chunks = vec![chunk(json!({"role": "assistant", "content": null}), Value::Null)];
    match &result {
        Some(result) => {
            chunks.push(chunk(json!({"content": TOOL_ANSWER_PREFIX}), Value::Null));
            chunks.push(chunk(json!({"content": result}), Value::Null));
        }
        None => {
            chunks.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                    "function": {"name": TOOL_NAME, "arguments": ""}}]}),
                Value::Null,
            ));
            let (head, tail) = arguments.split_at(arguments.len() / 2);
            for piece in [head, tail] {
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
        }
    }
    chunks.push(chunk(json!({}), json!(finish)));
    if include_usage {
        chunks.push(
            json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": FINGERPRINT, "choices": [], "usage": usage()}),
        );
    }
    let mut steps: VecDeque<Step> = chunks
        .into_iter()
        .map(|c| Step::Send(Bytes::from(format!("data: {c}\n\n"))))
        .collect();
    steps.push_back(Step::Send(Bytes::from_static(b"data: [DONE]\n\n")));
    stream_response(steps, "text/event-stream")
}

/// The events of a server-sent-events body: each `event:` name (if any) and its `data:`.
pub fn read_sse(body: &str) -> Vec<(Option<String>, String)> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let mut name = None;
            let mut data = Vec::new();
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            (!data.is_empty()).then(|| (name, data.join("\n")))
        })
        .collect()
}
