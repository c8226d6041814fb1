//! The benchmark upstream: answers OpenAI chat completions at once, so it is never what a run
//! measures.
//!
//! `POST …/chat/completions` answers a fixed `chat.completion`; with `"stream": true` it streams
//! `chat.completion.chunk` events instead, and one more usage chunk when the request asks for
//! `stream_options.include_usage` (as the sidecar does). How a stream runs is read from the
//! request, the query winning over the model name:
//!
//! | control | effect |
//! |---|---|
//! | `?chunks=N&delay_us=D` | N content chunks, D microseconds apart |
//! | model `…stream-N` | N chunks, no delay |
//! | model `…stream-N-D` | N chunks, D microseconds apart (`stream-600-1000000`: a slow stream held open) |
//! | any other model | [`DEFAULT_CHUNKS`] chunks, no delay |
//!
//! `POST …/responses` and `POST …/messages` answer a fixed Response and a fixed Anthropic Message
//! (not streamed), so that a direct call and the floor can send the driver's Responses and
//! Messages requests too; the sidecar translates those to chat for this upstream.
//!
//! `GET /healthz` answers 200. Connections are HTTP/1.1 with keep-alive.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use futures::{StreamExt as _, stream};
use http_body_util::{BodyExt as _, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use serde::Deserialize;

use crate::serve;

/// Chunks of a stream whose request names no count.
pub const DEFAULT_CHUNKS: u32 = 10;
/// The most chunks one stream may ask for.
pub const MAX_CHUNKS: u32 = 100_000;

/// The fixed non-streamed answer.
pub const COMPLETION: &str = concat!(
    r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-upstream","#,
    r#""choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the benchmark upstream."},"#,
    r#""logprobs":null,"finish_reason":"stop"}],"#,
    r#""usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21},"system_fingerprint":"fp_bench"}"#
);

/// The fixed answer to a Responses request.
pub const RESPONSE: &str = concat!(
    r#"{"id":"resp_bench","object":"response","created_at":1700000000,"status":"completed","model":"bench-upstream","#,
    r#""output":[{"type":"message","id":"msg_bench","status":"completed","role":"assistant","#,
    r#""content":[{"type":"output_text","text":"Hello from the benchmark upstream.","annotations":[]}]}],"#,
    r#""usage":{"input_tokens":12,"output_tokens":9,"total_tokens":21}}"#
);

/// The fixed answer to an Anthropic Messages request.
pub const MESSAGE: &str = concat!(
    r#"{"id":"msg_bench","type":"message","role":"assistant","model":"bench-upstream","#,
    r#""content":[{"type":"text","text":"Hello from the benchmark upstream."}],"#,
    r#""stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":9}}"#
);

const FIRST_CHUNK: &str = concat!(
    "data: ",
    r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-upstream","#,
    r#""choices":[{"index":0,"delta":{"role":"assistant","content":"tok"},"finish_reason":null}]}"#,
    "\n\n"
);
const CHUNK: &str = concat!(
    "data: ",
    r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-upstream","#,
    r#""choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}"#,
    "\n\n"
);
const LAST_CHUNK: &str = concat!(
    "data: ",
    r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-upstream","#,
    r#""choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    "\n\n"
);
const DONE: &str = "data: [DONE]\n\n";

/// How one stream runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPlan {
    /// Content chunks before the closing one.
    pub chunks: u32,
    /// Pause before each chunk after the first.
    pub delay: Duration,
}

/// The fields of a request (chat, Responses or Messages) this upstream acts on.
#[derive(Debug, Deserialize)]
struct ChatBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Reads `stream-N` or `stream-N-D` from a model name, anywhere in it (`gpt-4o-mini-stream-100`).
pub fn plan_from_model(model: &str) -> Option<StreamPlan> {
    let rest = &model[model.find("stream-")? + "stream-".len()..];
    let (chunks, delay) = match rest.split_once('-') {
        Some((n, d)) => (n.parse().ok()?, d.parse().ok()?),
        None => (rest.parse().ok()?, 0),
    };
    Some(StreamPlan {
        chunks: u32::min(chunks, MAX_CHUNKS),
        delay: Duration::from_micros(delay),
    })
}

/// Reads `chunks=N` and `delay_us=D` from a query string; either may be missing.
pub fn plan_from_query(query: &str, base: StreamPlan) -> StreamPlan {
    let mut plan = base;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("chunks", n)) => {
                if let Ok(n) = n.parse::<u32>() {
                    plan.chunks = n.min(MAX_CHUNKS);
                }
            }
            Some(("delay_us", d)) => {
                if let Ok(d) = d.parse() {
                    plan.delay = Duration::from_micros(d);
                }
            }
            _ => {}
        }
    }
    plan
}

/// The usage chunk sent last when the request asked for it.
fn usage_chunk(chunks: u32) -> Bytes {
    Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\
         \"model\":\"bench-upstream\",\"choices\":[],\
         \"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":{chunks},\"total_tokens\":{}}}}}\n\n",
        12 + chunks
    ))
}

