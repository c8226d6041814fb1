//! An in-test upstream that speaks Google's Gemini API (`v1beta`) and misbehaves on command.
//!
//! `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`,
//! `:embedContent` and `:batchEmbedContents` answer according to the `{model}` in the path;
//! every request must carry `x-goog-api-key` (a 403 `PERMISSION_DENIED` otherwise).
//!
//! | model | answer |
//! |---|---|
//! | `mock-ok` | [`OK_CONTENT`] (streamed as one event per piece of [`OK_PIECES`]), [`usage_metadata`] |
//! | `mock-tool` | a text part and a `get_weather` function call signed [`TOOL_SIGNATURE`]; once the last turn holds a `functionResponse`, [`TOOL_ANSWER_PREFIX`] and its `result`. Like Gemini 3, a history whose call lacks the signature is a 400 |
//! | `mock-safety` | an answer stopped with `finishReason: SAFETY` (streamed: some text first) |
//! | `mock-blocked` | no candidates, `promptFeedback.blockReason: SAFETY` |
//! | `mock-400`, `mock-429`, `mock-500`, `mock-503` | that status with Google's error body (`RetryInfo` of [`RETRY_DELAY_SECS`] on 429) |
//! | `mock-cut-stream` | the first [`CUT_AFTER_EVENTS`] events, then the connection drops |
//! | `mock-stall` | accepts the request and never answers |
//! | anything else | 404 `NOT_FOUND` |
//!
//! Embeddings give input `i` the vector [`crate::upstream::embedding_vector`]`(i, dims)`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::mock_server::{Body, MockServer, Step, cut_json_response, json_response, stream_response, tool_arguments};
pub use crate::mock_server::{TOOL_ANSWER_PREFIX, TOOL_CITY, TOOL_NAME};
pub use crate::upstream::{CACHED_TOKENS, COMPLETION_TOKENS, OK_CONTENT, OK_PIECES, PROMPT_TOKENS, RecordedRequest};
use crate::upstream::{EMBEDDING_DIMENSIONS, embedding_vector};

/// The thought signature `mock-tool` puts on its call, and wants back.
pub const TOOL_SIGNATURE: &str = "c2lnbmVkLWJ5LXRoZS1tb2Nr";
/// The text of `mock-tool`'s first answer, before its call.
pub const TOOL_PREAMBLE: &str = "Let me check the weather.";
/// Events `mock-cut-stream` sends before dropping the connection.
pub const CUT_AFTER_EVENTS: usize = 2;
/// The `retryDelay` of `mock-429`, in seconds.
pub const RETRY_DELAY_SECS: u64 = 2;
/// The version every answer names.
pub const MODEL_VERSION: &str = "gemini-mock-001";
/// The message of `mock-400`'s error.
pub const BAD_REQUEST_MESSAGE: &str = "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"";

/// A running Gemini upstream on `127.0.0.1`, stopped when dropped.
#[derive(Debug)]
pub struct GeminiUpstream {
    server: MockServer,
}

impl GeminiUpstream {
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

    /// The API root for a backend's `baseUrl`, as Google's SDK takes it: `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Every request received so far, oldest first.
    pub async fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }
}

/// The usage of every chat answer: the same counts as the OpenAI upstream's.
pub fn usage_metadata() -> Value {
    json!({
        "promptTokenCount": PROMPT_TOKENS,
        "candidatesTokenCount": COMPLETION_TOKENS,
        "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS,
        "cachedContentTokenCount": CACHED_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}]
    })
}

/// Google's error body.
pub fn error_body(code: u16, status: &str, message: &str) -> Value {
    let mut error = json!({"error": {"code": code, "message": message, "status": status}});
    if code == 429 {
        error["error"]["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{RETRY_DELAY_SECS}s")
        }]);
    }
    error
}

fn error(code: u16, status: &str, message: &str) -> Response<Body> {
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &error_body(code, status, message),
    )
}

