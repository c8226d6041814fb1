//! Google Vertex AI upstreams: Gemini models (`publisher: google`, Gemini's own format at
//! `:generateContent` / `:streamGenerateContent?alt=sse`, embeddings at `:predict`) and Claude
//! models (`publisher: anthropic`, Anthropic's Messages format at `:rawPredict` /
//! `:streamRawPredict`), both under
//! `{endpoint}/v1/projects/{project}/locations/{region}/publishers/{publisher}/models/{model}`.
//!
//! This module is the transport: the URLs, the bearer token ([`token`]), and which of the Gemini
//! and Anthropic providers' answer readers to use; the translations are theirs. Decisions a
//! client may notice:
//! - A Claude request is Anthropic's Messages body without `model` (the URL names it) and with
//!   `"anthropic_version": "vertex-2023-10-16"` instead of the header.
//! - A 401 drops the token, fetches another and retries once; a second 401 is the client's
//!   error, saying the token was refused twice.
//! - Errors come in Google's shape (`{"error": {"code", "message", "status"}}`, a 429 with a
//!   `RetryInfo` delay) or, from a Claude model, Anthropic's; both become OpenAI's.
//! - Tokens are blanked from error bodies; the key file never reaches them.

mod service_account;
#[cfg(test)]
mod tests;
mod token;

use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_crds::{ApiKey, Backend, VertexPublisher, VertexSpec};
use tokio::time::Instant;

pub use self::{
    service_account::KeyError,
    token::{METADATA_HOST_ENV, TokenError},
};
use self::{
    service_account::ServiceAccount,
    token::{AccessToken, Origin, TokenSource},
};
use super::{
    ChatCall, Complete, EmbeddingsCall, MAX_UPSTREAM_BODY, ProviderError, Reply, anthropic, body_stream,
    client::{self, Response, UpstreamClient},
    error_from_response, gemini, read_body, redact, unix_now,
};
use crate::{
    formats::{
        anthropic::{CountTokensRequest, TokenCount},
        gemini::ContentEmbedding,
        openai::EmbeddingInput,
    },
    translate::{gemini_to_openai, openai_to_anthropic, openai_to_gemini},
    wire::Usage,
};

/// The version a Claude request on Vertex names in its body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// A Vertex AI upstream for one backend: one project, region and publisher.
#[derive(Debug)]
pub struct Vertex {
    client: UpstreamClient,
    publisher: VertexPublisher,
    /// `…/publishers/{publisher}/models`.
    models_url: String,
    tokens: TokenSource,
}

/// Why a Vertex backend cannot be set up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SetupError {
    /// The backend has no `vertex` settings (validation refuses this before it gets here).
    #[error("provider vertex needs the backend's vertex settings (project, region, publisher)")]
    MissingSettings,
    /// The service-account key in its Secret is unusable.
    #[error("vertex credentials: {0}")]
    Key(#[from] KeyError),
}

/// The API root for `region`: regional, or the global endpoint.
pub fn endpoint(region: &str) -> String {
    if region == "global" {
        "https://aiplatform.googleapis.com".to_owned()
    } else {
        format!("https://{region}-aiplatform.googleapis.com")
    }
}

/// The models collection of `spec`'s project, region and publisher at `base_url`.
pub fn models_url(spec: &VertexSpec, base_url: &str) -> String {
    let publisher = match spec.publisher {
        VertexPublisher::Google => "google",
        VertexPublisher::Anthropic => "anthropic",
    };
    format!(
        "{}/v1/projects/{}/locations/{}/publishers/{publisher}/models",
        base_url.trim_end_matches('/'),
        spec.project,
        spec.region
    )
}

