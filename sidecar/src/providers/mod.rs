//! Upstream providers: one module per wire protocol behind one closed enum. A provider is the
//! transport (URLs, headers, auth, reading answers and their server-sent events, classifying
//! failures); what its answers mean in OpenAI's format is in `translate`.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
mod body;
pub mod client;
pub mod entra;
pub mod gemini;
pub mod openai;
pub mod simulator;
#[cfg(test)]
pub(crate) mod testing;
pub mod vertex;

use std::time::Duration;

use bytes::Bytes;
use sluice_crds::{ApiKey, AzureAuth, AzureSpec, Backend, ModelName, Provider};
use tokio::time::Instant;

pub use self::body::BodyStream;
use self::{
    body::{body_stream, read_body, read_identity_body, sse_events, sse_events_until_close, translate_stream},
    client::UpstreamClient,
};
use crate::formats::openai::{ChatRequest, CompletionsRequest, EmbeddingsRequest};
use crate::wire::Usage;
pub use crate::wire::{ChunkStream, Complete, ProviderError, Reply, StreamEvent, TimeoutPhase};

/// The largest upstream answer or single stream event the sidecar reads.
pub const MAX_UPSTREAM_BODY: usize = 64 << 20;
/// The largest upstream error body the sidecar keeps.
const MAX_ERROR_BODY: usize = 64 << 10;

/// A provider this build cannot call yet.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("provider {0:?} is not available in this version of the sidecar")]
pub struct UnsupportedProvider(pub Provider);

/// Why a backend's upstream cannot be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Its provider is not available.
    #[error(transparent)]
    Unsupported(#[from] UnsupportedProvider),
    /// Its Vertex AI settings or credentials are unusable.
    #[error(transparent)]
    Vertex(#[from] vertex::SetupError),
}

/// A configured upstream, ready to call.
#[derive(Debug)]
pub enum Upstream {
    /// OpenAI, OpenAI-compatible servers and Azure OpenAI.
    OpenAi(openai::OpenAi),
    /// Anthropic's Messages API.
    Anthropic(anthropic::Anthropic),
    /// Google's Gemini API.
    Gemini(gemini::Gemini),
    /// Google Vertex AI (Gemini and Claude models).
    Vertex(vertex::Vertex),
    /// Amazon Bedrock's Converse API.
    Bedrock(bedrock::Bedrock),
    /// The built-in simulator.
    Simulator(simulator::Simulator),
}

/// A chat call to one backend.
#[derive(Debug)]
pub struct ChatCall<'a> {
    /// The client's request.
    pub request: &'a ChatRequest,
    /// The backend's model name.
    pub model: &'a ModelName,
    /// When the whole request must be over.
    pub deadline: Instant,
}

/// An embeddings call to one backend.
#[derive(Debug)]
pub struct EmbeddingsCall<'a> {
    /// The client's request.
    pub request: &'a EmbeddingsRequest,
    /// The backend's model name.
    pub model: &'a ModelName,
    /// When the whole request must be over.
    pub deadline: Instant,
}

/// A legacy completions call to one backend.
#[derive(Debug)]
pub struct CompletionsCall<'a> {
    /// The client's request.
    pub request: &'a CompletionsRequest,
    /// The backend's model name.
    pub model: &'a ModelName,
    /// When the whole request must be over.
    pub deadline: Instant,
}

/// A Responses request passed through to OpenAI itself.
#[derive(Debug)]
pub struct ResponsesCall<'a> {
    /// The client's body as it came.
    pub body: &'a Bytes,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The backend's model name.
    pub model: &'a ModelName,
    /// When the whole request must be over.
    pub deadline: Instant,
}

impl Complete {
    /// A translated answer, encoded for the client, with its usage.
    fn encode(completion: &crate::formats::openai::ChatCompletion) -> Result<Self, ProviderError> {
        let body = serde_json::to_vec(completion)
            .map_err(|e| ProviderError::InvalidResponse(format!("the answer could not be encoded: {e}")))?;
        Ok(Self {
            body: Bytes::from(body),
            usage: completion.usage.as_ref().map(|u| u.to_usage()),
        })
    }
}