/// The body of an upstream answer: a fixed one, or a stream of events.
pub type Body = Either<Full<Bytes>, StreamBody<stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>>;

/// Serves the upstream on `addr` until the process ends, writing where it listens to
/// `address_file` once bound (see [`serve::bind`]).
pub async fn run(addr: SocketAddr, address_file: Option<&Path>) -> Result<()> {
    let listener = serve::bind(addr, address_file).await?;
    serve::http1(listener, |req| async move { Ok::<_, Infallible>(handle(req).await) }).await
}

/// Answers one request (what [`run`] serves), for callers that serve the upstream themselves,
/// e.g. to count what reaches it.
pub async fn handle(req: Request<Incoming>) -> Response<Body> {
    if req.method() == Method::GET && req.uri().path() == "/healthz" {
        return fixed(StatusCode::OK, "text/plain", Bytes::from_static(b"ok"));
    }
    let path = req.uri().path();
    let native = if path.ends_with("/responses") {
        Some(RESPONSE)
    } else if path.ends_with("/messages") {
        Some(MESSAGE)
    } else {
        None
    };
    if req.method() != Method::POST || (native.is_none() && !path.ends_with("/chat/completions")) {
        return fixed(StatusCode::NOT_FOUND, "text/plain", Bytes::from_static(b"not found"));
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return fixed(StatusCode::BAD_REQUEST, "text/plain", Bytes::from_static(b"body")),
    };
    let chat: ChatBody = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(_) => return fixed(StatusCode::BAD_REQUEST, "text/plain", Bytes::from_static(b"json")),
    };
    if let Some(answer) = native {
        if chat.stream {
            return fixed(
                StatusCode::BAD_REQUEST,
                "text/plain",
                Bytes::from_static(b"this upstream streams chat completions only"),
            );
        }
        return fixed(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(answer.as_bytes()),
        );
    }
    if !chat.stream {
        return fixed(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(COMPLETION.as_bytes()),
        );
    }
    let base = plan_from_model(&chat.model).unwrap_or(StreamPlan {
        chunks: DEFAULT_CHUNKS,
        delay: Duration::ZERO,
    });
    let plan = plan_from_query(&query, base);
    let usage = chat.stream_options.is_some_and(|o| o.include_usage);
    stream_response(plan, usage)
}

fn fixed(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Either::Left(Full::new(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    resp
}

fn stream_response(plan: StreamPlan, usage: bool) -> Response<Body> {
    let events = (0..plan.chunks).map(move |i| {
        let text = if i == 0 { FIRST_CHUNK } else { CHUNK };
        (i, Bytes::from_static(text.as_bytes()))
    });
    let delay = plan.delay;
    let body_chunks = stream::iter(events).then(move |(i, bytes)| async move {
        if i > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        bytes
    });
    let mut tail = vec![Bytes::from_static(LAST_CHUNK.as_bytes())];
    if usage {
        tail.push(usage_chunk(plan.chunks));
    }
    tail.push(Bytes::from_static(DONE.as_bytes()));
    let frames = body_chunks
        .chain(stream::iter(tail))
        .map(|b| Ok(Frame::data(b)))
        .boxed();
    let mut resp = Response::new(Either::Right(StreamBody::new(frames)));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_model_names_give_count_and_delay() {
        let plan = plan_from_model("stream-100").unwrap();
        assert_eq!((plan.chunks, plan.delay), (100, Duration::ZERO));
        let plan = plan_from_model("stream-600-1000000").unwrap();
        assert_eq!((plan.chunks, plan.delay), (600, Duration::from_secs(1)));
        let plan = plan_from_model("gpt-4o-mini-stream-100").unwrap();
        assert_eq!((plan.chunks, plan.delay), (100, Duration::ZERO));
        assert_eq!(plan_from_model("gpt-4o-mini"), None);
        assert_eq!(plan_from_model("stream-x"), None);
    }

    #[test]
    fn query_overrides_the_model_plan() {
        let base = StreamPlan {
            chunks: 5,
            delay: Duration::ZERO,
        };
        let plan = plan_from_query("chunks=100&delay_us=250", base);
        assert_eq!((plan.chunks, plan.delay), (100, Duration::from_micros(250)));
        assert_eq!(plan_from_query("other=1", base), base);
    }

    #[test]
    fn fixed_answer_is_valid_openai_json() {
        for native in [RESPONSE, MESSAGE] {
            let v: serde_json::Value = serde_json::from_str(native).unwrap();
            assert_eq!(v["usage"]["output_tokens"], 9);
        }
        let v: serde_json::Value = serde_json::from_str(COMPLETION).unwrap();
        assert_eq!(v["usage"]["total_tokens"], 21);
        for chunk in [FIRST_CHUNK, CHUNK, LAST_CHUNK] {
            let json = chunk.strip_prefix("data: ").unwrap().trim_end();
            let _: serde_json::Value = serde_json::from_str(json).unwrap();
        }
        let usage = usage_chunk(100);
        let text = std::str::from_utf8(&usage).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(v["usage"]["total_tokens"], 112);
    }
}