impl Vertex {
    /// An upstream for `spec` at `base_url` (the region's endpoint when `None`), with tokens
    /// from the service-account key in `key`, or from the metadata server at `metadata_host`
    /// (`GCE_METADATA_HOST`) when there is no key. Tokens are fetched with `token_client`, which
    /// carries none of the backend's extra headers: those are for the model's endpoint alone.
    pub fn new(
        spec: &VertexSpec,
        base_url: Option<&str>,
        key: Option<&ApiKey>,
        metadata_host: Option<&str>,
        client: UpstreamClient,
        token_client: reqwest::Client,
    ) -> Result<Self, KeyError> {
        let origin = match key {
            Some(key) => Origin::ServiceAccount(ServiceAccount::parse(key.expose())?),
            None => Origin::metadata(metadata_host),
        };
        let base = base_url.map_or_else(|| endpoint(&spec.region), str::to_owned);
        Ok(Self {
            tokens: TokenSource::shared(key.map(ApiKey::expose), origin, token_client),
            client,
            publisher: spec.publisher,
            models_url: models_url(spec, &base),
        })
    }

    /// The upstream for a `vertex` backend: its settings and `baseUrl`, the key from its
    /// Secret, else the metadata server that `GCE_METADATA_HOST` names.
    pub fn for_backend(
        backend: &Backend,
        key: Option<&ApiKey>,
        client: UpstreamClient,
        token_client: reqwest::Client,
    ) -> Result<Self, SetupError> {
        let spec = backend.vertex.as_ref().ok_or(SetupError::MissingSettings)?;
        let metadata_host = std::env::var(METADATA_HOST_ENV).ok();
        Ok(Self::new(
            spec,
            backend.base_url.as_deref(),
            key,
            metadata_host.as_deref(),
            client,
            token_client,
        )?)
    }

    /// The URL of `method` (`generateContent`, `rawPredict`, …) on `model`.
    pub fn method_url(&self, model: &str, method: &str) -> String {
        format!("{}/{model}:{method}", self.models_url)
    }

    /// Whether `/v1/messages/count_tokens` is answered by the upstream (Claude models).
    pub fn counts_tokens(&self) -> bool {
        self.publisher == VertexPublisher::Anthropic
    }

    /// Sends a chat request in the publisher's format.
    pub async fn chat(&self, call: &ChatCall<'_>) -> Result<Reply, ProviderError> {
        match self.publisher {
            VertexPublisher::Google => self.gemini_chat(call).await,
            VertexPublisher::Anthropic => self.claude_chat(call).await,
        }
    }

    async fn gemini_chat(&self, call: &ChatCall<'_>) -> Result<Reply, ProviderError> {
        let body = openai_to_gemini::request(call.request).map_err(|e| {
            ProviderError::Unsupported(format!("this request cannot be sent to a vertex gemini backend: {e}"))
        })?;
        let model = call.model.as_str();
        let created = unix_now();
        let fallback_id = gemini::fallback_id();
        if !call.request.is_stream() {
            let url = self.method_url(model, "generateContent");
            let resp = self.post(&url, &body, call.deadline).await?;
            let bytes = read_body(resp, MAX_UPSTREAM_BODY, call.deadline).await?;
            let answer = gemini::parse_answer(&bytes)?;
            return gemini::complete_answer(answer, model, created, &fallback_id).map(Reply::Complete);
        }
        let url = self.method_url(model, "streamGenerateContent?alt=sse");
        let resp = self.post(&url, &body, call.deadline).await?;
        let wants_usage = call.request.wants_stream_usage();
        Ok(Reply::Stream(gemini::translate_body(
            body_stream(resp),
            call.deadline,
            wants_usage,
            created,
            model,
            &fallback_id,
        )))
    }

    async fn claude_chat(&self, call: &ChatCall<'_>) -> Result<Reply, ProviderError> {
        let request = openai_to_anthropic::request(call.request, call.model.as_str()).map_err(|e| {
            ProviderError::Unsupported(format!(
                "this request cannot be sent to a vertex anthropic backend: {e}"
            ))
        })?;
        let body = raw_predict_body(&request)?;
        let created = unix_now();
        let stream = call.request.is_stream();
        let method = if stream { "streamRawPredict" } else { "rawPredict" };
        let resp = self
            .post(&self.method_url(call.model.as_str(), method), &body, call.deadline)
            .await?;
        if !stream {
            let bytes = read_body(resp, MAX_UPSTREAM_BODY, call.deadline).await?;
            return anthropic::parse_message(&bytes, created).map(Reply::Complete);
        }
        let wants_usage = call.request.wants_stream_usage();
        Ok(Reply::Stream(anthropic::translate_body(
            body_stream(resp),
            call.deadline,
            wants_usage,
            created,
        )))
    }