async fn handle(request: RecordedRequest, sequence: usize) -> Response<Body> {
    let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let Some((model, method)) = path
        .strip_prefix("/v1beta/models/")
        .and_then(|rest| rest.split_once(':'))
    else {
        return error(404, "NOT_FOUND", &format!("unknown path {path}"));
    };
    if request.method != "POST" {
        return error(405, "INVALID_ARGUMENT", "use POST");
    }
    if request.header("x-goog-api-key").is_none() {
        return error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        );
    }
    let body = &request.body;
    match model {
        "mock-400" => return error(400, "INVALID_ARGUMENT", BAD_REQUEST_MESSAGE),
        "mock-429" => return error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota."),
        "mock-500" => return error(500, "INTERNAL", "An internal error has occurred."),
        "mock-503" => return error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        "mock-stall" => return std::future::pending().await,
        "mock-ok" | "mock-tool" | "mock-safety" | "mock-blocked" | "mock-cut-stream" => {}
        _ => {
            return error(
                404,
                "NOT_FOUND",
                &format!("models/{model} is not found for API version v1beta"),
            );
        }
    }
    let response_id = format!("mock-response-{sequence}");
    match method {
        "generateContent" => generate(model, body, &response_id, false),
        "streamGenerateContent" if query.split('&').any(|p| p == "alt=sse") => {
            generate(model, body, &response_id, true)
        }
        "streamGenerateContent" => error(400, "INVALID_ARGUMENT", "this mock streams with alt=sse only"),
        "embedContent" => embed(body.get("content"), body.get("outputDimensionality"))
            .map_or_else(bad_embedding, |v| {
                json_response(StatusCode::OK, &json!({"embedding": v}))
            }),
        "batchEmbedContents" => batch_embed(body, model),
        _ => error(404, "NOT_FOUND", &format!("unknown method {method}")),
    }
}

fn bad_embedding() -> Response<Body> {
    error(400, "INVALID_ARGUMENT", "content.parts[0].text is required")
}

/// The vector for one embed request's content, as the `index`-th input.
fn embed_at(content: Option<&Value>, dimensions: Option<&Value>, index: usize) -> Option<Value> {
    content?.pointer("/parts/0/text")?.as_str()?;
    let dimensions = dimensions
        .and_then(Value::as_u64)
        .map_or(EMBEDDING_DIMENSIONS, |d| d as usize);
    Some(json!({"values": embedding_vector(index, dimensions)}))
}

fn embed(content: Option<&Value>, dimensions: Option<&Value>) -> Option<Value> {
    embed_at(content, dimensions, 0)
}

fn batch_embed(body: &Value, model: &str) -> Response<Body> {
    let Some(requests) = body.get("requests").and_then(Value::as_array) else {
        return error(400, "INVALID_ARGUMENT", "requests is required");
    };
    let mut embeddings = Vec::new();
    for (index, entry) in requests.iter().enumerate() {
        if entry.get("model").and_then(Value::as_str) != Some(&format!("models/{model}")) {
            return error(400, "INVALID_ARGUMENT", "requests[].model must name the batch's model");
        }
        match embed_at(entry.get("content"), entry.get("outputDimensionality"), index) {
            Some(v) => embeddings.push(v),
            None => return bad_embedding(),
        }
    }
    json_response(StatusCode::OK, &json!({"embeddings": embeddings}))
}

/// What the last turn's function response said, if it is one.
fn function_result(body: &Value) -> Option<String> {
    let last = body.get("contents")?.as_array()?.last()?;
    let response = last
        .get("parts")?
        .as_array()?
        .iter()
        .find_map(|p| p.get("functionResponse"))?;
    Some(match response.pointer("/response/result") {
        Some(Value::String(s)) => s.clone(),
        _ => response.get("response").map(Value::to_string).unwrap_or_default(),
    })
}

/// Whether the history's first function call carries the signature `mock-tool` gave it.
fn signature_returned(body: &Value) -> bool {
    body.get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| c.get("parts").and_then(Value::as_array).into_iter().flatten())
        .find(|p| p.get("functionCall").is_some())
        .is_some_and(|p| p.get("thoughtSignature").and_then(Value::as_str) == Some(TOOL_SIGNATURE))
}

fn candidate(parts: Vec<Value>, finish: Option<&str>) -> Value {
    let mut candidate = json!({"index": 0});
    if !parts.is_empty() {
        candidate["content"] = json!({"parts": parts, "role": "model"});
    }
    if let Some(reason) = finish {
        candidate["finishReason"] = json!(reason);
    }
    candidate
}

