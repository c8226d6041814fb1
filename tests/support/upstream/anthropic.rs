//! The upstream's Anthropic part: `POST /v1/messages`, as Anthropic answers it. Every request
//! must carry `x-api-key` and `anthropic-version` (a 401 `authentication_error` otherwise, as
//! Anthropic answers) and `max_tokens`.
//!
//! Answers report [`usage`], with cache reads and writes. Streams are Anthropic's named events
//! (`message_start`, `ping`, `content_block_*`, `message_delta`, `message_stop`).
//! `mock-tool` answers a text block ([`TOOL_PREAMBLE`]) and a [`TOOL_NAME`] `tool_use` block.
//! `mock-cut-stream` sends a message start and [`CUT_AFTER_DELTAS`] text deltas, then drops the
//! connection; `mock-error-event` sends one text delta, then an `error` event
//! (`overloaded_error`); `mock-overloaded-early` sends `message_start`, `ping`, then the `error`
//! event. A path it does not serve is 404 `not_found_error`; an unknown model too.

use std::time::Duration;

use hyper::{Response, StatusCode, header};
use serde_json::{Value, json};

use super::script::Controls;
use super::{
    Behaviour, CACHED_TOKENS, OK_PIECES, RETRY_AFTER_SECS, RecordedRequest, SLOW_CHUNK_INTERVAL, TOOL_ANSWER_PREFIX,
    TOOL_NAME, TOOL_PREAMBLE, Tokens, text_of, tool_arguments,
};
use crate::http::{Body, End, cut_json_response, json_response, raw_response, sse_response};

/// Input tokens read from the cache.
pub const CACHE_READ_TOKENS: u64 = CACHED_TOKENS;
/// Input tokens written to the cache.
pub const CACHE_CREATION_TOKENS: u64 = 2;
/// Uncached input tokens of every answer: the prompt's other tokens.
pub const INPUT_TOKENS: u64 = super::PROMPT_TOKENS - CACHE_READ_TOKENS - CACHE_CREATION_TOKENS;
/// Output tokens of every answer.
pub const OUTPUT_TOKENS: u64 = super::COMPLETION_TOKENS;
/// Text deltas `mock-cut-stream` sends before dropping the connection.
pub const CUT_AFTER_DELTAS: usize = 2;
/// What `/v1/messages/count_tokens` answers for any request.
pub const COUNTED_INPUT_TOKENS: u64 = 1234;
/// The message of `mock-400`'s error.
pub const BAD_REQUEST_MESSAGE: &str = "messages: roles must alternate between \"user\" and \"assistant\"";

/// Time between the events of a stream that breaks off.
const CUT_INTERVAL: Duration = Duration::from_millis(10);

/// The usage of every answer.
pub fn usage() -> Value {
    usage_of(Tokens::default())
}

fn usage_of(tokens: Tokens) -> Value {
    json!({
        "input_tokens": tokens.prompt.saturating_sub(CACHE_READ_TOKENS + CACHE_CREATION_TOKENS),
        "cache_creation_input_tokens": CACHE_CREATION_TOKENS,
        "cache_read_input_tokens": CACHE_READ_TOKENS,
        "output_tokens": tokens.completion,
        "service_tier": "standard"
    })
}

/// Anthropic's error body.
pub fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"})
}

/// The error each failing model answers with: its type and message, by status.
fn failure(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("invalid_request_error", BAD_REQUEST_MESSAGE),
        401 => ("authentication_error", "invalid x-api-key"),
        429 => (
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        ),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    }
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

/// Anthropic's 529 `overloaded_error`.
fn overloaded_status() -> StatusCode {
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// Anthropic's token count: [`COUNTED_INPUT_TOKENS`] for a request with its headers, a model
/// and messages (the count's value says the upstream, not the sidecar, counted it).
fn count_tokens(request: &RecordedRequest) -> Response<Body> {
    if request.header("x-api-key").is_none() || request.header("anthropic-version").is_none() {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key and anthropic-version headers are required",
        );
    }
    counted(request)
}

/// The count for an authenticated request: it must name a model and hold messages.
pub(super) fn counted(request: &RecordedRequest) -> Response<Body> {
    let body = &request.body;
    if body.get("model").and_then(Value::as_str).is_none() || !body.get("messages").is_some_and(Value::is_array) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "model and messages are required",
        );
    }
    json_response(StatusCode::OK, &json!({"input_tokens": COUNTED_INPUT_TOKENS}))
}

fn failed(status: StatusCode) -> Response<Body> {
    let (kind, message) = failure(status);
    error(status, kind, message)
}