    /// Embeds with a Vertex text-embedding model (`:predict`, one instance per input), its token
    /// counts read from the answer's statistics; Claude models have no embeddings.
    pub async fn embeddings(&self, call: &EmbeddingsCall<'_>) -> Result<Complete, ProviderError> {
        if self.publisher == VertexPublisher::Anthropic {
            return Err(ProviderError::Unsupported(format!(
                "model {:?} is served by a vertex backend with publisher anthropic, and Claude has no embeddings \
                 API; route embeddings models to a vertex backend with publisher google",
                call.request.model
            )));
        }
        let body = predict_body(call)?;
        let url = self.method_url(call.model.as_str(), "predict");
        let resp = self.post(&url, &body, call.deadline).await?;
        let bytes = read_body(resp, MAX_UPSTREAM_BODY, call.deadline).await?;
        let answer: PredictAnswer = serde_json::from_slice(&bytes).map_err(|e| {
            ProviderError::InvalidResponse(format!("the body is not a vertex embeddings prediction: {e}"))
        })?;
        let tokens = answer
            .predictions
            .iter()
            .map(|p| p.embeddings.statistics.as_ref().map_or(0, |s| s.token_count))
            .sum();
        let vectors: Vec<ContentEmbedding> = answer.predictions.into_iter().map(|p| p.embeddings.values).collect();
        let base64 = call.request.rest.get("encoding_format").and_then(Value::as_str) == Some("base64");
        let body = gemini_to_openai::embeddings_response(vectors, call.model.as_str(), base64, tokens);
        Ok(Complete {
            body,
            usage: Some(Usage {
                input: sluice_crds::Tokens(tokens),
                ..Usage::default()
            }),
        })
    }

    /// Asks a Claude model on Vertex to count a request's tokens (`count-tokens:rawPredict`), the
    /// model rewritten to `model`.
    pub async fn count_tokens(
        &self,
        request: &CountTokensRequest,
        model: &str,
        deadline: Instant,
    ) -> Result<TokenCount, ProviderError> {
        let mut body = request.clone();
        model.clone_into(&mut body.model);
        let resp = self
            .post(&self.method_url("count-tokens", "rawPredict"), &body, deadline)
            .await?;
        let bytes = read_body(resp, MAX_UPSTREAM_BODY, deadline).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ProviderError::InvalidResponse(format!("the body is not a token count: {e}")))
    }

    /// POSTs `body` with a bearer token; a 401 drops the token and retries once with a fresh
    /// one. Answers the successful response, or the upstream's error in OpenAI's shape.
    async fn post(
        &self,
        url: &str,
        body: &impl serde::Serialize,
        deadline: Instant,
    ) -> Result<Response, ProviderError> {
        let mut refreshed = false;
        loop {
            let token = self.tokens.token(deadline).await.map_err(token_failure)?;
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| ProviderError::Connect("the access token is not a valid HTTP header value".into()))?;
            value.set_sensitive(true);
            let mut request = client::post_json(&client::uri(url)?, body)?;
            request.headers_mut().insert(http::header::AUTHORIZATION, value);
            let resp = self.client.send(request).await?;
            if resp.status().is_success() {
                return Ok(resp);
            }
            let status = resp.status();
            let error = self.normalize(error_from_response(resp, deadline, None).await, &token);
            if status != StatusCode::UNAUTHORIZED {
                return Err(error);
            }
            self.tokens.invalidate(&token);
            if refreshed {
                return Err(refused_twice(error));
            }
            tracing::info!(
                url,
                "vertex refused the access token; fetching a new one and retrying once"
            );
            refreshed = true;
        }
    }

    /// The upstream's error in OpenAI's shape, with `token` blanked out: Google's shape, or
    /// Anthropic's from a Claude model.
    fn normalize(&self, error: ProviderError, token: &AccessToken) -> ProviderError {
        let ProviderError::Status {
            status,
            retry_after,
            body,
        } = error
        else {
            return error;
        };
        let body = redact(&body, token.expose());
        let google = serde_json::from_slice::<Value>(&body).is_ok_and(|v| is_google_error(&v));
        let error = ProviderError::Status {
            status,
            retry_after,
            body,
        };
        if self.publisher == VertexPublisher::Anthropic && !google {
            anthropic::normalize(error)
        } else {
            gemini::normalize(error)
        }
    }
}

