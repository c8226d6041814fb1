//! The upstream's Amazon Bedrock part: `POST /model/{modelId}/converse` and `/converse-stream`,
//! as Bedrock answers them, after checking the request's SigV4 signature ([`auth`]: a wrong one
//! is 403 `InvalidSignatureException`); and the STS and container credentials endpoints that
//! issue temporary keys ([`auth::STS_PATH`], [`auth::CONTAINER_PATH`]).
//!
//! Answers report [`usage_of`]: the prompt's tokens split into uncached, cache-read ([`CACHED_TOKENS`])
//! and cache-write ([`CACHE_WRITE_TOKENS`]). Streams are binary event-stream messages framed by the
//! field's encoder (`messageStart`, `contentBlock*`, `messageStop`, `metadata`). `mock-tool`
//! answers a text block ([`TOOL_PREAMBLE`]) and a [`TOOL_NAME`] `toolUse` block, then, given its
//! `toolResult`, the answer. `mock-error-event` streams one text delta and then a
//! `throttlingException` message. `mock-429` is 429 `ThrottlingException`, `mock-503`
//! `ServiceUnavailableException`, `mock-400` `ValidationException`; an unknown model is 404
//! `ResourceNotFoundException`. [`Keys::expire_issued`] makes the issued keys expired (403
//! `ExpiredTokenException`).

pub mod auth;

use std::time::Duration;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use hyper::{Response, StatusCode, header};
use serde_json::{Value, json};

pub use self::auth::Keys;
use self::auth::aws_error;
use super::script::Controls;
use super::{
    Behaviour, CACHED_TOKENS, OK_PIECES, RETRY_AFTER_SECS, RecordedRequest, SLOW_CHUNK_INTERVAL, TOOL_ANSWER_PREFIX,
    TOOL_NAME, TOOL_PREAMBLE, Tokens, text_of, tool_arguments,
};
use crate::http::{Body, End, cut_json_response, json_response, raw_response, steps, stream_response};

/// Input tokens written to the cache in every answer.
pub const CACHE_WRITE_TOKENS: u64 = 2;
/// The text of `mock-error-event`'s exception.
pub const THROTTLED_MESSAGE: &str = "Too many tokens, please wait before trying again.";

