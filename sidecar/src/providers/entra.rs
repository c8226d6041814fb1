//! Microsoft Entra ID tokens for the pod's workload identity: the federated token Kubernetes
//! projects into the pod (`AZURE_FEDERATED_TOKEN_FILE`) is exchanged for an access token with the
//! client-credentials grant, as Azure's own SDKs do (`WorkloadIdentityCredential`).
//!
//! Decisions a reader may notice:
//! - The token file is read again at every exchange: the kubelet rotates it.
//! - A token is used until [`REFRESH_BEFORE`] its expiry (half its life for short-lived ones),
//!   then replaced; concurrent requests share one exchange (single flight), and no lock is held
//!   across an `.await`: the exchange is a shared future kept beside the cached token.
//! - A token the upstream rejects is forgotten only if it is still the cached one, so a burst of
//!   401s for one expired token causes one exchange, not one each.
//! - The exchange goes through a client without the backend's extra headers: they are meant for
//!   the backend (or the proxy in front of it), not for the identity provider.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture, future::Shared};
use sluice_crds::ApiKey;
use tokio::time::Instant;

use super::ProviderError;

/// The scope of Azure OpenAI (Cognitive Services) tokens.
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";
/// The authority used when `AZURE_AUTHORITY_HOST` is not set.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";
/// How long before its expiry a token is replaced.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// How long one exchange may take, answer included.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The assertion type of a federated (Kubernetes service-account) token.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Where and as whom tokens are asked for: the workload identity's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token endpoint, `{authority}{tenant}/oauth2/v2.0/token`.
    pub token_url: String,
    /// The application (client) id, `AZURE_CLIENT_ID`.
    pub client_id: String,
    /// The projected service-account token, `AZURE_FEDERATED_TOKEN_FILE`.
    pub token_file: PathBuf,
}

impl Identity {
    /// The identity from the variables the workload identity webhook sets; `env` reads one.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let need = |name: &str| {
            env(name).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                format!("auth entra-id needs {name} in the sidecar's environment (set by Azure workload identity)")
            })
        };
        let tenant = need("AZURE_TENANT_ID")?;
        let client_id = need("AZURE_CLIENT_ID")?;
        let token_file = PathBuf::from(need("AZURE_FEDERATED_TOKEN_FILE")?);
        let authority = env("AZURE_AUTHORITY_HOST").filter(|v| !v.trim().is_empty());
        let authority = authority.as_deref().unwrap_or(DEFAULT_AUTHORITY).trim();
        let slash = if authority.ends_with('/') { "" } else { "/" };
        Ok(Self {
            token_url: format!("{authority}{slash}{}/oauth2/v2.0/token", tenant.trim()),
            client_id: client_id.trim().to_owned(),
            token_file,
        })
    }
}

/// An access token and when to stop using it.
#[derive(Debug, Clone)]
struct Token {
    value: ApiKey,
    refresh_at: Instant,
}

/// The outcome of one exchange, shared by every request waiting on it.
type Exchange = Shared<BoxFuture<'static, Result<Token, ProviderError>>>;

#[derive(Default)]
struct State {
    token: Option<Token>,
    /// The exchange under way, with its number (to tell it from a later one).
    pending: Option<(u64, Exchange)>,
    exchanges: u64,
}

/// What time it is; tests turn it forward.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("token", &self.token)
            .field("exchanging", &self.pending.is_some())
            .finish()
    }
}

/// Access tokens for one identity and scope, cached and refreshed before they expire.
pub struct Tokens {
    client: reqwest::Client,
    identity: Result<Identity, String>,
    scope: &'static str,
    state: Mutex<State>,
    now: Clock,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The cached token is an `ApiKey`, whose `Debug` hides it; the rest is plain.
        f.debug_struct("Tokens")
            .field("identity", &self.identity)
            .field("scope", &self.scope)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens for `identity` (or why there is none, reported on every request) and `scope`,
    /// exchanged through `client`.
    pub fn new(client: reqwest::Client, identity: Result<Identity, String>, scope: &'static str) -> Arc<Self> {
        Self::with_clock(client, identity, scope, Arc::new(Instant::now))
    }

