//! The upstream's Vertex AI part: Google's Vertex AI as it answers, with the two token issuers a
//! sidecar meets, all on the upstream's one address:
//!
//! | endpoint | what |
//! |---|---|
//! | `POST /v1/projects/{p}/locations/{r}/publishers/google/models/{model}:{method}` | Gemini, as [`super::gemini`] answers (`generateContent`, `streamGenerateContent?alt=sse`; `predict` for embeddings) |
//! | `POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict` / `:streamRawPredict` | Claude, as [`super::anthropic`] answers; the body must have `anthropic_version` [`ANTHROPIC_VERSION`] and no `model` |
//! | `POST …/publishers/anthropic/models/count-tokens:rawPredict` | Anthropic's token count |
//! | `POST /token` | the OAuth 2.0 JWT-bearer grant: the assertion's RS256 signature is checked with the throwaway test key's public half, its `aud` must be this URL |
//! | `GET /computeMetadata/v1/instance/service-accounts/default/token` | the metadata server; needs `Metadata-Flavor: Google` |
//!
//! Every model call needs `Authorization: Bearer` with a token one of the two issued and
//! [`Upstream::expire_vertex_tokens`](super::Upstream::expire_vertex_tokens) has not expired
//! since, nor has its [`TOKEN_LIFETIME_SECS`] run out; anything else is Google's 401
//! `UNAUTHENTICATED`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::{Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

use super::script::Controls;
use super::{RecordedRequest, embedding_vector, gemini};
use crate::http::{Body, json_response, raw_response};

/// The throwaway service-account key the tests sign token requests with (its `token_uri` is
/// Google's; [`service_account_key`] points it here).
pub const SERVICE_ACCOUNT_KEY: &str =
    include_str!("../../../sidecar/src/providers/fixtures/vertex/throwaway_test_service_account_key.json");
/// The public half of that key, which checks the assertions.
const PUBLIC_KEY: &str = include_str!("../../../sidecar/src/providers/fixtures/vertex/throwaway_test_key.pub.pem");
/// The service account the key belongs to.
pub const CLIENT_EMAIL: &str = "sluice-test@sluice-test-project.iam.gserviceaccount.com";
/// The version a Claude body must name.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";
/// The scope a token request must ask for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// How long issued tokens live: short, though longer than any test.
pub const TOKEN_LIFETIME_SECS: u64 = 600;
/// The path of the JWT-bearer grant.
pub const TOKEN_PATH: &str = "/token";
/// The metadata server's token path.
pub const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// Tokens from the metadata server start with this; the grant's with `ya29.c.vertex-mock-`.
pub const METADATA_TOKEN_PREFIX: &str = "ya29.metadata-mock-";

/// The throwaway key with its `token_uri` at this upstream, `origin` being `http://ADDR`.
pub fn service_account_key(origin: &str) -> String {
    let mut key: Value = serde_json::from_str(SERVICE_ACCOUNT_KEY).unwrap_or(Value::Null);
    key["token_uri"] = json!(format!("{origin}{TOKEN_PATH}"));
    key.to_string()
}

/// What the token issuers handed out.
#[derive(Debug, Default)]
pub(super) struct Issued(Mutex<Tokens>);

#[derive(Debug, Default)]
struct Tokens {
    /// Each token that still works, and when it stops.
    valid: HashMap<String, Instant>,
    /// Grants by the JWT-bearer flow, then by the metadata server.
    granted: (usize, usize),
}

impl Issued {
    fn issue(&self, metadata: bool) -> String {
        let mut tokens = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = tokens.granted.0 + tokens.granted.1;
        let token = if metadata {
            tokens.granted.1 += 1;
            format!("{METADATA_TOKEN_PREFIX}{n}")
        } else {
            tokens.granted.0 += 1;
            format!("ya29.c.vertex-mock-{n}")
        };
        let expires = Instant::now() + Duration::from_secs(TOKEN_LIFETIME_SECS);
        tokens.valid.insert(token.clone(), expires);
        token
    }

    fn is_valid(&self, token: &str) -> bool {
        let tokens = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.valid.get(token).is_some_and(|expires| Instant::now() < *expires)
    }

    /// Every token issued so far stops working.
    pub(super) fn expire_all(&self) {
        let mut tokens = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.valid.clear();
    }

    /// How many tokens the JWT-bearer grant and the metadata server issued.
    pub(super) fn granted(&self) -> (usize, usize) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).granted
    }
}

fn google_error(code: u16, status: &str, message: &str) -> Response<Body> {
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &gemini::error_body(code, status, message, super::RETRY_AFTER_SECS),
    )
}

/// An OAuth error, as Google's token endpoint answers it.
fn oauth_error(error: &str, description: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": error, "error_description": description}),
    )
}

/// Whether `path` is one of Vertex's (or its token issuers') endpoints.
pub(super) fn serves(path: &str) -> bool {
    path.starts_with("/v1/projects/") || path == TOKEN_PATH || path == METADATA_TOKEN_PATH
}

/// The publisher, model and method (with its query) a model path names.
fn parse_path(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix("/v1/projects/")?;
    let (_project, rest) = rest.split_once("/locations/")?;
    let (_region, rest) = rest.split_once("/publishers/")?;
    let (publisher, rest) = rest.split_once("/models/")?;
    let (model, method) = rest.split_once(':')?;
    Some((publisher, model, method))
}