/// The model a Converse path names, percent-decoded.
pub fn model(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/model/")?;
    let (model, _) = rest.rsplit_once('/')?;
    Some(
        percent_encoding::percent_decode_str(model)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Converse usage for `tokens`.
pub fn usage_of(tokens: Tokens) -> Value {
    let input = tokens.prompt.saturating_sub(CACHED_TOKENS + CACHE_WRITE_TOKENS);
    json!({
        "inputTokens": input, "outputTokens": tokens.completion,
        "totalTokens": tokens.prompt + tokens.completion,
        "cacheReadInputTokens": CACHED_TOKENS, "cacheWriteInputTokens": CACHE_WRITE_TOKENS,
    })
}

/// The exception Bedrock answers a failing status with.
fn failure(status: StatusCode) -> Response<Body> {
    let (kind, message) = match status.as_u16() {
        400 => ("ValidationException", "The provided request is not valid"),
        403 => (
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
        404 => ("ResourceNotFoundException", "Could not resolve the foundation model"),
        429 => (
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        503 => (
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
        _ => ("InternalServerException", "The server encountered an internal error"),
    };
    let mut response = aws_error(status, kind, message);
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    response
}

pub(super) async fn answer(
    request: &RecordedRequest,
    sequence: usize,
    controls: &Controls,
    keys: &Keys,
) -> Response<Body> {
    let path = request.path.as_str();
    if path == auth::STS_PATH && request.method == "POST" {
        return keys.assume_role(request.body.as_str().unwrap_or_default());
    }
    if path == auth::CONTAINER_PATH && request.method == "GET" {
        return keys.container(request.header("authorization"));
    }
    let (Some(model), true) = (model(path), request.method == "POST") else {
        return aws_error(StatusCode::NOT_FOUND, "UnknownOperationException", "Unknown operation");
    };
    let streamed = path.ends_with("/converse-stream");
    if !streamed && !path.ends_with("/converse") {
        return aws_error(StatusCode::NOT_FOUND, "UnknownOperationException", "Unknown operation");
    }
    if !request.body.get("messages").is_some_and(Value::is_array) {
        return failure(StatusCode::BAD_REQUEST);
    }
    let steer = controls.steer(&model).await;
    let text = || vec![Block::Text(OK_PIECES.iter().map(|p| (*p).to_owned()).collect())];
    let (blocks, stop) = match steer.behaviour {
        Behaviour::Ok | Behaviour::SlowStream | Behaviour::CutStream | Behaviour::Whole => (text(), "end_turn"),
        Behaviour::ErrorEvent if streamed => (text(), "end_turn"),
        Behaviour::ErrorEvent => return failure(StatusCode::TOO_MANY_REQUESTS),
        Behaviour::Tool => match tool_result_text(&request.body) {
            Some(result) => (
                vec![Block::Text(vec![TOOL_ANSWER_PREFIX.to_owned(), result])],
                "end_turn",
            ),
            None => (
                vec![
                    Block::Text(vec![TOOL_PREAMBLE.to_owned()]),
                    Block::Tool(format!("tooluse_mock_{sequence}")),
                ],
                "tool_use",
            ),
        },
        Behaviour::Fail(status) => return failure(status),
        Behaviour::RateLimitedFor(secs) => {
            let mut response = failure(StatusCode::TOO_MANY_REQUESTS);
            if let Ok(value) = header::HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
        Behaviour::Garbage => return raw_response(StatusCode::OK, "application/json", r#"{"output": {"message": "#),
        Behaviour::Stall => return std::future::pending().await,
        _ => return failure(StatusCode::NOT_FOUND),
    };
    if !streamed || steer.behaviour == Behaviour::Whole {
        let whole = converse(&blocks, stop, steer.tokens);
        return if steer.behaviour == Behaviour::CutStream {
            cut_json_response(&whole)
        } else {
            json_response(StatusCode::OK, &whole)
        };
    }
    let mut frames: Vec<Bytes> = stream_events(&blocks, stop, steer.tokens)
        .into_iter()
        .map(|(kind, payload)| frame("event", &kind, &payload))
        .collect();
    let (interval, end) = match steer.behaviour {
        Behaviour::SlowStream => (SLOW_CHUNK_INTERVAL, End::Clean),
        Behaviour::CutStream => {
            frames.truncate(3);
            (Duration::from_millis(10), End::Cut)
        }
        Behaviour::ErrorEvent => {
            // messageStart and the first text delta, then the exception.
            frames.truncate(2);
            frames.push(frame(
                "exception",
                "throttlingException",
                &json!({"message": THROTTLED_MESSAGE}),
            ));
            (Duration::ZERO, End::Clean)
        }
        _ => (Duration::ZERO, End::Clean),
    };
    stream_response(steps(frames, interval, end), "application/vnd.amazon.eventstream")
}

/// A block of an answer: text in pieces, or the tool call with its id.
enum Block {
    Text(Vec<String>),
    Tool(String),
}

/// The text of the last user turn's `toolResult`, if it holds one.
fn tool_result_text(body: &Value) -> Option<String> {
    let last = body.get("messages")?.as_array()?.last()?;
    let result = last
        .get("content")?
        .as_array()?
        .iter()
        .find_map(|b| b.get("toolResult"))?;
    Some(text_of(&result["content"]))
}

fn converse(blocks: &[Block], stop: &str, tokens: Tokens) -> Value {
    let content: Vec<Value> = blocks
        .iter()
        .map(|b| match b {
            Block::Text(pieces) => json!({"text": pieces.concat()}),
            Block::Tool(id) => json!({"toolUse": {"toolUseId": id, "name": TOOL_NAME, "input": tool_arguments()}}),
        })
        .collect();
    json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop, "usage": usage_of(tokens), "metrics": {"latencyMs": 42}
    })
}

/// The events of a streamed answer as Bedrock sends them: `(event type, payload)`.
fn stream_events(blocks: &[Block], stop: &str, tokens: Tokens) -> Vec<(String, Value)> {
    let mut events = vec![("messageStart".to_owned(), json!({"role": "assistant"}))];
    for (index, block) in blocks.iter().enumerate() {
        match block {
            Block::Text(pieces) => {
                for piece in pieces {
                    events.push((
                        "contentBlockDelta".into(),
                        json!({"contentBlockIndex": index, "delta": {"text": piece}}),
                    ));
                }
            }
            Block::Tool(id) => {
                events.push((
                    "contentBlockStart".into(),
                    json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": id, "name": TOOL_NAME}}}),
                ));
                let arguments = tool_arguments().to_string();
                let (head, tail) = arguments.split_at(arguments.len() / 2);
                for piece in [head, tail] {
                    events.push((
                        "contentBlockDelta".into(),
                        json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}),
                    ));
                }
            }
        }
        events.push(("contentBlockStop".into(), json!({"contentBlockIndex": index})));
    }
    events.push(("messageStop".into(), json!({"stopReason": stop})));
    events.push((
        "metadata".into(),
        json!({"usage": usage_of(tokens), "metrics": {"latencyMs": 42}}),
    ));
    events
}

/// One event-stream message: an `event` named `kind`, or an `exception` of type `kind`.
fn frame(message_type: &str, kind: &str, payload: &Value) -> Bytes {
    let type_header = if message_type == "event" {
        ":event-type"
    } else {
        ":exception-type"
    };
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(type_header, HeaderValue::String(kind.to_owned().into())))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String(message_type.to_owned().into()),
        ));
    let mut out = Vec::new();
    // Writing to a Vec fails only for headers too long, which these are not.
    let _ = write_message_to(&message, &mut out);
    Bytes::from(out)
}
