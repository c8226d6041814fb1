//! The upstream's OpenAI part: `POST /v1/chat/completions`, `/v1/embeddings` and the legacy
//! `/v1/completions`, and OpenAI's own `/v1/responses`, as
//! OpenAI answers them.
//!
//! Streams follow OpenAI's format: `chat.completion.chunk` objects in `data: ` lines,
//! `data: [DONE]` last; with `stream_options.include_usage` every chunk carries `"usage": null`
//! and one more chunk with `"choices": []` carries the usage. `mock-cut-stream` sends the first
//! [`CUT_AFTER_CHUNKS`] chunks, then drops the connection (no `[DONE]`). `mock-tool` calls
//! [`TOOL_NAME`], its arguments streamed in two pieces. Every answer carries
//! `x-request-id: req_mock`; a path it does not serve is 404 `unknown_url`.

use std::time::Duration;

use base64::Engine as _;
use hyper::{Response, StatusCode, header};
use serde_json::{Value, json};

use super::script::Controls;
use super::{
    Behaviour, CACHED_TOKENS, EMBEDDING_DIMENSIONS, LONG_TOOL_PIECE_CHARS, LONG_TOOL_PIECES, OK_CONTENT, OK_PIECES,
    RETRY_AFTER_SECS, RecordedRequest, SLOW_CHUNK_INTERVAL, Steer, TOOL_ANSWER_PREFIX, TOOL_NAME, Tokens,
    embedding_vector, text_of, tool_arguments,
};
use crate::http::{Body, End, cut_json_response, json_response, raw_response, sse_response};

/// The `created` timestamp of every answer.
pub const CREATED: u64 = 1_700_000_000;
/// The `system_fingerprint` of every chat answer.
pub const FINGERPRINT: &str = "fp_mock";
/// Chunks `mock-cut-stream` sends before dropping the connection.
pub const CUT_AFTER_CHUNKS: usize = 3;
/// The message of `mock-400`'s error.
pub const BAD_REQUEST_MESSAGE: &str = "Invalid value for 'temperature': expected a number between 0 and 2.";
/// The message of `mock-401`'s error (a masked key, as OpenAI writes it).
pub const UNAUTHORIZED_MESSAGE: &str = "Incorrect API key provided: sk-test-********-123.";

/// Time between the chunks of a stream that breaks off.
const CUT_INTERVAL: Duration = Duration::from_millis(10);

pub(super) async fn answer(request: &RecordedRequest, sequence: usize, controls: &Controls) -> Response<Body> {
    let path = request
        .path
        .split_once('?')
        .map_or(request.path.as_str(), |(path, _)| path);
    let mut response = match (request.method.as_str(), path) {
        ("POST", "/v1/chat/completions" | "/v1/embeddings") => {
            let body = &request.body;
            match body.get("model").and_then(Value::as_str) {
                None => error(
                    StatusCode::BAD_REQUEST,
                    "you must provide a model parameter",
                    "invalid_request_error",
                    None,
                    None,
                ),
                Some(model) => {
                    let steer = controls.steer(model).await;
                    if path == "/v1/embeddings" {
                        embeddings(body, model, steer.behaviour).await
                    } else {
                        chat(request, model, sequence, steer).await
                    }
                }
            }
        }
        ("POST", "/v1/responses") => responses(&request.body, sequence),
        ("POST", "/v1/completions") => match request.body.get("model").and_then(Value::as_str) {
            None => error(
                StatusCode::BAD_REQUEST,
                "you must provide a model parameter",
                "invalid_request_error",
                None,
                None,
            ),
            Some(model) => legacy_completion(&request.body, model, sequence, controls.steer(model).await),
        },
        (method, _) => error(
            StatusCode::NOT_FOUND,
            &format!("Unknown request URL: {method} {}", request.path),
            "invalid_request_error",
            None,
            Some("unknown_url"),
        ),
    };
    response
        .headers_mut()
        .insert("x-request-id", header::HeaderValue::from_static("req_mock"));
    response
}