/// The model a request's path names.
pub(super) fn model(path: &str) -> Option<&str> {
    parse_path(path).map(|(_, model, _)| model)
}

pub(super) async fn answer(
    request: &RecordedRequest,
    sequence: usize,
    controls: &Controls,
    issued: &Issued,
) -> Response<Body> {
    if request.path == TOKEN_PATH {
        return grant(request, issued);
    }
    if request.path == METADATA_TOKEN_PATH {
        if request.header("metadata-flavor") != Some("Google") {
            return raw_response(
                StatusCode::FORBIDDEN,
                "text/html",
                "Missing required header: Metadata-Flavor",
            );
        }
        return token_answer(issued.issue(true));
    }
    let Some((publisher, model, method)) = parse_path(&request.path) else {
        return google_error(404, "NOT_FOUND", &format!("unknown path {}", request.path));
    };
    if request.method != "POST" {
        return google_error(405, "INVALID_ARGUMENT", "use POST");
    }
    let token = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| issued.is_valid(t));
    let Some(token) = token else {
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    };
    let (method, query) = method.split_once('?').unwrap_or((method, ""));
    match publisher {
        "google" if method == "predict" => predict(&request.body),
        "google" => gemini::respond(request, model, method, query, sequence, controls, token).await,
        "anthropic" => claude(request, model, method, sequence, controls, token).await,
        _ => google_error(
            404,
            "NOT_FOUND",
            &format!("Publisher Model `publishers/{publisher}/models/{model}` not found."),
        ),
    }
}

/// A Claude call: Anthropic's Messages body as Vertex wants it.
async fn claude(
    request: &RecordedRequest,
    model: &str,
    method: &str,
    sequence: usize,
    controls: &Controls,
    token: &str,
) -> Response<Body> {
    let body = &request.body;
    if model == "count-tokens" && method == "rawPredict" {
        return super::anthropic::counted(request);
    }
    if body.get("anthropic_version").and_then(Value::as_str) != Some(ANTHROPIC_VERSION) {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "anthropic_version: vertex-2023-10-16 is required",
        );
    }
    if body.get("model").is_some() {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "model: Extra inputs are not permitted (the model is named in the URL)",
        );
    }
    let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
    match method {
        "rawPredict" | "streamRawPredict" if streamed == (method == "streamRawPredict") => {
            super::anthropic::respond(request, model, sequence, controls, token).await
        }
        "rawPredict" | "streamRawPredict" => google_error(
            400,
            "INVALID_ARGUMENT",
            "stream must be true with streamRawPredict and absent with rawPredict",
        ),
        _ => google_error(404, "NOT_FOUND", &format!("unknown method {method}")),
    }
}

/// A text-embedding model's `:predict`: input `i` gets [`embedding_vector`]`(i, dims)` and a
/// token count of its whitespace-separated words.
fn predict(body: &Value) -> Response<Body> {
    let Some(instances) = body.get("instances").and_then(Value::as_array) else {
        return google_error(400, "INVALID_ARGUMENT", "instances is required");
    };
    let dimensions = body
        .pointer("/parameters/outputDimensionality")
        .and_then(Value::as_u64)
        .map_or(super::EMBEDDING_DIMENSIONS, |d| d as usize);
    let mut predictions = Vec::new();
    for (index, instance) in instances.iter().enumerate() {
        let Some(content) = instance.get("content").and_then(Value::as_str) else {
            return google_error(400, "INVALID_ARGUMENT", "instances[].content is required");
        };
        predictions.push(json!({"embeddings": {
            "statistics": {"truncated": false, "token_count": content.split_whitespace().count()},
            "values": embedding_vector(index, dimensions)
        }}));
    }
    json_response(StatusCode::OK, &json!({"predictions": predictions}))
}

/// The claims a grant's assertion must carry.
#[derive(Deserialize)]
struct Claims {
    iss: String,
    scope: String,
}

/// The JWT-bearer grant: a form with the grant type and an assertion signed by the test key.
fn grant(request: &RecordedRequest, issued: &Issued) -> Response<Body> {
    if request.header("content-type") != Some("application/x-www-form-urlencoded") {
        return oauth_error("invalid_request", "the body must be a form");
    }
    let form = request.body.as_str().unwrap_or_default();
    let field = |name: &str| {
        form.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| percent_decode(value))
    };
    if field("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return oauth_error("unsupported_grant_type", "Invalid grant_type.");
    }
    let Some(assertion) = field("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let audience = format!("http://{}{TOKEN_PATH}", request.header("host").unwrap_or_default());
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let Ok(key) = DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()) else {
        return oauth_error("server_error", "the test key does not load");
    };
    match jsonwebtoken::decode::<Claims>(&assertion, &key, &validation) {
        Ok(data) if data.claims.iss == CLIENT_EMAIL && data.claims.scope == SCOPE => token_answer(issued.issue(false)),
        Ok(_) => oauth_error("invalid_scope", "the assertion names another account or scope"),
        Err(_) => oauth_error("invalid_grant", "Invalid JWT Signature."),
    }
}

fn token_answer(token: String) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({"access_token": token, "expires_in": TOKEN_LIFETIME_SECS, "token_type": "Bearer"}),
    )
}

/// A form value decoded: `+` is a space, `%XX` a byte.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
