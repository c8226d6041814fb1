//! Access tokens for Vertex AI: from a service-account key (the JWT-bearer grant at the key's
//! `token_uri`) or, without one, from the metadata server, which hands out the pod's workload
//! identity (GKE Workload Identity). A token is cached and fetched anew shortly before it
//! expires; one fetch at a time (callers arriving meanwhile wait for the same answer), and no
//! lock is held while it runs. A token Vertex refused is dropped so the next call fetches another.
//! Backends with the same identity (the same key, or the metadata server) share one source, and
//! a config reload keeps it: the token belongs to the identity, not to a backend of one config.
//!
//! Tokens never reach logs or errors: [`AccessToken`]'s `Debug` hides it, and a token endpoint's
//! refusal is reported by its `error` and `error_description` fields only.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, Weak},
    time::Duration,
};

use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

#[cfg(test)]
mod tests;

use super::service_account::{KeyError, ServiceAccount};
use crate::providers::{MAX_ERROR_BODY, read_identity_body};

/// The environment variable naming the metadata server's host (and port), as Google's client
/// libraries read it.
pub const METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";
/// The metadata server's host when the environment names none.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// The metadata server's token path for the pod's (or VM's) default service account.
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// How long before expiry a token is replaced, at most.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// The largest token answer read.
const MAX_TOKEN_ANSWER: usize = 64 << 10;

/// An OAuth 2.0 access token; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    /// The token itself, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A token made up by a test.
    #[cfg(test)]
    pub fn for_tests(token: &str) -> Self {
        Self(token.into())
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint could not be reached, or did not answer in time.
    #[error("could not reach {endpoint} for a Vertex AI access token: {reason}")]
    Unreachable {
        /// The token endpoint or metadata server.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The endpoint refused to issue a token.
    #[error("{endpoint} refused to issue a Vertex AI access token ({status}): {reason}")]
    Refused {
        /// The token endpoint or metadata server.
        endpoint: String,
        /// Its HTTP status.
        status: u16,
        /// Its `error` and `error_description`, or why there were none.
        reason: String,
    },
    /// The answer was no token.
    #[error("{endpoint} answered something that is not an access token")]
    InvalidAnswer {
        /// The token endpoint or metadata server.
        endpoint: String,
    },
    /// The key could not sign the request.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Where tokens come from.
#[derive(Debug)]
pub enum Origin {
    /// The JWT-bearer grant with this key.
    ServiceAccount(ServiceAccount),
    /// The metadata server at this token URL.
    Metadata(String),
}

impl Origin {
    /// The metadata server's token URL for `host` (`GCE_METADATA_HOST`, or the default).
    pub fn metadata(host: Option<&str>) -> Self {
        let host = host.filter(|h| !h.is_empty()).unwrap_or(DEFAULT_METADATA_HOST);
        Self::Metadata(format!("http://{host}{METADATA_TOKEN_PATH}"))
    }

    fn endpoint(&self) -> &str {
        match self {
            Self::ServiceAccount(account) => account.token_uri(),
            Self::Metadata(url) => url,
        }
    }
}

/// A token endpoint's answer (the metadata server's has the same shape).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
    #[serde(default)]
    token_type: Option<String>,
}

/// A token endpoint's refusal (RFC 6749 §5.2).
#[derive(Deserialize)]
struct Refusal {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// A token in hand and when to replace it.
#[derive(Debug, Clone)]
struct Held {
    token: AccessToken,
    refresh_at: Instant,
}

type Fetch = Shared<BoxFuture<'static, Result<AccessToken, TokenError>>>;

#[derive(Default)]
struct State {
    current: Option<Held>,
    fetching: Option<Fetch>,
}

struct Inner {
    client: reqwest::Client,
    origin: Origin,
    state: Mutex<State>,
}

/// A cached source of access tokens.
#[derive(Clone)]
pub struct TokenSource(Arc<Inner>);

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("origin", &self.0.origin)
            .finish_non_exhaustive()
    }
}

/// When a token that lives `lifetime` from `obtained` is replaced: [`REFRESH_MARGIN`] before it
/// expires, or half-way for a token too short-lived for that margin.
pub fn refresh_at(obtained: Instant, lifetime: Duration) -> Instant {
    obtained + lifetime - REFRESH_MARGIN.min(lifetime / 2)
}

/// The sources in use, by identity: a fingerprint of the key, or the metadata server's URL.
fn registry() -> &'static Mutex<HashMap<String, Weak<Inner>>> {
    static SOURCES: OnceLock<Mutex<HashMap<String, Weak<Inner>>>> = OnceLock::new();
    SOURCES.get_or_init(Default::default)
}

impl TokenSource {
    /// A source fetching with `client` from `origin`.
    pub fn new(origin: Origin, client: reqwest::Client) -> Self {
        Self(Arc::new(Inner {
            client,
            origin,
            state: Mutex::new(State::default()),
        }))
    }