impl Upstream {
    /// Builds the upstream for a backend; `client` is the shared connection pool for its timeouts
    /// that adds its extra headers, `identity_client` the one for identity providers (token
    /// exchanges), which must not be sent the backend's headers.
    pub fn new(
        backend: &Backend,
        api_key: Option<ApiKey>,
        client: UpstreamClient,
        identity_client: reqwest::Client,
    ) -> Result<Self, UpstreamError> {
        let base_url = || {
            backend
                .base_url
                .as_deref()
                .or(backend.provider.default_base_url())
                .unwrap_or_default()
        };
        match backend.provider {
            Provider::Simulator => Ok(Self::Simulator(simulator::Simulator::new(
                backend.simulator.clone().unwrap_or_default(),
            ))),
            Provider::Openai | Provider::OpenaiCompatible => {
                Ok(Self::OpenAi(openai::OpenAi::new(base_url(), api_key, client)))
            }
            Provider::Anthropic => Ok(Self::Anthropic(anthropic::Anthropic::new(base_url(), api_key, client))),
            Provider::Gemini => Ok(Self::Gemini(gemini::Gemini::new(base_url(), api_key, client))),
            Provider::AzureOpenai => Ok(Self::OpenAi(azure::upstream(
                base_url(),
                // No settings: the v1 API with the key.
                &backend.azure.clone().unwrap_or(AzureSpec {
                    deployment: None,
                    api_version: None,
                    auth: AzureAuth::ApiKey,
                }),
                api_key,
                client,
                identity_client,
                |name| std::env::var(name).ok(),
            ))),
            Provider::Vertex => Ok(Self::Vertex(vertex::Vertex::for_backend(
                backend,
                api_key.as_ref(),
                client,
                identity_client,
            )?)),
            Provider::Bedrock => Ok(Self::Bedrock(bedrock::Bedrock::new(
                backend,
                api_key,
                client,
                identity_client,
            ))),
        }
    }

    /// Sends a chat request; returns once the answer (or its first stream event) is known.
    pub async fn chat(&self, call: &ChatCall<'_>) -> Result<Reply, ProviderError> {
        match self {
            Self::OpenAi(p) => p.chat(call).await,
            Self::Anthropic(p) => p.chat(call).await,
            Self::Gemini(p) => p.chat(call).await,
            Self::Vertex(p) => p.chat(call).await,
            Self::Bedrock(p) => p.chat(call).await,
            Self::Simulator(p) => p.chat(call).await,
        }
    }

    /// Sends a legacy completions request; only OpenAI-protocol servers have the endpoint.
    pub async fn completions(&self, call: &CompletionsCall<'_>) -> Result<Reply, ProviderError> {
        match self {
            Self::OpenAi(p) => p.completions(call).await,
            Self::Anthropic(_) | Self::Gemini(_) | Self::Vertex(_) | Self::Bedrock(_) | Self::Simulator(_) => {
                Err(ProviderError::Unsupported(format!(
                    "model {:?} is served by a backend without /v1/completions; legacy completions are served by \
                     openai, openai-compatible and azure-openai backends only",
                    call.request.model
                )))
            }
        }
    }

    /// Passes a Responses request through; only an OpenAI-protocol upstream has the API.
    pub async fn responses(&self, call: &ResponsesCall<'_>) -> Result<Reply, ProviderError> {
        match self {
            Self::OpenAi(p) => p.responses(call).await,
            Self::Anthropic(_) | Self::Gemini(_) | Self::Vertex(_) | Self::Bedrock(_) | Self::Simulator(_) => {
                Err(ProviderError::Unsupported(
                    "only openai and azure-openai backends take Responses requests as they are; this one is served \
                     translated"
                        .into(),
                ))
            }
        }
    }