pub(super) async fn answer(request: &RecordedRequest, sequence: usize, controls: &Controls) -> Response<Body> {
    if request.method == "POST" && request.path == "/v1/messages/count_tokens" {
        return count_tokens(request);
    }
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
    let model = request.body.get("model").and_then(Value::as_str).unwrap_or_default();
    let key = request.header("x-api-key").unwrap_or_default();
    respond(request, model, sequence, controls, key).await
}

/// Answers an authenticated Messages request for `model`; `key` is the credential it carried,
/// which `mock-quote-key` quotes back. Vertex AI's Claude models answer through here too.
pub(super) async fn respond(
    request: &RecordedRequest,
    model: &str,
    sequence: usize,
    controls: &Controls,
    key: &str,
) -> Response<Body> {
    let body = &request.body;
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "max_tokens: Field required",
        );
    }
    let steer = controls.steer(model).await;
    let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
    let id = format!("msg_mock_{sequence}");
    let text = || vec![Block::Text(OK_PIECES.iter().map(|p| (*p).to_owned()).collect())];
    let (blocks, stop) = match steer.behaviour {
        Behaviour::Ok | Behaviour::SlowStream | Behaviour::CutStream | Behaviour::ErrorEvent | Behaviour::Whole => {
            (text(), "end_turn")
        }
        Behaviour::Tool => match tool_result_text(body) {
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
        Behaviour::Fail(status) => return failed(status),
        Behaviour::Garbage => return garbage(streamed),
        Behaviour::RateLimitedFor(secs) => {
            let mut response = failed(StatusCode::TOO_MANY_REQUESTS);
            if let Ok(value) = header::HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
        Behaviour::OverloadedEarly if streamed => {
            let events = vec![message_start(&id, model, steer.tokens), ping(), overloaded()];
            return sse(events, Duration::ZERO, End::Clean);
        }
        Behaviour::OverloadedEarly => return failed(overloaded_status()),
        Behaviour::QuoteKey => {
            return error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                &format!("invalid x-api-key: {key}"),
            );
        }
        Behaviour::Stall => return std::future::pending().await,
        Behaviour::UnknownModel | Behaviour::LongTool | Behaviour::Safety | Behaviour::Blocked => {
            return error(StatusCode::NOT_FOUND, "not_found_error", &format!("model: {model}"));
        }
    };
    if !streamed || steer.behaviour == Behaviour::Whole {
        let whole = message(&id, model, &blocks, stop, steer.tokens);
        return if steer.behaviour == Behaviour::CutStream {
            cut_json_response(&whole)
        } else {
            json_response(StatusCode::OK, &whole)
        };
    }
    let mut events = stream_events(&id, model, &blocks, stop, steer.tokens);
    let (interval, end) = match steer.behaviour {
        Behaviour::SlowStream => (SLOW_CHUNK_INTERVAL, End::Clean),
        Behaviour::CutStream => {
            // message_start, ping, content_block_start, then the deltas.
            events.truncate(3 + CUT_AFTER_DELTAS);
            (CUT_INTERVAL, End::Cut)
        }
        Behaviour::ErrorEvent => {
            events.truncate(4);
            events.push(overloaded());
            (Duration::ZERO, End::Clean)
        }
        _ => (Duration::ZERO, End::Clean),
    };
    sse(events, interval, end)
}

/// A 200 whose body (or first event) breaks off mid-JSON.
fn garbage(streamed: bool) -> Response<Body> {
    if streamed {
        let event = "event: message_start\ndata: {\"type\": \"message_start\", \"message\": {\n\n".to_owned();
        sse_response([event], Duration::ZERO, End::Clean)
    } else {
        raw_response(
            StatusCode::OK,
            "application/json",
            r#"{"id": "msg_garbage", "type": "message", "content": ["#,
        )
    }
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
    Some(text_of(&result["content"]))
}

fn message(id: &str, model: &str, blocks: &[Block], stop: &str, tokens: Tokens) -> Value {
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
        "stop_reason": stop, "stop_sequence": null, "usage": usage_of(tokens)
    })
}

fn message_start(id: &str, model: &str, tokens: Tokens) -> Value {
    let mut usage = usage_of(tokens);
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
fn stream_events(id: &str, model: &str, blocks: &[Block], stop: &str, tokens: Tokens) -> Vec<Value> {
    let mut events = vec![message_start(id, model, tokens), ping()];
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
        "usage": {"output_tokens": tokens.completion}}),
    );
    events.push(json!({"type": "message_stop"}));
    events
}

/// Anthropic's SSE: each event named for its `type`.
fn sse(events: Vec<Value>, interval: Duration, end: End) -> Response<Body> {
    let framed = events.into_iter().map(|event| {
        let name = event["type"].as_str().unwrap_or("unknown").to_owned();
        format!("event: {name}\ndata: {event}\n\n")
    });
    sse_response(framed, interval, end)
}