async fn chat(request: &RecordedRequest, model: &str, sequence: usize, steer: Steer) -> Response<Body> {
    let body = &request.body;
    let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
    let id = format!("chatcmpl-mock-{sequence}");
    let chunks = Chunks {
        id: &id,
        model,
        include_usage,
    };
    let tokens = steer.tokens;
    match steer.behaviour {
        Behaviour::Tool => tool_answer(body, &chunks, sequence, streamed),
        Behaviour::LongTool => long_tool_answer(&chunks, sequence),
        Behaviour::Ok | Behaviour::SlowStream if !streamed => {
            json_response(StatusCode::OK, &completion_of(&id, model, tokens))
        }
        Behaviour::Whole => json_response(StatusCode::OK, &completion_of(&id, model, tokens)),
        Behaviour::Ok => sse(chunks.answer(tokens), Duration::ZERO, End::Clean),
        Behaviour::SlowStream => sse(chunks.answer(tokens), SLOW_CHUNK_INTERVAL, End::Clean),
        Behaviour::CutStream if streamed => {
            let mut sent = chunks.answer(tokens);
            sent.truncate(CUT_AFTER_CHUNKS);
            sse(sent, CUT_INTERVAL, End::Cut)
        }
        Behaviour::CutStream => cut_json_response(&completion_of(&id, model, tokens)),
        Behaviour::Garbage if streamed => sse_response(
            [
                "data: {\"id\": \"chatcmpl-garbage\", \"object\": \"chat.completion.chunk\", \"choices\": [\n\n"
                    .to_owned(),
                "data: [DONE]\n\n".to_owned(),
            ],
            Duration::ZERO,
            End::Clean,
        ),
        Behaviour::Garbage => raw_response(
            StatusCode::OK,
            "application/json",
            r#"{"id": "chatcmpl-garbage", "object": "chat.completion", "choices": ["#,
        ),
        Behaviour::Fail(status) => failure(status),
        Behaviour::RateLimitedFor(secs) => rate_limited_for(secs),
        Behaviour::QuoteKey => quote_key(request),
        Behaviour::Stall => std::future::pending().await,
        Behaviour::UnknownModel
        | Behaviour::ErrorEvent
        | Behaviour::OverloadedEarly
        | Behaviour::Safety
        | Behaviour::Blocked => model_not_found(model),
    }
}

