//! The upstream's Azure OpenAI part: a resource's deployment paths
//! (`POST /openai/deployments/{deployment}/{chat/completions,embeddings,completions}?api-version=…`),
//! its v1 API (`POST /openai/v1/…`), and Microsoft Entra ID's token endpoint
//! (`POST /{tenant}/oauth2/v2.0/token`) for the workload-identity exchange.
//!
//! The bodies are OpenAI's (the [`super::openai`] part answers them, the deployment name standing
//! in for the model on deployment paths), with what Azure adds: `prompt_filter_results` on every
//! chat answer (a chunk of its own first in a stream) and `content_filter_results` on each choice.
//! It checks what Azure checks first: an `api-key` header or a bearer token this endpoint issued
//! and has not expired (401 in Azure's words otherwise), and `api-version` on deployment paths.
//! Azure's own misbehaviours, by model (or deployment):
//!
//! | model | answer |
//! |---|---|
//! | `mock-content-filter` | 400 `content_filter`: the prompt refused by the content filter |
//! | `mock-filtered` | 200 whose answer was stopped with `finish_reason: content_filter` |
//! | `mock-429` (or a scripted 429) | Azure's 429, with `retry-after`, `retry-after-ms` and `x-ratelimit-*` |
//!
//! [`super::Upstream::expire_azure_tokens`] expires every token issued so far, as time would.

use std::sync::Mutex;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode, header};
use serde_json::{Value, json};

use super::script::Controls;
use super::{RETRY_AFTER_SECS, RecordedRequest};
use crate::http::{Body, json_response};

/// The scope a token must be asked for.
pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";
/// The assertion type of a federated token.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// What the token endpoint says a token lives, in seconds.
pub const TOKEN_LIFETIME_SECS: u64 = 3599;
/// The message of Azure's 401.
pub const UNAUTHORIZED_MESSAGE: &str = "Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired.";

/// The tokens the endpoint issued: each, and whether it still holds.
#[derive(Debug, Default)]
pub(super) struct Issued(Mutex<Vec<(String, bool)>>);

impl Issued {
    fn issue(&self) -> String {
        let Ok(mut all) = self.0.lock() else {
            return String::new();
        };
        let token = format!("azure-token-{}", all.len() + 1);
        all.push((token.clone(), true));
        token
    }

    fn holds(&self, token: &str) -> bool {
        self.0
            .lock()
            .is_ok_and(|all| all.iter().any(|(t, valid)| t == token && *valid))
    }

    /// Expires every token issued so far.
    pub(super) fn expire_all(&self) {
        if let Ok(mut all) = self.0.lock() {
            all.iter_mut().for_each(|(_, valid)| *valid = false);
        }
    }
}

/// Whether `path` is Azure's.
pub(super) fn serves(path: &str) -> bool {
    path.starts_with("/openai/") || path.ends_with("/oauth2/v2.0/token")
}

/// The model a request names: the deployment on deployment paths, else the body's.
pub(super) fn model(request: &RecordedRequest) -> Option<&str> {
    let path = path_of(request);
    match path.strip_prefix("/openai/deployments/") {
        Some(rest) => rest.split('/').next(),
        None => request.body.get("model").and_then(Value::as_str),
    }
}

fn path_of(request: &RecordedRequest) -> &str {
    request
        .path
        .split_once('?')
        .map_or(request.path.as_str(), |(path, _)| path)
}

fn query_has_api_version(request: &RecordedRequest) -> bool {
    request.path.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|pair| pair.starts_with("api-version=") && pair.len() > 12)
    })
}

pub(super) async fn answer(
    request: &RecordedRequest,
    sequence: usize,
    controls: &Controls,
    issued: &Issued,
) -> Response<Body> {
    let path = path_of(request);
    if path.ends_with("/oauth2/v2.0/token") {
        return token(request, issued);
    }
    let authorized = match (request.header("api-key"), request.header("authorization")) {
        (Some(key), _) => !key.is_empty(),
        (None, Some(bearer)) => bearer.strip_prefix("Bearer ").is_some_and(|t| issued.holds(t)),
        (None, None) => false,
    };
    if !authorized {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": {"code": "401", "message": UNAUTHORIZED_MESSAGE}}),
        );
    }
    let (api, deployment) = match path.strip_prefix("/openai/deployments/") {
        Some(rest) => match rest.split_once('/') {
            Some((deployment, api)) => (api, Some(deployment)),
            None => ("", None),
        },
        None => (path.strip_prefix("/openai/v1/").unwrap_or_default(), None),
    };
    if deployment.is_some() && !query_has_api_version(request) {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": "404", "message": "Resource not found"}}),
        );
    }
    let model = model(request).unwrap_or_default().to_owned();
    let chat = api == "chat/completions";
    if chat && model == "mock-content-filter" {
        return json_response(StatusCode::BAD_REQUEST, &content_filter_refusal());
    }
    if chat && model == "mock-filtered" {
        return filtered(request, sequence);
    }
    // The rest is OpenAI's, at OpenAI's path, the deployment naming the model.
    let mut as_openai = request.clone();
    as_openai.path = format!("/v1/{api}");
    if let Some(body) = as_openai.body.as_object_mut() {
        body.insert("model".into(), Value::from(model));
    }
    let response = super::openai::answer(&as_openai, sequence, controls).await;
    match response.status() {
        StatusCode::TOO_MANY_REQUESTS => rate_limited(&response),
        StatusCode::OK if chat => with_filter_results(response).await,
        _ => response,
    }
}