    /// Sends an embeddings request.
    pub async fn embeddings(&self, call: &EmbeddingsCall<'_>) -> Result<Complete, ProviderError> {
        match self {
            Self::OpenAi(p) => p.embeddings(call).await,
            Self::Anthropic(p) => p.embeddings(call).await,
            Self::Gemini(p) => p.embeddings(call).await,
            Self::Vertex(p) => p.embeddings(call).await,
            Self::Bedrock(p) => p.embeddings(call).await,
            Self::Simulator(p) => p.embeddings(call).await,
        }
    }
}

/// Turns a non-success upstream response into an error, keeping a bounded body with the key
/// blanked out: some upstreams quote the key they were sent, and this body reaches clients and logs.
async fn error_from_response(resp: client::Response, deadline: Instant, key: Option<&ApiKey>) -> ProviderError {
    let status = resp.status();
    let retry_after = retry_after(resp.headers(), jiff::Timestamp::now());
    let body = read_body(resp, MAX_ERROR_BODY, deadline).await.unwrap_or_default();
    let body = match key {
        Some(key) => redact(&body, key.expose()),
        None => body,
    };
    ProviderError::Status {
        status,
        retry_after,
        body,
    }
}

/// The time now in Unix seconds: an answer's `created`.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Chunks already in hand as a stream, then the answer's usage for accounting.
pub fn replayed_stream(chunks: Vec<Bytes>, usage: Option<Usage>) -> ChunkStream {
    let events = chunks
        .into_iter()
        .map(StreamEvent::Data)
        .chain(usage.map(StreamEvent::Usage))
        .map(Ok);
    Box::pin(futures::stream::iter(events.collect::<Vec<_>>()))
}

/// How long an upstream asks to be left alone: OpenAI's and Azure's `retry-after-ms`, else
/// `Retry-After` as seconds (OpenAI-compatible servers send fractions) or as an HTTP date, else
/// when the exhausted one of its `x-ratelimit-reset-*` limits resets.
fn retry_after(headers: &http::HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(after) = header("retry-after-ms").and_then(seconds).map(|ms| ms / 1000) {
        return Some(after);
    }
    let Some(value) = header(http::header::RETRY_AFTER.as_str()) else {
        return ratelimit_reset(&header);
    };
    seconds(value).or_else(|| {
        let date = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
        // A date already past means "now".
        Some(Duration::try_from(date.duration_since(now)).unwrap_or(Duration::ZERO))
    })
}

/// The latest reset among the `x-ratelimit-reset-{requests,tokens}` limits that are used up
/// (their `x-ratelimit-remaining-*` is 0, or not given).
fn ratelimit_reset<'a>(header: &impl Fn(&str) -> Option<&'a str>) -> Option<Duration> {
    ["requests", "tokens"]
        .into_iter()
        .filter(|limit| header(&format!("x-ratelimit-remaining-{limit}")).is_none_or(|r| r == "0"))
        .filter_map(|limit| header(&format!("x-ratelimit-reset-{limit}")).and_then(reset_duration))
        .max()
}

/// A reset as OpenAI writes it (`1s`, `6m0s`, `250ms`, Go's duration format) or plain seconds.
fn reset_duration(text: &str) -> Option<Duration> {
    if let Some(plain) = seconds(text) {
        return Some(plain);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(number_end);
        let unit_end = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(number.parse::<f64>().ok()? * scale).ok()?;
        rest = next;
    }
    (!text.is_empty()).then_some(total)
}

/// A non-negative decimal `text` as that many seconds; `None` for anything else (the caller then
/// retries on its own schedule).
fn seconds(text: &str) -> Option<Duration> {
    match text.parse::<u64>() {
        Ok(whole) => Some(Duration::from_secs(whole)),
        Err(_) => Duration::try_from_secs_f64(text.parse::<f64>().ok()?).ok(),
    }
}

/// What stands in for a key an upstream quoted back.
const REDACTED: &[u8] = b"[redacted]";

