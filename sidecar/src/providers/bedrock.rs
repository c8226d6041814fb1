//! Amazon Bedrock upstreams through the Converse API: `POST /model/{modelId}/converse` and, streamed,
//! `/model/{modelId}/converse-stream`, whose answer is a binary event stream ([`frames`]). OpenAI
//! requests are translated to Converse and the answers back (`translate::{openai_to_bedrock,
//! bedrock_to_openai}`); this module is the transport: URLs, SigV4 signing ([`sign`]),
//! credentials ([`credentials`], [`sts`]), reading answers and the upstream's errors.
//!
//! An answer calling the credentials expired (403 `ExpiredTokenException`, or 401) makes
//! temporary credentials be fetched again, and the request is sent once more. Converse has no
//! embeddings and no legacy completions: those are `unsupported_for_backend`.

pub mod credentials;
pub mod frames;
pub mod sign;
pub mod sts;
#[cfg(test)]
mod tests;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

use aws_credential_types::Credentials;
use bytes::Bytes;
use http::StatusCode;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sluice_crds::{ApiKey, Backend};
use tokio::time::Instant;

use self::credentials::{Cache, Source};
use super::{
    BodyStream, ChatCall, ChunkStream, Complete, EmbeddingsCall, MAX_ERROR_BODY, MAX_UPSTREAM_BODY, ProviderError,
    Reply, body_stream,
    client::{self, Response, UpstreamClient},
    read_body, redact, retry_after, translate_stream, unix_now,
};
use crate::{
    formats::{
        bedrock::{ConverseResponse, ErrorBody},
        openai::Untranslatable,
    },
    translate::{bedrock_to_openai, openai_to_bedrock},
};

/// The signing name of Bedrock's runtime API.
const SERVICE: &str = "bedrock";
/// What a model id may keep unescaped in a URL path: RFC 3986's unreserved characters.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Why no AWS credentials could be had; never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bedrock credentials: {0}")]
pub struct CredentialsError(pub String);

/// A Bedrock runtime endpoint in one region.
#[derive(Debug)]
pub struct Bedrock {
    client: UpstreamClient,
    endpoint: String,
    region: String,
    credentials: Cache,
}

impl Bedrock {
    /// An upstream for `backend` (its `bedrock` settings and `baseUrl`); `secret` is its
    /// credentials file, if it names one; the pod's identity is read from the environment and
    /// exchanged with `identity_client`, which carries none of the backend's extra headers.
    pub fn new(
        backend: &Backend,
        secret: Option<ApiKey>,
        client: UpstreamClient,
        identity_client: reqwest::Client,
    ) -> Self {
        let (region, profile) = match &backend.bedrock {
            Some(spec) => (spec.region.clone(), spec.profile.clone()),
            None => (String::new(), None),
        };
        let source = if region.is_empty() {
            Source::Unavailable(CredentialsError("the backend has no bedrock settings (region)".into()))
        } else {
            Source::resolve(secret.as_ref(), profile.as_deref(), &region, |name| {
                std::env::var(name).ok()
            })
        };
        if let Source::Unavailable(e) = &source {
            tracing::warn!(backend = %backend.name, error = %e, "bedrock backend has no usable credentials");
        }
        let endpoint = match backend.base_url.as_deref() {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://bedrock-runtime.{region}.amazonaws.com"),
        };
        Self {
            credentials: Cache::new(source, identity_client),
            client,
            endpoint,
            region,
        }
    }

    /// Sends a chat request as `converse` or, streamed, `converse-stream`.
    pub async fn chat(&self, call: &ChatCall<'_>) -> Result<Reply, ProviderError> {
        let request = openai_to_bedrock::request(call.request).map_err(unsupported)?;
        let body = serde_json::to_vec(&request)
            .map_err(|e| ProviderError::Unsupported(format!("the request could not be encoded: {e}")))?;
        let model = call.model.as_str();
        let created = unix_now();
        let id = answer_id();
        let stream = call.request.is_stream();
        let url = converse_url(&self.endpoint, model, stream);
        let (resp, used) = self.send(&url, Bytes::from(body), call.deadline).await?;
        if !resp.status().is_success() {
            return Err(self.error(resp, call.deadline, &used).await);
        }
        if !stream {
            let bytes = read_body(resp, MAX_UPSTREAM_BODY, call.deadline).await?;
            let answer: ConverseResponse = parse_answer(&bytes)?;
            let completion = bedrock_to_openai::response(answer, model, created, &id);
            return Complete::encode(&completion).map(Reply::Complete);
        }
        let wants_usage = call.request.wants_stream_usage();
        Ok(Reply::Stream(translate_body(
            body_stream(resp),
            call.deadline,
            wants_usage,
            created,
            model,
            &id,
        )))
    }

    /// Converse has no embeddings.
    pub async fn embeddings(&self, call: &EmbeddingsCall<'_>) -> Result<Complete, ProviderError> {
        Err(ProviderError::Unsupported(format!(
            "model {:?} is served by a bedrock backend, which speaks the Converse API; it has no embeddings",
            call.request.model
        )))
    }

