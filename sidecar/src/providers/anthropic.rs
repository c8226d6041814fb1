//! Anthropic upstreams (the Messages API): OpenAI requests are translated to Anthropic's format
//! and the answers, streamed or whole, back to OpenAI's (`translate::{openai_to_anthropic,
//! anthropic_to_openai}`); this module is the transport: the URL, the headers, reading the
//! answer and its events, and the upstream's errors. Anthropic has no embeddings API.

#[cfg(test)]
mod tests;

use http::HeaderValue;
use sluice_crds::ApiKey;

use super::{
    BodyStream, ChatCall, ChunkStream, Complete, EmbeddingsCall, MAX_UPSTREAM_BODY, ProviderError, Reply, body_stream,
    client::{self, Response, UpstreamClient},
    error_from_response, read_body, sse_events, translate_stream, unix_now,
};
use crate::{
    formats::{anthropic, openai::Untranslatable},
    sse::SseEvent,
    translate::{anthropic_to_openai, openai_to_anthropic},
};

/// The API version every request names; the format this module speaks.
pub const API_VERSION: &str = "2023-06-01";

/// An Anthropic upstream at one API root.
#[derive(Debug)]
pub struct Anthropic {
    client: UpstreamClient,
    /// Parsed once; a base URL that is no URL fails every call.
    messages_url: Result<http::Uri, ProviderError>,
    count_tokens_url: Result<http::Uri, ProviderError>,
    api_key: Option<ApiKey>,
}

impl Anthropic {
    /// An upstream at `base_url` (e.g. `https://api.anthropic.com`), where `/v1/messages` is.
    pub fn new(base_url: &str, api_key: Option<ApiKey>, client: UpstreamClient) -> Self {
        let base = base_url.trim_end_matches('/');
        Self {
            client,
            messages_url: client::uri(&format!("{base}/v1/messages")),
            count_tokens_url: client::uri(&format!("{base}/v1/messages/count_tokens")),
            api_key,
        }
    }

    /// Sends a chat request as a Messages request, streaming or not.
    pub async fn chat(&self, call: &ChatCall<'_>) -> Result<Reply, ProviderError> {
        let body = openai_to_anthropic::request(call.request, call.model.as_str()).map_err(unsupported)?;
        let resp = self.send(&body).await?;
        if !resp.status().is_success() {
            return Err(normalize(
                error_from_response(resp, call.deadline, self.api_key.as_ref()).await,
            ));
        }
        let created = unix_now();
        if !call.request.is_stream() {
            let bytes = read_body(resp, MAX_UPSTREAM_BODY, call.deadline).await?;
            return parse_message(&bytes, created).map(Reply::Complete);
        }
        let wants_usage = call.request.wants_stream_usage();
        Ok(Reply::Stream(translate_body(
            body_stream(resp),
            call.deadline,
            wants_usage,
            created,
        )))
    }

    /// Anthropic has no embeddings API: a clear refusal instead of a confusing upstream 404.
    pub async fn embeddings(&self, call: &EmbeddingsCall<'_>) -> Result<Complete, ProviderError> {
        Err(ProviderError::Unsupported(format!(
            "model {:?} is served by an anthropic backend, and Anthropic has no embeddings API; \
             route embeddings models to an openai, openai-compatible, gemini or simulator backend",
            call.request.model
        )))
    }

    /// Asks Anthropic to count a request's prompt tokens, the model rewritten to `model`.
    pub async fn count_tokens(
        &self,
        request: &anthropic::CountTokensRequest,
        model: &str,
        deadline: tokio::time::Instant,
    ) -> Result<anthropic::TokenCount, ProviderError> {
        let mut body = request.clone();
        model.clone_into(&mut body.model);
        let resp = self.send_to(&self.count_tokens_url, &body).await?;
        if !resp.status().is_success() {
            return Err(normalize(
                error_from_response(resp, deadline, self.api_key.as_ref()).await,
            ));
        }
        let bytes = read_body(resp, MAX_UPSTREAM_BODY, deadline).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ProviderError::InvalidResponse(format!("the body is not a token count: {e}")))
    }

    async fn send(&self, body: &anthropic::MessagesRequest) -> Result<Response, ProviderError> {
        self.send_to(&self.messages_url, body).await
    }

    async fn send_to(
        &self,
        url: &Result<http::Uri, ProviderError>,
        body: &impl serde::Serialize,
    ) -> Result<Response, ProviderError> {
        let mut request = client::post_json(url.as_ref().map_err(Clone::clone)?, body)?;
        let headers = request.headers_mut();
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        if let Some(key) = &self.api_key {
            let mut value = HeaderValue::from_str(key.expose())
                .map_err(|_| ProviderError::Connect("the API key is not a valid HTTP header value".into()))?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        self.client.send(request).await
    }
}

/// A whole Messages answer as an OpenAI chat completion made at `created`, with its usage.
pub fn parse_message(bytes: &[u8], created: u64) -> Result<Complete, ProviderError> {
    let message: anthropic::MessagesResponse = serde_json::from_slice(bytes)
        .map_err(|e| ProviderError::InvalidResponse(format!("the body is not an anthropic message: {e}")))?;
    let completion = anthropic_to_openai::response(message, created);
    Complete::encode(&completion)
}

/// The OpenAI chunks of a streamed Messages answer's body (server-sent events up to
/// `message_stop` or `error`) made at `created`; `wants_usage` as the client asked.
pub fn translate_body(
    body: impl BodyStream,
    deadline: tokio::time::Instant,
    wants_usage: bool,
    created: u64,
) -> ChunkStream {
    let events = sse_events(body, deadline, is_last);
    translate_stream(
        events,
        anthropic_to_openai::stream::Translator::new(wants_usage, created),
    )
}

/// Anthropic names every event; the stream is over at `message_stop` or an `error`.
fn is_last(event: &SseEvent) -> bool {
    matches!(event.event.as_deref(), Some("message_stop" | "error"))
}

/// A request Anthropic cannot take, as the 400 the client gets.
fn unsupported(e: Untranslatable) -> ProviderError {
    ProviderError::Unsupported(format!("this request cannot be sent to an anthropic backend: {e}"))
}

/// Rewrites an Anthropic error body into OpenAI's shape ([`anthropic_to_openai::error_body`]),
/// keeping status and `Retry-After`.
pub fn normalize(error: ProviderError) -> ProviderError {
    let ProviderError::Status {
        status,
        retry_after,
        body,
    } = error
    else {
        return error;
    };
    let (kind, message) = match serde_json::from_slice::<anthropic::ErrorBody>(&body) {
        Ok(parsed) => (parsed.error.kind, parsed.error.message),
        // Not Anthropic's shape (a proxy's page, say): keep a bounded excerpt as the message.
        Err(_) => (
            anthropic::error_type_for(status.as_u16()).to_owned(),
            String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
        ),
    };
    ProviderError::Status {
        status,
        retry_after,
        body: anthropic_to_openai::error_body(status, &kind, &message),
    }
}
