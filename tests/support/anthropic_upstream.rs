//! An in-test upstream that speaks Anthropic's Messages API and misbehaves on command.
//!
//! `POST /v1/messages` answers according to the request body's `model`, like the OpenAI
//! upstream (see `upstream.rs`); every request must carry `x-api-key` and `anthropic-version`
//! (a 401 `authentication_error` otherwise, as Anthropic answers) and `max_tokens`.
//!
//! | model | answer |
//! |---|---|
//! | `mock-ok` | [`OK_CONTENT`] (streamed as [`OK_PIECES`]), usage [`usage`] with cache reads and writes |
//! | `mock-tool` | a text block and a `get_weather` tool call; once the last turn holds a `tool_result`, [`TOOL_ANSWER_PREFIX`] and the result's text |
//! | `mock-400`, `mock-401`, `mock-429`, `mock-500`, `mock-529` | that status with Anthropic's error body (`Retry-After: 2` on 429, `overloaded_error` on 529) |
//! | `mock-cut-stream` | a message start and [`CUT_AFTER_DELTAS`] text deltas, then the connection drops |
//! | `mock-error-event` | a message start and one text delta, then an `error` event (`overloaded_error`) |
//! | `mock-overloaded-early` | `message_start`, `ping`, then an `error` event, before any content |
//! | `mock-slow-stream` | like `mock-ok`, one event every [`crate::upstream::SLOW_CHUNK_INTERVAL`] |
//! | `mock-stall` | accepts the request and never answers |
//! | anything else | 404 `not_found_error` |

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use hyper::{Response, StatusCode, header};
use serde_json::{Value, json};

use crate::mock_server::{Body, MockServer, Step, cut_json_response, json_response, stream_response, tool_arguments};
pub use crate::mock_server::{TOOL_ANSWER_PREFIX, TOOL_CITY, TOOL_NAME};
use crate::upstream::SLOW_CHUNK_INTERVAL;
pub use crate::upstream::{OK_CONTENT, OK_PIECES, RETRY_AFTER_SECS, RecordedRequest};

/// Uncached input tokens of every answer.
pub const INPUT_TOKENS: u64 = 6;
/// Input tokens read from the cache.
pub const CACHE_READ_TOKENS: u64 = 4;
/// Input tokens written to the cache.
pub const CACHE_CREATION_TOKENS: u64 = 2;
/// Output tokens of every answer.
pub const OUTPUT_TOKENS: u64 = 5;
/// Text deltas `mock-cut-stream` sends before dropping the connection.
pub const CUT_AFTER_DELTAS: usize = 2;
/// The text of `mock-tool`'s first answer, before its tool call.
pub const TOOL_PREAMBLE: &str = "Let me check the weather.";
/// The message of `mock-400`'s error.
pub const BAD_REQUEST_MESSAGE: &str = "messages: roles must alternate between \"user\" and \"assistant\"";

/// A running Anthropic upstream on `127.0.0.1`, stopped when dropped.
#[derive(Debug)]
pub struct AnthropicUpstream {
    server: MockServer,
}