/// Entra ID's token endpoint: the client-credentials grant with a federated assertion.
fn token(request: &RecordedRequest, issued: &Issued) -> Response<Body> {
    let form: Vec<(String, String)> = match &request.body {
        Value::String(text) => form_urlencoded::parse(text.as_bytes()).into_owned().collect(),
        _ => Vec::new(),
    };
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let wrong = [
        ("grant_type", field("grant_type") == Some("client_credentials")),
        (
            "client_assertion_type",
            field("client_assertion_type") == Some(JWT_BEARER),
        ),
        (
            "client_assertion",
            field("client_assertion").is_some_and(|v| !v.is_empty()),
        ),
        ("client_id", field("client_id").is_some_and(|v| !v.is_empty())),
        ("scope", field("scope") == Some(SCOPE)),
    ]
    .into_iter()
    .find(|(_, ok)| !ok);
    if let Some((name, _)) = wrong {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_request",
                "error_description": format!("AADSTS900144: The request body must contain a valid '{name}' parameter."),
                "error_codes": [900144]}),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({"token_type": "Bearer", "expires_in": TOKEN_LIFETIME_SECS, "ext_expires_in": TOKEN_LIFETIME_SECS,
            "access_token": issued.issue()}),
    )
}

/// What Azure's content filter says of each category when nothing was filtered.
fn safe() -> Value {
    json!({"hate": {"filtered": false, "severity": "safe"}, "self_harm": {"filtered": false, "severity": "safe"},
        "sexual": {"filtered": false, "severity": "safe"}, "violence": {"filtered": false, "severity": "safe"}})
}

fn prompt_filter_results() -> Value {
    let mut results = safe();
    results["jailbreak"] = json!({"filtered": false, "detected": false});
    json!([{"prompt_index": 0, "content_filter_results": results}])
}

/// Azure's refusal of a prompt its content filter caught.
pub fn content_filter_refusal() -> Value {
    let mut results = safe();
    results["violence"] = json!({"filtered": true, "severity": "medium"});
    json!({"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
        "type": null, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": results}}})
}

/// An answer the filter stopped, whole or streamed.
fn filtered(request: &RecordedRequest, sequence: usize) -> Response<Body> {
    let id = format!("chatcmpl-azure-{sequence}");
    let mut stopped = safe();
    stopped["violence"] = json!({"filtered": true, "severity": "medium"});
    if request.body.get("stream").and_then(Value::as_bool) != Some(true) {
        return json_response(
            StatusCode::OK,
            &json!({"id": id, "object": "chat.completion", "created": super::openai::CREATED, "model": "gpt-4o",
                "prompt_filter_results": prompt_filter_results(),
                "choices": [{"index": 0, "finish_reason": "content_filter", "content_filter_results": stopped,
                    "message": {"role": "assistant", "content": null}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 9}}),
        );
    }
    let chunk = |choices: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": super::openai::CREATED, "model": "gpt-4o",
            "choices": choices})
    };
    let events = [
        json!({"id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": prompt_filter_results()}),
        chunk(json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])),
        chunk(json!([{"index": 0, "delta": {}, "finish_reason": "content_filter", "content_filter_results": stopped}])),
    ]
    .iter()
    .map(|e| format!("data: {e}\n\n"))
    .chain(std::iter::once("data: [DONE]\n\n".to_owned()))
    .collect::<String>();
    crate::http::raw_response(StatusCode::OK, "text/event-stream", &events)
}

/// Azure's 429, keeping the wait OpenAI's part chose.
fn rate_limited(openai: &Response<Body>) -> Response<Body> {
    let secs = openai
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(RETRY_AFTER_SECS)
        .to_owned();
    let message = format!(
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after {secs} seconds."
    );
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({"error": {"code": "429", "message": message}}),
    );
    let millis = secs
        .parse::<u64>()
        .map_or_else(|_| "1000".to_owned(), |s| (s * 1000).to_string());
    for (name, value) in [
        ("retry-after", secs),
        ("retry-after-ms", millis),
        ("x-ratelimit-remaining-requests", "0".to_owned()),
        ("x-ratelimit-remaining-tokens", "0".to_owned()),
    ] {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// OpenAI's chat answer with Azure's filter results: in the document, or as a first chunk.
async fn with_filter_results(response: Response<Body>) -> Response<Body> {
    let streamed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let (parts, body) = response.into_parts();
    if streamed {
        let first = json!({"id": "", "object": "", "created": 0, "model": "", "choices": [],
            "prompt_filter_results": prompt_filter_results()});
        let first = Ok(Frame::data(Bytes::from(format!("data: {first}\n\n"))));
        let rest = BodyStream::new(body);
        let body = BodyExt::boxed(StreamBody::new(futures::stream::once(async { first }).chain(rest)));
        return Response::from_parts(parts, body);
    }
    let Ok(collected) = body.collect().await else {
        return json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": "body lost"}));
    };
    let Ok(mut doc) = serde_json::from_slice::<Value>(&collected.to_bytes()) else {
        return json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": "not JSON"}));
    };
    doc["prompt_filter_results"] = prompt_filter_results();
    if let Some(choices) = doc.get_mut("choices").and_then(Value::as_array_mut) {
        for choice in choices {
            choice["content_filter_results"] = safe();
        }
    }
    json_response(parts.status, &doc)
}
