//! Google Gemini upstreams: `generateContent`, `streamGenerateContent?alt=sse`, and embeddings by
//! `embedContent` (one text) or `batchEmbedContents` (several). OpenAI requests are translated to
//! Gemini's format and the answers back (`translate::{openai_to_gemini, gemini_to_openai}`);
//! this module is the transport: URLs, headers, reading answers and events, the upstream's errors.

#[cfg(test)]
mod tests;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use http::HeaderValue;
use serde::de::DeserializeOwned;
use sluice_crds::ApiKey;
use tokio::time::Instant;

use super::{
    BodyStream, ChatCall, ChunkStream, Complete, EmbeddingsCall, MAX_UPSTREAM_BODY, ProviderError, Reply, body_stream,
    client::{self, Response, UpstreamClient},
    error_from_response, read_body, sse_events_until_close, translate_stream, unix_now,
};
use crate::{
    formats::{gemini, openai::Untranslatable},
    translate::{
        gemini_to_openai,
        openai_to_gemini::{self, EmbedRequest},
    },
    wire::{Usage, estimate_tokens},
};

/// A Gemini upstream at one API root.
#[derive(Debug)]
pub struct Gemini {
    client: UpstreamClient,
    models_url: String,
    api_key: Option<ApiKey>,
}

impl Gemini {
    /// An upstream at `base_url` (e.g. `https://generativelanguage.googleapis.com`), where
    /// `/v1beta/models/…` is.
    pub fn new(base_url: &str, api_key: Option<ApiKey>, client: UpstreamClient) -> Self {
        Self {
            client,
            models_url: format!("{}/v1beta/models", base_url.trim_end_matches('/')),
            api_key,
        }
    }

    /// Sends a chat request as `generateContent` or, streamed, `streamGenerateContent`.
    pub async fn chat(&self, call: &ChatCall<'_>) -> Result<Reply, ProviderError> {
        let body = openai_to_gemini::request(call.request).map_err(unsupported)?;
        let model = model_id(call.model.as_str());
        let created = unix_now();
        let fallback_id = fallback_id();
        if !call.request.is_stream() {
            let url = format!("{}/{model}:generateContent", self.models_url);
            let answer: gemini::GenerateContentResponse = self.call(&url, &body, call.deadline).await?;
            return complete_answer(answer, model, created, &fallback_id).map(Reply::Complete);
        }
        let url = format!("{}/{model}:streamGenerateContent?alt=sse", self.models_url);
        let resp = self.send(&url, &body).await?;
        if !resp.status().is_success() {
            return Err(normalize(
                error_from_response(resp, call.deadline, self.api_key.as_ref()).await,
            ));
        }
        let wants_usage = call.request.wants_stream_usage();
        let chunks = translate_body(
            body_stream(resp),
            call.deadline,
            wants_usage,
            created,
            model,
            &fallback_id,
        );
        Ok(Reply::Stream(chunks))
    }

    /// Embeds by `embedContent` or `batchEmbedContents`. Gemini reports no token counts for
    /// embeddings, so usage is estimated from the texts.
    pub async fn embeddings(&self, call: &EmbeddingsCall<'_>) -> Result<Complete, ProviderError> {
        let model = model_id(call.model.as_str());
        let request = openai_to_gemini::embeddings_request(call.request, model).map_err(unsupported)?;
        let vectors = match &request {
            EmbedRequest::One(body) => {
                let url = format!("{}/{model}:embedContent", self.models_url);
                let answer: gemini::EmbedContentResponse = self.call(&url, body, call.deadline).await?;
                vec![answer.embedding]
            }
            EmbedRequest::Batch(body) => {
                let url = format!("{}/{model}:batchEmbedContents", self.models_url);
                let answer: gemini::BatchEmbedContentsResponse = self.call(&url, body, call.deadline).await?;
                answer.embeddings
            }
        };
        let chars = call.request.input.texts().iter().map(|t| t.chars().count()).sum();
        let usage = Usage {
            input: estimate_tokens(chars),
            estimated: true,
            ..Usage::default()
        };
        let base64 = call.request.rest.get("encoding_format").and_then(|f| f.as_str()) == Some("base64");
        let body = gemini_to_openai::embeddings_response(vectors, call.model.as_str(), base64, usage.input.0);
        Ok(Complete {
            body,
            usage: Some(usage),
        })
    }