impl AnthropicUpstream {
    /// Starts one on a free loopback port.
    pub async fn start() -> Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts one on `addr`.
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        let server = MockServer::bind(addr, Arc::new(|r, n| Box::pin(handle(r, n)))).await?;
        Ok(Self { server })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The API root for a backend's `baseUrl`, as Anthropic's SDK takes it: `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Every request received so far, oldest first.
    pub async fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }
}

/// The usage of every answer.
pub fn usage() -> Value {
    json!({
        "input_tokens": INPUT_TOKENS,
        "cache_creation_input_tokens": CACHE_CREATION_TOKENS,
        "cache_read_input_tokens": CACHE_READ_TOKENS,
        "output_tokens": OUTPUT_TOKENS,
        "service_tier": "standard"
    })
}

/// Anthropic's error body.
pub fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"})
}

/// The error each failing model answers with: status, type and message.
pub fn failure(status: u16) -> (StatusCode, &'static str, &'static str) {
    let (kind, message) = match status {
        400 => ("invalid_request_error", BAD_REQUEST_MESSAGE),
        401 => ("authentication_error", "invalid x-api-key"),
        429 => (
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        ),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        kind,
        message,
    )
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    let mut response = json_response(status, &error_body(kind, message));
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    response
}

async fn handle(request: RecordedRequest, sequence: usize) -> Response<Body> {
    if request.method != "POST" || request.path != "/v1/messages" {
        return error(StatusCode::NOT_FOUND, "not_found_error", "Not found");
    }
    if request.header("x-api-key").is_none() || request.header("anthropic-version").is_none() {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key and anthropic-version headers are required",
        );
    }
    let body = &request.body;
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Field required",
        );
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
    let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
    let id = format!("msg_mock_{sequence}");
    let (blocks, stop) = match model.as_str() {
        "mock-ok" | "mock-slow-stream" | "mock-cut-stream" | "mock-error-event" => (
            vec![Block::Text(OK_PIECES.iter().map(|p| (*p).to_owned()).collect())],
            "end_turn",
        ),
        "mock-tool" => match tool_result_text(body) {
            Some(result) => (
                vec![Block::Text(vec![TOOL_ANSWER_PREFIX.to_owned(), result])],
                "end_turn",
            ),
            None => (
                vec![
                    Block::Text(vec![TOOL_PREAMBLE.to_owned()]),
                    Block::Tool(format!("toolu_mock_{sequence}")),
                ],
                "tool_use",
            ),
        },
        "mock-400" | "mock-401" | "mock-429" | "mock-500" | "mock-529" => {
            let (status, kind, message) = failure(model[5..].parse().unwrap_or(500));
            return error(status, kind, message);
        }
        "mock-overloaded-early" if streamed => {
            let events = vec![message_start(&id, &model), ping(), overloaded()];
            return stream_response(sse_steps(events, Duration::ZERO, End::Clean), "text/event-stream");
        }
        "mock-overloaded-early" => {
            let (status, kind, message) = failure(529);
            return error(status, kind, message);
        }
        "mock-stall" => return std::future::pending().await,
        _ => {
            return error(StatusCode::NOT_FOUND, "not_found_error", &format!("model: {model}"));
        }
    };
    if !streamed {
        let whole = message(&id, &model, &blocks, stop);
        return if model == "mock-cut-stream" {
            cut_json_response(&whole)
        } else {
            json_response(StatusCode::OK, &whole)
        };
    }
    let mut events = stream_events(&id, &model, &blocks, stop);
    let (interval, end) = match model.as_str() {
        "mock-slow-stream" => (SLOW_CHUNK_INTERVAL, End::Clean),
        "mock-cut-stream" => {
            // message_start, ping, content_block_start, then the deltas.
            events.truncate(3 + CUT_AFTER_DELTAS);
            (Duration::from_millis(10), End::Cut)
        }
        "mock-error-event" => {
            events.truncate(4);
            events.push(overloaded());
            (Duration::ZERO, End::Clean)
        }
        _ => (Duration::ZERO, End::Clean),
    };
    stream_response(sse_steps(events, interval, end), "text/event-stream")
}

/// A block of an answer: text in pieces, or the tool call with its id.
enum Block {
    Text(Vec<String>),
    Tool(String),
}

/// The text of the last user turn's `tool_result`, if it ends with one.
fn tool_result_text(body: &Value) -> Option<String> {
    let last = body.get("messages")?.as_array()?.last()?;
    let result = last
        .get("content")?
        .as_array()?
        .iter()
        .find(|b| b["type"] == "tool_result")?;
    Some(match &result["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => String::new(),
    })
}

fn message(id: &str, model: &str, blocks: &[Block], stop: &str) -> Value {
    let content: Vec<Value> = blocks
        .iter()
        .map(|b| match b {
            Block::Text(pieces) => json!({"type": "text", "text": pieces.concat()}),
            Block::Tool(tool_id) => {
                json!({"type": "tool_use", "id": tool_id, "name": TOOL_NAME, "input": tool_arguments()})
            }
        })
        .collect();
    json!({
        "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop, "stop_sequence": null, "usage": usage()
    })
}

fn message_start(id: &str, model: &str) -> Value {
    let mut usage = usage();
    usage["output_tokens"] = json!(1);
    json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": usage
    }})
}

fn ping() -> Value {
    json!({"type": "ping"})
}

fn overloaded() -> Value {
    json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
}

/// The events of a streamed answer, as Anthropic sends them.
fn stream_events(id: &str, model: &str, blocks: &[Block], stop: &str) -> Vec<Value> {
    let mut events = vec![message_start(id, model), ping()];
    for (index, block) in blocks.iter().enumerate() {
        match block {
            Block::Text(pieces) => {
                events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}));
                for piece in pieces {
                    events.push(json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": piece}}));
                }
            }
            Block::Tool(tool_id) => {
                events.push(json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": tool_id, "name": TOOL_NAME, "input": {}}}));
                let arguments = tool_arguments().to_string();
                let (head, tail) = arguments.split_at(arguments.len() / 2);
                for partial in ["", head, tail] {
                    events.push(json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": partial}}));
                }
            }
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
    }
    events.push(
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": OUTPUT_TOKENS}}),
    );
    events.push(json!({"type": "message_stop"}));
    events
}

/// How a stream ends.
enum End {
    Clean,
    Cut,
}

fn sse_steps(events: Vec<Value>, interval: Duration, end: End) -> VecDeque<Step> {
    let mut steps = VecDeque::new();
    for (i, event) in events.into_iter().enumerate() {
        if i > 0 && !interval.is_zero() {
            steps.push_back(Step::Wait(interval));
        }
        let name = event["type"].as_str().unwrap_or("unknown").to_owned();
        steps.push_back(Step::Send(Bytes::from(format!("event: {name}\ndata: {event}\n\n"))));
    }
    if let End::Cut = end {
        steps.push_back(Step::Wait(Duration::from_millis(10)));
        steps.push_back(Step::Cut);
    }
    steps
}