/// Whether a body is Google's error shape (an object with `error.status` or `error.code`, or an
/// array of one) rather than Anthropic's (`{"type": "error", "error": {"type", …}}`).
fn is_google_error(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.last().is_some_and(is_google_error),
        Value::Object(_) => value.get("type").is_none() && value.pointer("/error/code").is_some(),
        _ => false,
    }
}

/// The Messages body `rawPredict` takes: without `model`, with `anthropic_version`.
pub fn raw_predict_body(request: &crate::formats::anthropic::MessagesRequest) -> Result<Value, ProviderError> {
    let mut body = serde_json::to_value(request)
        .map_err(|e| ProviderError::Unsupported(format!("the request could not be encoded: {e}")))?;
    if let Some(object) = body.as_object_mut() {
        object.remove("model");
        object.insert("anthropic_version".into(), json!(ANTHROPIC_VERSION));
    }
    Ok(body)
}

/// The `:predict` body of an embeddings request: one `{content}` instance per text, and the
/// client's `dimensions` as `outputDimensionality`.
fn predict_body(call: &EmbeddingsCall<'_>) -> Result<Value, ProviderError> {
    if matches!(call.request.input, EmbeddingInput::Tokens(_)) {
        return Err(ProviderError::Unsupported(
            "vertex embeddings take text; token arrays cannot be sent to a vertex backend".into(),
        ));
    }
    let instances: Vec<Value> = call
        .request
        .input
        .texts()
        .into_iter()
        .map(|content| json!({"content": content}))
        .collect();
    let mut body = json!({"instances": instances});
    if let Some(dimensions) = call.request.rest.get("dimensions").and_then(Value::as_u64) {
        body["parameters"] = json!({"outputDimensionality": dimensions});
    }
    Ok(body)
}

/// A `:predict` answer of a text-embedding model.
#[derive(Deserialize)]
struct PredictAnswer {
    predictions: Vec<Prediction>,
}

#[derive(Deserialize)]
struct Prediction {
    embeddings: PredictedEmbedding,
}

#[derive(Deserialize)]
struct PredictedEmbedding {
    #[serde(flatten)]
    values: ContentEmbedding,
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(Deserialize)]
struct Statistics {
    #[serde(default)]
    token_count: u64,
}

/// A second 401: the client's error, saying what was tried.
fn refused_twice(error: ProviderError) -> ProviderError {
    let ProviderError::Status {
        status,
        retry_after,
        body,
    } = error
    else {
        return error;
    };
    let mut value: Value = serde_json::from_slice(&body).unwrap_or_else(|_| json!({"error": {}}));
    let upstream = value
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("unauthenticated");
    let message = format!("Vertex AI refused the access token twice, once after fetching a new one: {upstream}");
    value["error"]["message"] = json!(message);
    ProviderError::Status {
        status,
        retry_after,
        body: serde_json::to_vec(&value).map_or(body, Into::into),
    }
}

/// A token that could not be had: the endpoint's refusal is the operator's to fix (401, not
/// retried); an unreachable endpoint fails over like an unreachable upstream.
fn token_failure(error: TokenError) -> ProviderError {
    match error {
        TokenError::Unreachable { .. } | TokenError::InvalidAnswer { .. } => ProviderError::Connect(error.to_string()),
        TokenError::Refused { .. } | TokenError::Key(_) => ProviderError::Status {
            status: StatusCode::UNAUTHORIZED,
            retry_after: None,
            body: crate::wire::error_body(
                &error.to_string(),
                "authentication_error",
                Some("vertex_credentials"),
                None,
            ),
        },
    }
}