    /// The source for the identity `key_text` (a key file's text, `None` for the metadata
    /// server) names: the one already in use for it, else a new one from `origin`.
    pub fn shared(key_text: Option<&str>, origin: Origin, client: reqwest::Client) -> Self {
        let identity = match key_text {
            Some(text) => format!("key:{:x}", Sha256::digest(text.as_bytes())),
            None => format!("metadata:{}", origin.endpoint()),
        };
        let mut sources = registry().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(inner) = sources.get(&identity).and_then(Weak::upgrade) {
            return Self(inner);
        }
        // Forget the identities no backend uses any more.
        sources.retain(|_, source| source.strong_count() > 0);
        let source = Self::new(origin, client);
        sources.insert(identity, Arc::downgrade(&source.0));
        source
    }

    /// A token good for now: the cached one, or a fresh one fetched (by one caller, the others
    /// waiting for its answer) within `deadline`.
    pub async fn token(&self, deadline: Instant) -> Result<AccessToken, TokenError> {
        let fetch = {
            let mut state = self.0.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(held) = &state.current
                && Instant::now() < held.refresh_at
            {
                return Ok(held.token.clone());
            }
            match &state.fetching {
                Some(fetch) => fetch.clone(),
                None => {
                    let fetch = Self::fetch(Arc::clone(&self.0)).boxed().shared();
                    state.fetching = Some(fetch.clone());
                    fetch
                }
            }
        };
        // A caller that gives up leaves the fetch in the state, where the next one picks it up.
        tokio::time::timeout_at(deadline, fetch)
            .await
            .map_err(|_| TokenError::Unreachable {
                endpoint: self.0.origin.endpoint().to_owned(),
                reason: "no answer before the request's deadline".into(),
            })?
    }

    /// Forgets `token` (Vertex refused it), unless another has replaced it already.
    pub fn invalidate(&self, token: &AccessToken) {
        let mut state = self.0.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.current.as_ref().is_some_and(|held| &held.token == token) {
            state.current = None;
        }
    }

    /// Fetches a token and keeps it; the fetch in flight is cleared either way.
    async fn fetch(inner: Arc<Inner>) -> Result<AccessToken, TokenError> {
        let started = Instant::now();
        let result = request_token(&inner.client, &inner.origin).await;
        let mut state = inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.fetching = None;
        let (token, lifetime) = result?;
        state.current = Some(Held {
            token: token.clone(),
            refresh_at: refresh_at(started, lifetime),
        });
        Ok(token)
    }
}

/// The time now in Unix seconds: an assertion's `iat`.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Asks `origin` for a token; answers the token and how long it lives.
async fn request_token(client: &reqwest::Client, origin: &Origin) -> Result<(AccessToken, Duration), TokenError> {
    let endpoint = origin.endpoint();
    let unreachable = |e: reqwest::Error| TokenError::Unreachable {
        endpoint: endpoint.to_owned(),
        reason: crate::wire::with_causes(&e),
    };
    let request = match origin {
        Origin::ServiceAccount(account) => {
            let body = ServiceAccount::token_request_body(&account.assertion(unix_now())?);
            client
                .post(endpoint)
                .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
        }
        Origin::Metadata(url) => client.get(url).header("Metadata-Flavor", "Google"),
    };
    let resp = request.send().await.map_err(unreachable)?;
    let status = resp.status();
    // The token request has no deadline of its own; the caller's bounds the whole wait.
    let far = Instant::now() + Duration::from_secs(3600);
    let limit = if status.is_success() {
        MAX_TOKEN_ANSWER
    } else {
        MAX_ERROR_BODY
    };
    let body = read_identity_body(resp, limit, far)
        .await
        .map_err(|e| TokenError::Unreachable {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })?;
    if !status.is_success() {
        let reason = match serde_json::from_slice::<Refusal>(&body) {
            Ok(refusal) => match refusal.error_description {
                Some(description) => format!("{}: {description}", refusal.error),
                None => refusal.error,
            },
            Err(_) => "no OAuth error in the answer".into(),
        };
        return Err(TokenError::Refused {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            reason,
        });
    }
    parse_token_answer(&body).ok_or_else(|| TokenError::InvalidAnswer {
        endpoint: endpoint.to_owned(),
    })
}

/// A token answer's token and lifetime; `None` for anything else (a bearer token only).
pub fn parse_token_answer(body: &[u8]) -> Option<(AccessToken, Duration)> {
    let answer: TokenAnswer = serde_json::from_slice(body).ok()?;
    let bearer = answer
        .token_type
        .as_deref()
        .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
    (bearer && !answer.access_token.is_empty() && http::HeaderValue::from_str(&answer.access_token).is_ok()).then(
        || {
            (
                AccessToken(answer.access_token.into()),
                Duration::from_secs(answer.expires_in),
            )
        },
    )
}