    /// Signs and sends a request; once more with fresh credentials when the answer says they
    /// expired. Returns the answer and the credentials it was sent with.
    async fn send(&self, url: &str, body: Bytes, deadline: Instant) -> Result<(Response, Credentials), ProviderError> {
        let credentials = self.credentials(deadline).await?;
        let resp = self.attempt(url, body.clone(), &credentials).await?;
        if !(self.credentials.refreshable() && expired(&resp)) {
            return Ok((resp, credentials));
        }
        tracing::debug!("bedrock called the credentials expired; fetching new ones and retrying once");
        self.credentials.invalidate(&credentials);
        let credentials = self.credentials(deadline).await?;
        let resp = self.attempt(url, body, &credentials).await?;
        Ok((resp, credentials))
    }

    async fn credentials(&self, deadline: Instant) -> Result<Credentials, ProviderError> {
        tokio::time::timeout_at(deadline, self.credentials.get(SystemTime::now()))
            .await
            .map_err(|_| ProviderError::Timeout(super::TimeoutPhase::FirstByte))?
            .map_err(|e| ProviderError::Connect(e.to_string()))
    }

    async fn attempt(&self, url: &str, body: Bytes, credentials: &Credentials) -> Result<Response, ProviderError> {
        let url = http::Uri::try_from(url)
            .map_err(|e| ProviderError::Connect(format!("the bedrock URL is not valid: {e}")))?;
        if url.scheme().is_none() || url.authority().is_none() {
            return Err(ProviderError::Connect(format!(
                "the bedrock URL is not valid: {url} is not absolute"
            )));
        }
        let mut request = client::post(&url, body)?;
        sign::sign(&mut request, credentials, &self.region, SERVICE, SystemTime::now())
            .map_err(|e| ProviderError::Connect(e.to_string()))?;
        // The client adds the trace context after signing: outside the signed headers, as AWS
        // allows; so are the backend's extra headers, as before.
        self.client.send(request).await
    }

    /// A Bedrock error answer as the sidecar's, with every credential blanked out of its text.
    async fn error(&self, resp: Response, deadline: Instant, used: &Credentials) -> ProviderError {
        let status = resp.status();
        let kind = error_type(&resp).unwrap_or_default();
        let retry_after = retry_after(resp.headers(), jiff::Timestamp::now());
        let body = read_body(resp, MAX_ERROR_BODY, deadline).await.unwrap_or_default();
        let mut body = redact(&body, used.secret_access_key());
        if let Some(token) = used.session_token() {
            body = redact(&body, token);
        }
        let message = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(parsed) if !parsed.message.is_empty() => parsed.message,
            _ => String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
        };
        bedrock_to_openai::error(Some(status), &kind, &message, retry_after)
    }
}

/// The URL of `converse` (or `converse-stream`) for `model`, which may be a model id, an
/// inference profile id or an ARN: percent-encoded whole into one path segment.
pub fn converse_url(endpoint: &str, model: &str, stream: bool) -> String {
    let model = utf8_percent_encode(model, PATH_SEGMENT);
    let method = if stream { "converse-stream" } else { "converse" };
    format!("{endpoint}/model/{model}/{method}")
}

/// The exception's name from `x-amzn-errortype` (`ThrottlingException:http://…`).
fn error_type(resp: &Response) -> Option<String> {
    let value = resp.headers().get("x-amzn-errortype")?.to_str().ok()?;
    Some(value.split(':').next().unwrap_or(value).to_owned())
}

/// Whether an answer says the credentials it was sent with expired.
fn expired(resp: &Response) -> bool {
    let status = resp.status();
    status == StatusCode::UNAUTHORIZED
        || (status == StatusCode::FORBIDDEN && error_type(resp).is_some_and(|kind| kind == "ExpiredTokenException"))
}

/// A `converse` answer as its wire type.
pub fn parse_answer(bytes: &[u8]) -> Result<ConverseResponse, ProviderError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ProviderError::InvalidResponse(format!("the body is not a bedrock converse answer: {e}")))
}

/// The OpenAI chunks of a `converse-stream` body; the other arguments as for
/// [`bedrock_to_openai::stream::Translator::new`].
pub fn translate_body(
    body: impl BodyStream,
    deadline: Instant,
    wants_usage: bool,
    created: u64,
    model: &str,
    id: &str,
) -> ChunkStream {
    translate_stream(
        frames::events(body, deadline),
        bedrock_to_openai::stream::Translator::new(wants_usage, created, model, id),
    )
}

/// An id for an answer (Converse gives none): unique within this process.
fn answer_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("chatcmpl-bedrock-{nanos:x}-{n}")
}

/// A request Converse cannot take, as the 400 the client gets.
fn unsupported(e: Untranslatable) -> ProviderError {
    ProviderError::Unsupported(format!("this request cannot be sent to a bedrock backend: {e}"))
}