/// `body` with every occurrence of `secret` replaced by [`REDACTED`].
fn redact(body: &Bytes, secret: &str) -> Bytes {
    let secret = secret.as_bytes();
    if secret.is_empty() || !body.windows(secret.len()).any(|w| w == secret) {
        return body.clone();
    }
    let mut out = Vec::with_capacity(body.len());
    let mut rest: &[u8] = body;
    while let Some(at) = rest.windows(secret.len()).position(|w| w == secret) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(REDACTED);
        rest = &rest[at + secret.len()..];
    }
    out.extend_from_slice(rest);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_quoted_in_an_error_body_is_blanked_everywhere_it_appears() {
        let body = Bytes::from_static(br#"{"error": {"message": "bad key sk-abc; sk-abc is revoked"}}"#);
        assert_eq!(
            redact(&body, "sk-abc"),
            Bytes::from_static(br#"{"error": {"message": "bad key [redacted]; [redacted] is revoked"}}"#)
        );
    }

    fn retry_after_of(headers: &[(&'static str, &'static str)]) -> Option<Duration> {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, http::HeaderValue::from_static(value));
        }
        let now: jiff::Timestamp = "2026-11-22T08:49:30Z".parse().unwrap();
        retry_after(&map, now)
    }

    #[test]
    fn retry_after_is_read_as_seconds_fractions_milliseconds_or_an_http_date() {
        assert_eq!(retry_after_of(&[("retry-after", "7")]), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after_of(&[("retry-after", " 1.5 ")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after_of(&[("retry-after", "Sun, 22 Nov 2026 08:49:37 GMT")]),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after_of(&[("retry-after", "Sun, 22 Nov 2026 08:00:00 GMT")]),
            Some(Duration::ZERO),
            "a date already past"
        );
        // OpenAI sends both; the finer one wins.
        assert_eq!(
            retry_after_of(&[("retry-after", "1"), ("retry-after-ms", "250")]),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn a_retry_after_that_is_no_duration_is_ignored_not_a_panic() {
        for value in ["-1", "NaN", "inf", "1e400", "soon", "", "Sun, 99 Nov 2026 08:49:37 GMT"] {
            let headers = [("retry-after", value), ("retry-after-ms", value)];
            let mut map = http::HeaderMap::new();
            for (name, value) in headers {
                map.insert(name, http::HeaderValue::from_str(value).unwrap());
            }
            assert_eq!(retry_after(&map, jiff::Timestamp::UNIX_EPOCH), None, "{value:?}");
        }
        assert_eq!(
            retry_after_of(&[("retry-after", "18446744073709551615")]),
            Some(Duration::from_secs(u64::MAX)),
            "huge but a duration: the circuit bounds the cool-down"
        );
    }

    #[test]
    fn without_retry_after_the_reset_of_the_used_up_limit_is_waited_for() {
        assert_eq!(
            retry_after_of(&[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-remaining-tokens", "1200"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ]),
            Some(Duration::from_secs(1)),
            "the tokens limit is not the one used up"
        );
        assert_eq!(
            retry_after_of(&[
                ("x-ratelimit-reset-requests", "250ms"),
                ("x-ratelimit-reset-tokens", "1m30s")
            ]),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after_of(&[("x-ratelimit-reset-tokens", "12")]),
            Some(Duration::from_secs(12))
        );
        assert_eq!(retry_after_of(&[("x-ratelimit-reset-tokens", "soon")]), None);
        assert_eq!(
            retry_after_of(&[("retry-after", "3"), ("x-ratelimit-reset-tokens", "1m")]),
            Some(Duration::from_secs(3)),
            "Retry-After wins"
        );
    }

    #[test]
    fn a_body_without_the_key_is_kept_as_it_is() {
        let body = Bytes::from_static(b"sk-ab");
        assert_eq!(redact(&body, "sk-abc"), body);
        assert_eq!(redact(&body, ""), body);
    }
}