/// OpenAI's own Responses API: a Response saying [`OK_CONTENT`] with the usage of
/// [`Tokens::default`], whole or as OpenAI streams it (one delta per piece of [`OK_PIECES`]).
/// `mock-long-tool` streamed is [`long_tool_response`].
fn responses(body: &Value, sequence: usize) -> Response<Body> {
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
    let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
    if streamed && model == "mock-long-tool" {
        return long_tool_response(model, sequence);
    }
    let tokens = Tokens::default();
    let (id, item) = (format!("resp_mock_{sequence}"), format!("msg_mock_{sequence}"));
    let response = |status: &str, text: Option<&str>, usage: Value| {
        let output = match text {
            Some(t) => json!([{"type": "message", "id": item, "status": "completed", "role": "assistant",
                               "content": [{"type": "output_text", "text": t, "annotations": [], "logprobs": []}]}]),
            None => json!([]),
        };
        json!({"id": id, "object": "response", "created_at": CREATED, "status": status, "model": model,
               "output": output, "previous_response_id": body.get("previous_response_id"),
               "store": true, "usage": usage})
    };
    let usage = json!({"input_tokens": tokens.prompt, "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
                       "output_tokens": tokens.completion, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": tokens.prompt + tokens.completion});
    if !streamed {
        return json_response(StatusCode::OK, &response("completed", Some(OK_CONTENT), usage));
    }
    let mut events = vec![
        json!({"type": "response.created", "response": response("in_progress", None, Value::Null)}),
        json!({"type": "response.output_item.added", "output_index": 0,
               "item": {"type": "message", "id": item, "status": "in_progress", "role": "assistant", "content": []}}),
    ];
    events.extend(OK_PIECES.iter().map(|p| {
        json!({"type": "response.output_text.delta", "item_id": item, "output_index": 0, "content_index": 0,
               "delta": p, "logprobs": []})
    }));
    events.push(json!({"type": "response.completed", "response": response("completed", Some(OK_CONTENT), usage)}));
    let frames = events.into_iter().enumerate().map(|(n, mut e)| {
        e["sequence_number"] = json!(n);
        format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or_default())
    });
    sse_response(frames.collect::<Vec<_>>(), Duration::ZERO, End::Clean)
}

/// `mock-long-tool` as OpenAI streams a Response: a reasoning item with one summary delta, then
/// a [`TOOL_NAME`] call whose arguments stream in [`LONG_TOOL_PIECES`] pieces of
/// [`LONG_TOOL_PIECE_CHARS`] characters, then `response.completed` with the usage of
/// [`Tokens::default`].
fn long_tool_response(model: &str, sequence: usize) -> Response<Body> {
    let tokens = Tokens::default();
    let (id, reasoning, call) = (
        format!("resp_mock_{sequence}"),
        format!("rs_mock_{sequence}"),
        format!("fc_mock_{sequence}"),
    );
    let shell = |status: &str, output: Value, usage: Value| {
        json!({"id": id, "object": "response", "created_at": CREATED, "status": status, "model": model,
               "output": output, "store": true, "usage": usage})
    };
    let piece = "x".repeat(LONG_TOOL_PIECE_CHARS);
    let call_item = |status: &str, arguments: &str| {
        json!({"type": "function_call", "id": call, "call_id": format!("call_mock_{sequence}"), "name": TOOL_NAME,
               "arguments": arguments, "status": status})
    };
    let mut events = vec![
        json!({"type": "response.created", "response": shell("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.in_progress", "response": shell("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.output_item.added", "output_index": 0,
               "item": {"type": "reasoning", "id": reasoning, "summary": []}}),
        json!({"type": "response.reasoning_summary_text.delta", "item_id": reasoning, "output_index": 0,
               "summary_index": 0, "delta": "The caller wants the tool."}),
        json!({"type": "response.output_item.done", "output_index": 0,
               "item": {"type": "reasoning", "id": reasoning,
                        "summary": [{"type": "summary_text", "text": "The caller wants the tool."}]}}),
        json!({"type": "response.output_item.added", "output_index": 1, "item": call_item("in_progress", "")}),
    ];
    events.extend((0..LONG_TOOL_PIECES).map(|_| {
        json!({"type": "response.function_call_arguments.delta", "item_id": call, "output_index": 1,
               "delta": piece})
    }));
    let arguments = piece.repeat(LONG_TOOL_PIECES);
    events.push(json!({"type": "response.output_item.done", "output_index": 1,
                       "item": call_item("completed", &arguments)}));
    let usage = json!({"input_tokens": tokens.prompt, "output_tokens": tokens.completion,
                       "total_tokens": tokens.prompt + tokens.completion});
    events.push(json!({"type": "response.completed",
                       "response": shell("completed", json!([call_item("completed", &arguments)]), usage)}));
    let frames = events.into_iter().enumerate().map(|(n, mut e)| {
        e["sequence_number"] = json!(n);
        format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or_default())
    });
    sse_response(frames.collect::<Vec<_>>(), Duration::ZERO, End::Clean)
}

/// A legacy `text_completion`: [`OK_CONTENT`], streamed as [`OK_PIECES`] (then a usage chunk
/// with `include_usage`) or whole; other behaviours answer as for chat where they can.
fn legacy_completion(body: &Value, model: &str, sequence: usize, steer: Steer) -> Response<Body> {
    let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
    let id = format!("cmpl-mock-{sequence}");
    let usage = json!({"prompt_tokens": steer.tokens.prompt, "completion_tokens": steer.tokens.completion,
                       "total_tokens": steer.tokens.prompt + steer.tokens.completion});
    let chunk = |text: &str, finish: Value| {
        let mut c = json!({"id": id, "object": "text_completion", "created": CREATED, "model": model,
                           "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    match steer.behaviour {
        Behaviour::Fail(status) => failure(status),
        _ if streamed => {
            let mut chunks: Vec<Value> = OK_PIECES.iter().map(|p| chunk(p, Value::Null)).collect();
            chunks.push(chunk("", json!("stop")));
            if include_usage {
                chunks.push(
                    json!({"id": id, "object": "text_completion", "created": CREATED, "model": model,
                                   "choices": [], "usage": usage}),
                );
            }
            sse(chunks, Duration::ZERO, End::Clean)
        }
        _ => {
            let mut whole = chunk(OK_CONTENT, json!("stop"));
            whole["usage"] = usage;
            json_response(StatusCode::OK, &whole)
        }
    }
}

async fn embeddings(body: &Value, model: &str, behaviour: Behaviour) -> Response<Body> {
    match behaviour {
        Behaviour::Ok | Behaviour::SlowStream | Behaviour::CutStream | Behaviour::Whole => {}
        Behaviour::Fail(status) => return failure(status),
        Behaviour::RateLimitedFor(secs) => return rate_limited_for(secs),
        Behaviour::Garbage => {
            return raw_response(StatusCode::OK, "application/json", r#"{"object": "list", "data": ["#);
        }
        Behaviour::Stall => return std::future::pending().await,
        Behaviour::UnknownModel
        | Behaviour::Tool
        | Behaviour::LongTool
        | Behaviour::QuoteKey
        | Behaviour::ErrorEvent
        | Behaviour::OverloadedEarly
        | Behaviour::Safety
        | Behaviour::Blocked => return model_not_found(model),
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

/// The embeddings `list` object for inputs of the given token counts; with `base64`, each vector
/// as its little-endian `f32` bytes in standard base64, as OpenAI encodes them.
pub fn embedding_list(model: &str, input_tokens: &[u64], dimensions: usize, base64: bool) -> Value {
    let data: Vec<Value> = input_tokens
        .iter()
        .enumerate()
        .map(|(index, _)| {
            let vector = embedding_vector(index, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
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
    usage_of(Tokens::default())
}

fn usage_of(tokens: Tokens) -> Value {
    json!({
        "prompt_tokens": tokens.prompt,
        "completion_tokens": tokens.completion,
        "total_tokens": tokens.prompt + tokens.completion,
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
    completion_of(id, model, Tokens::default())
}

fn completion_of(id: &str, model: &str, tokens: Tokens) -> Value {
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
        "usage": usage_of(tokens),
        "service_tier": "default"
    })
}

/// The `chat.completion.chunk` objects of a streamed answer, in order: a role chunk, one chunk per
/// piece of [`OK_PIECES`], a `finish_reason` chunk and, with `include_usage`, the usage chunk (and
/// `"usage": null` on every other chunk).
pub fn completion_chunks(id: &str, model: &str, include_usage: bool) -> Vec<Value> {
    Chunks {
        id,
        model,
        include_usage,
    }
    .answer(Tokens::default())
}

/// The chunks of one streamed answer.
struct Chunks<'a> {
    id: &'a str,
    model: &'a str,
    include_usage: bool,
}

impl Chunks<'_> {
    /// A chunk of one choice with this delta.
    fn chunk(&self, delta: Value, finish_reason: Value) -> Value {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    /// `deltas` between the role chunk and the `finish` chunk, then the usage chunk if asked for.
    fn stream(&self, role: Value, deltas: impl IntoIterator<Item = Value>, finish: &str, tokens: Tokens) -> Vec<Value> {
        let mut chunks = vec![self.chunk(role, Value::Null)];
        chunks.extend(deltas.into_iter().map(|delta| self.chunk(delta, Value::Null)));
        chunks.push(self.chunk(json!({}), json!(finish)));
        if self.include_usage {
            chunks.push(json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": self.model,
                "system_fingerprint": FINGERPRINT,
                "choices": [],
                "usage": usage_of(tokens)
            }));
        }
        chunks
    }

    /// The `mock-ok` answer, one piece of [`OK_PIECES`] a chunk.
    fn answer(&self, tokens: Tokens) -> Vec<Value> {
        let role = json!({"role": "assistant", "content": "", "refusal": null});
        let pieces = OK_PIECES.iter().map(|piece| json!({"content": piece}));
        self.stream(role, pieces, "stop", tokens)
    }
}

/// `mock-tool`: a [`TOOL_NAME`] call (streamed with its arguments in two pieces), or, once the
/// last message is the tool's result, [`TOOL_ANSWER_PREFIX`] and the result.
fn tool_answer(body: &Value, chunks: &Chunks<'_>, sequence: usize, streamed: bool) -> Response<Body> {
    let last = body.get("messages").and_then(Value::as_array).and_then(|m| m.last());
    let result = last.filter(|m| m["role"] == "tool").map(|m| text_of(&m["content"]));
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
        let mut whole = completion(chunks.id, chunks.model);
        whole["choices"][0]["message"] = message;
        whole["choices"][0]["finish_reason"] = json!(finish);
        return json_response(StatusCode::OK, &whole);
    }
    let deltas = match &result {
        Some(result) => vec![json!({"content": TOOL_ANSWER_PREFIX}), json!({"content": result})],
        None => {
            let (head, tail) = arguments.split_at(arguments.len() / 2);
            vec![
                json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                    "function": {"name": TOOL_NAME, "arguments": ""}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": head}}]}),
                json!({"tool_calls": [{"index": 0, "function": {"arguments": tail}}]}),
            ]
        }
    };
    let role = json!({"role": "assistant", "content": null});
    sse(
        chunks.stream(role, deltas, finish, Tokens::default()),
        Duration::ZERO,
        End::Clean,
    )
}

/// `mock-long-tool`: a streamed answer that reasons briefly, then calls [`TOOL_NAME`] with
/// arguments in [`LONG_TOOL_PIECES`] pieces of [`LONG_TOOL_PIECE_CHARS`] characters; no text.
fn long_tool_answer(chunks: &Chunks<'_>, sequence: usize) -> Response<Body> {
    let call_id = format!("call_mock_{sequence}");
    let piece = "x".repeat(LONG_TOOL_PIECE_CHARS);
    let mut deltas = vec![
        json!({"reasoning_content": "The caller wants the tool."}),
        json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
            "function": {"name": TOOL_NAME, "arguments": ""}}]}),
    ];
    deltas
        .extend((0..LONG_TOOL_PIECES).map(|_| json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})));
    let role = json!({"role": "assistant", "content": null});
    sse(
        chunks.stream(role, deltas, "tool_calls", Tokens::default()),
        Duration::ZERO,
        End::Clean,
    )
}

/// OpenAI's SSE: each chunk a `data:` line, `data: [DONE]` after the last unless cut.
fn sse(chunks: Vec<Value>, interval: Duration, end: End) -> Response<Body> {
    let mut events: Vec<String> = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    if end == End::Clean {
        events.push("data: [DONE]\n\n".to_owned());
    }
    sse_response(events, interval, end)
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

/// `mock-401`, but quoting the whole key instead of masking it.
fn quote_key(request: &RecordedRequest) -> Response<Body> {
    let key = request
        .header("authorization")
        .unwrap_or_default()
        .trim_start_matches("Bearer ");
    error(
        StatusCode::UNAUTHORIZED,
        &format!("Incorrect API key provided: {key}."),
        "invalid_request_error",
        None,
        Some("invalid_api_key"),
    )
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
