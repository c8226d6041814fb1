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
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::RequestBuilder, Option<ApiKey>), ProviderError> {
        Ok(match self {
            Self::None => (request, None),
            Self::Bearer(key) => (request.bearer_auth(key.expose()), Some(key.clone())),
            Self::Header(name, key) => (request.header(*name, sensitive(key)?), Some(key.clone())),
            Self::Entra(tokens) => {
                let token = tokens.get().await?;
                (request.bearer_auth(token.expose()), Some(token))
            }
        })
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

/// A key as a header value that debug output and HTTP/2 header compression treat as secret.
fn sensitive(key: &ApiKey) -> Result<http::HeaderValue, ProviderError> {
    let mut value = http::HeaderValue::from_str(key.expose())
        .map_err(|_| ProviderError::Connect("the API key is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}
