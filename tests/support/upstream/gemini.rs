//! The upstream's Gemini part: Google's Gemini API (`v1beta`), as Google answers it.
//! `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`,
//! `:embedContent` and `:batchEmbedContents`, the behaviour chosen by the `{model}` in the path;
//! every request must carry `x-goog-api-key` (a 403 `PERMISSION_DENIED` otherwise).
//!
//! Answers report [`usage_metadata`]; streams are `data:` lines ending `\r\n\r\n`, one event
//! per piece, usage on the last, no end marker. `mock-tool` answers a text part
//! ([`TOOL_PREAMBLE`]) and a [`TOOL_NAME`] function call signed [`TOOL_SIGNATURE`]; once the last
//! turn holds a `functionResponse`, [`TOOL_ANSWER_PREFIX`] and its `result`. Like Gemini 3, a
//! history whose call lacks the signature is a 400. `mock-safety` stops with `finishReason:
//! SAFETY` (streamed: some text first); `mock-blocked` has no candidates but
//! `promptFeedback.blockReason: SAFETY`; `mock-cut-stream` sends the first [`CUT_AFTER_EVENTS`]
//! events, then drops the connection. Errors are Google's, a 429 with `RetryInfo`; an unknown
//! model is 404 `NOT_FOUND`.
//!
//! Embeddings give input `i` the vector [`super::embedding_vector`]`(i, dims)`.

use std::time::Duration;

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::script::Controls;
use super::{
    Behaviour, CACHED_TOKENS, EMBEDDING_DIMENSIONS, OK_PIECES, RETRY_AFTER_SECS, RecordedRequest, SLOW_CHUNK_INTERVAL,
    Steer, TOOL_ANSWER_PREFIX, TOOL_NAME, TOOL_PREAMBLE, Tokens, embedding_vector, tool_arguments,
};
use crate::http::{Body, End, cut_json_response, json_response, raw_response, sse_response};

/// The thought signature `mock-tool` puts on its call, and wants back.
pub const TOOL_SIGNATURE: &str = "c2lnbmVkLWJ5LXRoZS1tb2Nr";
/// Events `mock-cut-stream` sends before dropping the connection.
pub const CUT_AFTER_EVENTS: usize = 2;
/// The version every answer names.
pub const MODEL_VERSION: &str = "gemini-mock-001";
/// The message of `mock-400`'s error.
pub const BAD_REQUEST_MESSAGE: &str = "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"";

/// The usage of every chat answer: the same counts as the OpenAI part's.
pub fn usage_metadata() -> Value {
    usage_of(Tokens::default())
}

fn usage_of(tokens: Tokens) -> Value {
    json!({
        "promptTokenCount": tokens.prompt,
        "candidatesTokenCount": tokens.completion,
        "totalTokenCount": tokens.prompt + tokens.completion,
        "cachedContentTokenCount": CACHED_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens.prompt}]
    })
}

/// Google's error body; a 429 says to retry after `retry_after_secs`.
pub fn error_body(code: u16, status: &str, message: &str, retry_after_secs: &str) -> Value {
    let mut error = json!({"error": {"code": code, "message": message, "status": status}});
    if code == 429 {
        error["error"]["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{retry_after_secs}s")
        }]);
    }
    error
}

fn error(code: u16, status: &str, message: &str) -> Response<Body> {
    error_after(code, status, message, RETRY_AFTER_SECS)
}

fn error_after(code: u16, status: &str, message: &str, retry_after_secs: &str) -> Response<Body> {
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &error_body(code, status, message, retry_after_secs),
    )
}

/// The error each failing model answers with, by status.
fn failed(status: StatusCode) -> Response<Body> {
    let (name, message) = match status.as_u16() {
        400 => ("INVALID_ARGUMENT", BAD_REQUEST_MESSAGE),
        401 => ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
        403 => ("PERMISSION_DENIED", "The caller does not have permission"),
        429 => ("RESOURCE_EXHAUSTED", "You exceeded your current quota."),
        503 => ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        _ => ("INTERNAL", "An internal error has occurred."),
    };
    error(status.as_u16(), name, message)
}

/// The model a request's path names.
pub(super) fn model(path: &str) -> Option<&str> {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let (model, _) = path.strip_prefix("/v1beta/models/")?.split_once(':')?;
    Some(model)
}

pub(super) async fn answer(request: &RecordedRequest, sequence: usize, controls: &Controls) -> Response<Body> {
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
    let Some(key) = request.header("x-goog-api-key") else {
        return error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        );
    };
    respond(request, model, method, query, sequence, controls, key).await
}

