//! Where a Bedrock backend's AWS credentials come from, and their cache. A backend with
//! `credentialsRef` has a shared-credentials file from its Secret (read once, strictly); one
//! without uses the pod's identity: a web identity token exchanged at STS (IRSA) or EKS Pod
//! Identity's credentials endpoint. Temporary credentials are kept until shortly before they
//! expire and fetched again by one caller while the others wait on the same fetch (no lock is
//! held across an await).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use aws_credential_types::Credentials;
use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use sluice_crds::ApiKey;

use super::{CredentialsError, sts};

/// Temporary credentials are fetched again this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// The profile read from a credentials file unless the backend names one.
const DEFAULT_PROFILE: &str = "default";

/// How a backend gets its credentials.
#[derive(Debug, Clone)]
pub enum Source {
    /// Keys from the Secret's credentials file.
    Static(Credentials),
    /// The pod's web identity token, exchanged at STS (`AssumeRoleWithWebIdentity`).
    WebIdentity(sts::WebIdentity),
    /// EKS Pod Identity's (or ECS's) container credentials endpoint.
    Container(sts::ContainerEndpoint),
    /// None could be found or read; every call fails with this.
    Unavailable(CredentialsError),
}

impl Source {
    /// The source for a backend: the Secret's credentials file (`secret`, its `profile`) when it
    /// has one, else the pod's identity as the environment (`env`) describes it.
    pub fn resolve(
        secret: Option<&ApiKey>,
        profile: Option<&str>,
        region: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        if let Some(secret) = secret {
            let profile = profile.unwrap_or(DEFAULT_PROFILE);
            return match parse_credentials_file(secret.expose(), profile) {
                Ok(credentials) => Self::Static(credentials),
                Err(e) => Self::Unavailable(e),
            };
        }
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let (Some(role_arn), Some(token_file)) = (env("AWS_ROLE_ARN"), env("AWS_WEB_IDENTITY_TOKEN_FILE")) {
            let endpoint = env("AWS_ENDPOINT_URL_STS")
                .or_else(|| env("AWS_ENDPOINT_URL"))
                .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
            return Self::WebIdentity(sts::WebIdentity {
                endpoint,
                role_arn,
                token_file: PathBuf::from(token_file),
                session_name: env("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "sluice-sidecar".into()),
            });
        }
        if let Some(url) = env("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            return Self::Container(sts::ContainerEndpoint {
                url,
                token_file: env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
                token: env("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(ApiKey::new),
            });
        }
        Self::Unavailable(CredentialsError(
            "the backend has no credentialsRef and the pod has no AWS identity (AWS_ROLE_ARN with \
             AWS_WEB_IDENTITY_TOKEN_FILE, or AWS_CONTAINER_CREDENTIALS_FULL_URI)"
                .into(),
        ))
    }
}

/// The keys of `profile` in an AWS shared-credentials file. Strict: every line is a comment, a
/// `[section]` or a `key = value` in a section; the profile must exist with both keys. Errors
/// name the profile and the line, never a value.
pub fn parse_credentials_file(text: &str, profile: &str) -> Result<Credentials, CredentialsError> {
    let mut section: Option<&str> = None;
    let mut found = false;
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            let name = name.strip_prefix("profile ").map_or(name, str::trim);
            section = Some(name);
            found |= name == profile;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(CredentialsError(format!(
                "line {} of the credentials file is neither a [profile] header nor key = value",
                n + 1
            )));
        };
        let Some(current) = section else {
            return Err(CredentialsError(format!(
                "line {} of the credentials file comes before any [profile] header",
                n + 1
            )));
        };
        if current != profile {
            continue;
        }
        let value = value.trim().to_owned();
        match key.trim() {
            "aws_access_key_id" => key_id = Some(value),
            "aws_secret_access_key" => secret = Some(value),
            "aws_session_token" => token = Some(value),
            _ => {}
        }
    }
    if !found {
        return Err(CredentialsError(format!(
            "the credentials file has no [{profile}] profile"
        )));
    }
    let missing = |what: &str| CredentialsError(format!("profile [{profile}] of the credentials file lacks {what}"));
    let key_id = key_id
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("aws_access_key_id"))?;
    let secret = secret
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("aws_secret_access_key"))?;
    Ok(Credentials::new(
        key_id,
        secret,
        token.filter(|t| !t.is_empty()),
        None,
        "sluice-secret",
    ))
}

type Fetch = Shared<BoxFuture<'static, Result<Credentials, CredentialsError>>>;

/// A backend's credentials: the source, and for temporary ones the last fetched and the fetch
/// under way.
#[derive(Debug)]
pub struct Cache {
    source: Source,
    client: reqwest::Client,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Option<Credentials>,
    fetching: Option<Fetch>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("current", &self.current)
            .field("fetching", &self.fetching.is_some())
            .finish()
    }
}

impl Cache {
    /// A cache over `source`, fetching through `client`.
    pub fn new(source: Source, client: reqwest::Client) -> Self {
        Self {
            source,
            client,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether the credentials can be fetched anew (they are temporary).
    pub fn refreshable(&self) -> bool {
        matches!(self.source, Source::WebIdentity(_) | Source::Container(_))
    }

    /// Credentials valid at `now` for a while yet: cached, or fetched (once for all callers).
    pub async fn get(&self, now: SystemTime) -> Result<Credentials, CredentialsError> {
        let fetch = match &self.source {
            Source::Static(credentials) => return Ok(credentials.clone()),
            Source::Unavailable(e) => return Err(e.clone()),
            Source::WebIdentity(_) | Source::Container(_) => {
                let Ok(mut state) = self.state.lock() else {
                    return Err(CredentialsError("the credentials cache is poisoned".into()));
                };
                if let Some(current) = state.current.as_ref().filter(|c| fresh(c, now)) {
                    return Ok(current.clone());
                }
                state
                    .fetching
                    .get_or_insert_with(|| self.fetch().boxed().shared())
                    .clone()
            }
        };
        let result = fetch.await;
        if let Ok(mut state) = self.state.lock() {
            state.fetching = None;
            if let Ok(credentials) = &result {
                state.current = Some(credentials.clone());
            }
        }
        result
    }

    /// Forgets `used` after the upstream called it expired, so that the next [`Cache::get`] fetches.
    pub fn invalidate(&self, used: &Credentials) {
        if let Ok(mut state) = self.state.lock()
            && state
                .current
                .as_ref()
                .is_some_and(|c| c.access_key_id() == used.access_key_id())
        {
            state.current = None;
        }
    }

    fn fetch(&self) -> impl Future<Output = Result<Credentials, CredentialsError>> + Send + 'static {
        let source = self.source.clone();
        let client = self.client.clone();
        async move {
            match source {
                Source::WebIdentity(identity) => sts::assume_role_with_web_identity(&client, &identity).await,
                Source::Container(endpoint) => sts::container_credentials(&client, &endpoint).await,
                Source::Static(credentials) => Ok(credentials),
                Source::Unavailable(e) => Err(e),
            }
        }
    }
}

/// Whether credentials are good for a while yet at `now`.
fn fresh(credentials: &Credentials, now: SystemTime) -> bool {
    credentials.expiry().is_none_or(|expiry| expiry > now + REFRESH_MARGIN)
}

/// Shares a cache between a backend's calls.
pub type SharedCache = Arc<Cache>;

#[cfg(test)]
mod tests;