    /// Sends a request and reads its whole JSON answer.
    async fn call<T: DeserializeOwned>(
        &self,
        url: &str,
        body: &impl serde::Serialize,
        deadline: Instant,
    ) -> Result<T, ProviderError> {
        let resp = self.send(url, body).await?;
        if !resp.status().is_success() {
            return Err(normalize(
                error_from_response(resp, deadline, self.api_key.as_ref()).await,
            ));
        }
        parse_answer(&read_body(resp, MAX_UPSTREAM_BODY, deadline).await?)
    }

    async fn send(&self, url: &str, body: &impl serde::Serialize) -> Result<Response, ProviderError> {
        let mut request = client::post_json(&client::uri(url)?, body)?;
        if let Some(key) = &self.api_key {
            let mut value = HeaderValue::from_str(key.expose())
                .map_err(|_| ProviderError::Connect("the API key is not a valid HTTP header value".into()))?;
            value.set_sensitive(true);
            request.headers_mut().insert("x-goog-api-key", value);
        }
        self.client.send(request).await
    }
}

/// A whole Gemini answer (`generateContent`, `embedContent`, …) as its wire type.
pub fn parse_answer<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ProviderError::InvalidResponse(format!("the body is not a gemini answer: {e}")))
}

/// A `generateContent` answer as an OpenAI chat completion with its usage; `model`, `created` and
/// `fallback_id` as for [`gemini_to_openai::response`].
pub fn complete_answer(
    answer: gemini::GenerateContentResponse,
    model: &str,
    created: u64,
    fallback_id: &str,
) -> Result<Complete, ProviderError> {
    let completion = gemini_to_openai::response(answer, model, created, fallback_id)?;
    Complete::encode(&completion)
}

/// The OpenAI chunks of a `streamGenerateContent?alt=sse` body, which ends when the connection
/// closes; the other arguments as for [`gemini_to_openai::stream::Translator::new`].
pub fn translate_body(
    body: impl BodyStream,
    deadline: Instant,
    wants_usage: bool,
    created: u64,
    model: &str,
    fallback_id: &str,
) -> ChunkStream {
    let events = sse_events_until_close(body, deadline);
    translate_stream(
        events,
        gemini_to_openai::stream::Translator::new(wants_usage, created, model, fallback_id),
    )
}

/// The model id in a URL: Gemini's own names may carry a `models/` prefix.
fn model_id(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

/// An id for an answer that carries no `responseId`: unique within this process.
pub(super) fn fallback_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("gemini-{nanos:x}-{n}")
}

/// A request Gemini cannot take, as the 400 the client gets.
fn unsupported(e: Untranslatable) -> ProviderError {
    ProviderError::Unsupported(format!("this request cannot be sent to a gemini backend: {e}"))
}

/// Rewrites a Google error body (an object, or an array of one) into OpenAI's shape
/// ([`gemini_to_openai::error`]), keeping the HTTP status and `Retry-After`.
pub fn normalize(error: ProviderError) -> ProviderError {
    let ProviderError::Status {
        status,
        retry_after,
        body,
    } = error
    else {
        return error;
    };
    let value = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(mut items)) => items.pop(),
        other => other.ok(),
    };
    let parsed = value
        .filter(serde_json::Value::is_object)
        .and_then(|v| serde_json::from_value::<gemini::ErrorBody>(v).ok())
        .map(|b| b.error);
    let mut error = parsed.unwrap_or_else(|| gemini::ErrorObject {
        code: status.as_u16(),
        message: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
        status: String::new(),
        details: Vec::new(),
    });
    // The HTTP status is the authority; the body's code only repeats it.
    error.code = status.as_u16();
    gemini_to_openai::error(&error, retry_after)
}