/// Answers an authenticated request for `model`'s `method` (`query` its query string); `key` is
/// the credential it carried, which `mock-quote-key` quotes back. Vertex AI's Gemini models
/// answer through here too.
pub(super) async fn respond(
    request: &RecordedRequest,
    model: &str,
    method: &str,
    query: &str,
    sequence: usize,
    controls: &Controls,
    key: &str,
) -> Response<Body> {
    let steer = controls.steer(model).await;
    match steer.behaviour {
        Behaviour::Fail(status) => return failed(status),
        Behaviour::RateLimitedFor(secs) => {
            return error_after(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota.",
                &secs.to_string(),
            );
        }
        Behaviour::QuoteKey => return error(401, "UNAUTHENTICATED", &format!("API key not valid: {key}")),
        Behaviour::Stall => return std::future::pending().await,
        Behaviour::UnknownModel | Behaviour::LongTool | Behaviour::ErrorEvent | Behaviour::OverloadedEarly => {
            return error(
                404,
                "NOT_FOUND",
                &format!("models/{model} is not found for API version v1beta"),
            );
        }
        Behaviour::Ok
        | Behaviour::Tool
        | Behaviour::Safety
        | Behaviour::Blocked
        | Behaviour::CutStream
        | Behaviour::SlowStream
        | Behaviour::Whole
        | Behaviour::Garbage => {}
    }
    let body = &request.body;
    let response_id = format!("mock-response-{sequence}");
    match method {
        "generateContent" => generate(body, &response_id, false, steer),
        "streamGenerateContent" if query.split('&').any(|p| p == "alt=sse") => {
            generate(body, &response_id, true, steer)
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

fn answer_of(candidates: Vec<Value>, response_id: &str, usage: Option<Tokens>) -> Value {
    let mut answer = json!({"candidates": candidates, "modelVersion": MODEL_VERSION, "responseId": response_id});
    if let Some(tokens) = usage {
        answer["usageMetadata"] = usage_of(tokens);
    }
    answer
}

fn generate(body: &Value, response_id: &str, streamed: bool, steer: Steer) -> Response<Body> {
    if body.get("contents").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return error(400, "INVALID_ARGUMENT", "contents is not specified");
    }
    let streamed = streamed && steer.behaviour != Behaviour::Whole;
    let text = |t: &str| json!({"text": t});
    // Each event's parts and finish reason; the whole answer joins them.
    let events: Vec<(Vec<Value>, Option<&str>)> = match steer.behaviour {
        Behaviour::Tool => match function_result(body) {
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
        Behaviour::Safety => vec![(vec![text("Here is how to")], None), (Vec::new(), Some("SAFETY"))],
        Behaviour::Blocked => {
            // The prompt itself is refused.
            let blocked = json!({
                "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
                "usageMetadata": {"promptTokenCount": steer.tokens.prompt, "totalTokenCount": steer.tokens.prompt},
                "modelVersion": MODEL_VERSION, "responseId": response_id
            });
            return if streamed {
                sse(&[blocked], Duration::ZERO, End::Clean)
            } else {
                json_response(StatusCode::OK, &blocked)
            };
        }
        Behaviour::Garbage if streamed => {
            return sse_response(
                ["data: {\"candidates\": [{\"content\": {\r\n\r\n".to_owned()],
                Duration::ZERO,
                End::Clean,
            );
        }
        Behaviour::Garbage => {
            return raw_response(StatusCode::OK, "application/json", r#"{"candidates": [{"content": {"#);
        }
        _ => OK_PIECES
            .iter()
            .enumerate()
            .map(|(i, p)| (vec![text(p)], (i + 1 == OK_PIECES.len()).then_some("STOP")))
            .collect(),
    };
    let cut = steer.behaviour == Behaviour::CutStream;
    if !streamed {
        let parts: Vec<Value> = merge_text(events.iter().flat_map(|(parts, _)| parts.clone()).collect());
        let finish = events.iter().find_map(|(_, f)| *f);
        let whole = answer_of(vec![candidate(parts, finish)], response_id, Some(steer.tokens));
        return if cut {
            cut_json_response(&whole)
        } else {
            json_response(StatusCode::OK, &whole)
        };
    }
    let last = events.len() - 1;
    let mut chunks: Vec<Value> = events
        .into_iter()
        .enumerate()
        .map(|(i, (parts, finish))| {
            let usage = (i == last).then_some(steer.tokens);
            answer_of(vec![candidate(parts, finish)], response_id, usage)
        })
        .collect();
    if cut {
        chunks.truncate(CUT_AFTER_EVENTS);
        return sse(&chunks, Duration::ZERO, End::Cut);
    }
    let interval = if steer.behaviour == Behaviour::SlowStream {
        SLOW_CHUNK_INTERVAL
    } else {
        Duration::ZERO
    };
    sse(&chunks, interval, End::Clean)
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

/// Google's SSE: `data:` lines ending `\r\n\r\n`, no end marker.
fn sse(events: &[Value], interval: Duration, end: End) -> Response<Body> {
    sse_response(events.iter().map(|e| format!("data: {e}\r\n\r\n")), interval, end)
}