    /// Like [`Tokens::new`], telling time by `now`.
    pub fn with_clock(
        client: reqwest::Client,
        identity: Result<Identity, String>,
        scope: &'static str,
        now: Clock,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            identity,
            scope,
            state: Mutex::new(State::default()),
            now,
        })
    }

    /// A valid token: the cached one, or a fresh one from the token endpoint.
    pub async fn get(self: &Arc<Self>) -> Result<ApiKey, ProviderError> {
        let (number, exchange) = {
            let mut state = self.lock()?;
            if let Some(token) = &state.token
                && (self.now)() < token.refresh_at
            {
                return Ok(token.value.clone());
            }
            match &state.pending {
                Some(pending) => pending.clone(),
                None => {
                    state.exchanges += 1;
                    let this = Arc::clone(self);
                    let exchange = async move { this.exchange().await }.boxed().shared();
                    state.pending = Some((state.exchanges, exchange.clone()));
                    (state.exchanges, exchange)
                }
            }
        };
        let outcome = exchange.await;
        let mut state = self.lock()?;
        if state.pending.as_ref().is_some_and(|(n, _)| *n == number) {
            state.pending = None;
            if let Ok(token) = &outcome {
                state.token = Some(token.clone());
            }
        }
        outcome.map(|t| t.value)
    }

    /// Forgets `rejected` if it is still the cached token, so the next [`Tokens::get`] brings
    /// another (a token already replaced, or being replaced, is left alone); whether another
    /// try may succeed, which for a token is always so.
    pub fn reject(&self, rejected: &ApiKey) -> bool {
        if let Ok(mut state) = self.state.lock()
            && state.token.as_ref().is_some_and(|t| t.value == *rejected)
        {
            state.token = None;
        }
        true
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, ProviderError> {
        self.state
            .lock()
            .map_err(|_| ProviderError::Connect("entra-id token cache poisoned".into()))
    }

    /// One client-credentials exchange of the federated token for an access token.
    async fn exchange(&self) -> Result<Token, ProviderError> {
        let identity = self
            .identity
            .as_ref()
            .map_err(|why| ProviderError::Connect(why.clone()))?;
        let assertion = tokio::fs::read_to_string(&identity.token_file).await.map_err(|e| {
            ProviderError::Connect(format!(
                "entra-id: reading the federated token file {}: {e}",
                identity.token_file.display()
            ))
        })?;
        let form = form(&identity.client_id, assertion.trim(), self.scope);
        let asked = (self.now)();
        let resp = self
            .client
            .post(&identity.token_url)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| {
                ProviderError::Connect(format!("entra-id token endpoint: {}", crate::wire::with_causes(&e)))
            })?;
        let status = resp.status();
        let deadline = Instant::now() + EXCHANGE_TIMEOUT;
        let body = super::read_identity_body(resp, 64 << 10, deadline).await?;
        // The identity provider's refusals can quote the assertion: it never goes further.
        let body = super::redact(&body, assertion.trim());
        if !status.is_success() {
            return Err(refused(status, &body));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::InvalidResponse(format!("entra-id token endpoint answered no token: {e}")))?;
        let life = Duration::from_secs(answer.expires_in.0);
        let early = if life > REFRESH_BEFORE * 2 {
            REFRESH_BEFORE
        } else {
            life / 2
        };
        Ok(Token {
            value: ApiKey::new(answer.access_token),
            refresh_at: asked + life - early,
        })
    }
}

/// The form body of the exchange.
fn form(client_id: &str, assertion: &str, scope: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("client_assertion", assertion)
        .append_pair("client_assertion_type", JWT_BEARER)
        .append_pair("client_id", client_id)
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", scope)
        .finish()
}

/// A refused exchange as the client sees it: a 401 in OpenAI's error shape, with Entra's reason.
fn refused(status: http::StatusCode, body: &[u8]) -> ProviderError {
    let reason = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error_description").and_then(|d| d.as_str()).map(str::to_owned))
        .unwrap_or_else(|| format!("status {status}"));
    let message = format!("the sidecar's Entra ID token request was refused: {reason}");
    let body = serde_json::json!({"error": {"message": message, "type": "authentication_error", "code": "entra_token_refused"}});
    ProviderError::Status {
        status: http::StatusCode::UNAUTHORIZED,
        retry_after: None,
        body: bytes::Bytes::from(body.to_string()),
    }
}

/// The fields of a token answer the sidecar uses.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Seconds,
}

/// `expires_in`: a number, or (in some identity providers' answers) a string of one.
struct Seconds(u64);

impl<'de> serde::Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(Self(n)),
            Either::Text(t) => t.trim().parse().map(Self).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
#[path = "entra/tests.rs"]
mod tests;
