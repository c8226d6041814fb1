//! How an OpenAI-protocol upstream learns who calls: OpenAI's bearer key, a key in a header of
//! its own (Azure's `api-key`), or an Entra ID token for the pod's identity.

use std::sync::Arc;

use sluice_crds::ApiKey;

use super::super::{ProviderError, entra};

/// The credentials an OpenAI-protocol upstream is sent.
#[derive(Debug)]
pub enum Auth {
    /// None (a server that needs no key).
    None,
    /// `Authorization: Bearer <key>`.
    Bearer(ApiKey),
    /// The key as the value of a header of its own.
    Header(&'static str, ApiKey),
    /// `Authorization: Bearer <token>`, the token exchanged for the pod's identity.
    Entra(Arc<entra::Tokens>),
}

impl Auth {
    /// A bearer key, or none.
    pub fn bearer(key: Option<ApiKey>) -> Self {
        key.map_or(Self::None, Self::Bearer)
    }

    /// `request` with the credentials added, and the secret it now carries (to blank out of
    /// error bodies, and to name the token a 401 rejected).
    pub async fn apply(
        &self,
        mut request: http::Request<bytes::Bytes>,
    ) -> Result<(http::Request<bytes::Bytes>, Option<ApiKey>), ProviderError> {
        let (name, value, sent) = match self {
            Self::None => return Ok((request, None)),
            Self::Bearer(key) => (http::header::AUTHORIZATION, bearer(key)?, key.clone()),
            Self::Header(name, key) => (http::HeaderName::from_static(name), sensitive(key)?, key.clone()),
            Self::Entra(tokens) => {
                let token = tokens.get().await?;
                (http::header::AUTHORIZATION, bearer(&token)?, token)
            }
        };
        request.headers_mut().insert(name, value);
        Ok((request, Some(sent)))
    }

    /// After a 401 to a request that carried `sent`: whether one more try may succeed, because
    /// the token it carried has expired and another will be sent (keys do not change by trying).
    pub fn renew(&self, sent: &ApiKey) -> bool {
        match self {
            Self::Entra(tokens) => tokens.reject(sent),
            Self::None | Self::Bearer(_) | Self::Header(..) => false,
        }
    }
}

/// `Bearer <key>` as a header value treated as secret, as reqwest's `bearer_auth` made it.
fn bearer(key: &ApiKey) -> Result<http::HeaderValue, ProviderError> {
    let mut value = http::HeaderValue::from_str(&format!("Bearer {}", key.expose()))
        .map_err(|_| ProviderError::Connect("the API key is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A key as a header value that debug output and HTTP/2 header compression treat as secret.
fn sensitive(key: &ApiKey) -> Result<http::HeaderValue, ProviderError> {
    let mut value = http::HeaderValue::from_str(key.expose())
        .map_err(|_| ProviderError::Connect("the API key is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}