fn answer(candidates: Vec<Value>, response_id: &str, usage: bool) -> Value {
    let mut answer = json!({"candidates": candidates, "modelVersion": MODEL_VERSION, "responseId": response_id});
    if usage {
        answer["usageMetadata"] = usage_metadata();
    }
    answer
}

fn generate(model: &str, body: &Value, response_id: &str, streamed: bool) -> Response<Body> {
    if body.get("contents").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return error(400, "INVALID_ARGUMENT", "contents is not specified");
    }
    let text = |t: &str| json!({"text": t});
    // Each event's parts and finish reason; the whole answer joins them.
    let events: Vec<(Vec<Value>, Option<&str>)> = match model {
        "mock-ok" | "mock-cut-stream" => OK_PIECES
            .iter()
            .enumerate()
            .map(|(i, p)| (vec![text(p)], (i + 1 == OK_PIECES.len()).then_some("STOP")))
            .collect(),
        "mock-tool" => match function_result(body) {
            Some(_) if !signature_returned(body) => {
                return error(
                    400,
                    "INVALID_ARGUMENT",
                    "Function call is missing a thought_signature in functionCall parts.",
                );
            }
            Some(result) => vec![
                (vec![text(TOOL_ANSWER_PREFIX)], None),
                (vec![text(&result)], Some("STOP")),
            ],
            None => vec![
                (vec![text(TOOL_PREAMBLE)], None),
                (
                    vec![
                        json!({"functionCall": {"name": TOOL_NAME, "args": tool_arguments()}, "thoughtSignature": TOOL_SIGNATURE}),
                    ],
                    Some("STOP"),
                ),
            ],
        },
        "mock-safety" => vec![(vec![text("Here is how to")], None), (Vec::new(), Some("SAFETY"))],
        _ => {
            // mock-blocked: the prompt itself is refused.
            let blocked = json!({
                "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
                "usageMetadata": {"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS},
                "modelVersion": MODEL_VERSION, "responseId": response_id
            });
            return if streamed {
                stream_response(sse_steps(vec![blocked], false), "text/event-stream")
            } else {
                json_response(StatusCode::OK, &blocked)
            };
        }
    };
    if !streamed {
        let parts: Vec<Value> = merge_text(events.iter().flat_map(|(parts, _)| parts.clone()).collect());
        let finish = events.iter().find_map(|(_, f)| *f);
        let whole = answer(vec![candidate(parts, finish)], response_id, true);
        return if model == "mock-cut-stream" {
            cut_json_response(&whole)
        } else {
            json_response(StatusCode::OK, &whole)
        };
    }
    let last = events.len() - 1;
    let mut chunks: Vec<Value> = events
        .into_iter()
        .enumerate()
        .map(|(i, (parts, finish))| answer(vec![candidate(parts, finish)], response_id, i == last))
        .collect();
    let cut = model == "mock-cut-stream";
    if cut {
        chunks.truncate(CUT_AFTER_EVENTS);
    }
    stream_response(sse_steps(chunks, cut), "text/event-stream")
}

/// Adjacent text parts joined into one, as a whole answer has them.
fn merge_text(parts: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for part in parts {
        match (out.last_mut(), part.get("text").and_then(Value::as_str)) {
            (Some(last), Some(text)) if last.get("text").is_some() => {
                let joined = format!("{}{text}", last["text"].as_str().unwrap_or_default());
                last["text"] = json!(joined);
            }
            _ => out.push(part),
        }
    }
    out
}

/// SSE steps, as Google frames them (`data:` lines ending `\r\n\r\n`, no end marker).
fn sse_steps(events: Vec<Value>, cut: bool) -> VecDeque<Step> {
    let mut steps: VecDeque<Step> = events
        .into_iter()
        .map(|e| Step::Send(Bytes::from(format!("data: {e}\r\n\r\n"))))
        .collect();
    if cut {
        steps.push_back(Step::Wait(Duration::from_millis(10)));
        steps.push_back(Step::Cut);
    }
    steps
}
