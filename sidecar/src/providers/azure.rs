//! Azure OpenAI: OpenAI's wire format at Azure's URLs, with Azure's credentials. The bodies,
//! streams, usage and errors are OpenAI's (see [`super::openai`]); what is Azure's own is here:
//!
//! - With a `deployment`, the deployment URLs
//!   `{baseUrl}/openai/deployments/{deployment}/{chat/completions,embeddings,completions}?api-version=…`
//!   (the body's `model` is ignored by Azure; the backend's `model` still names it, for prices and
//!   the tokenizer) and Responses at `{baseUrl}/openai/responses?api-version=…` with the deployment
//!   as the body's `model`, as Azure wants it.
//! - Without one, the v1 API: `{baseUrl}/openai/v1/…`, the backend's `model` (a deployment name)
//!   in the body, `api-version` only when set (`preview`).
//! - Credentials: the key as `api-key`, or (`auth: entra-id`) a bearer token for the pod's
//!   workload identity, exchanged and cached by [`super::entra`].
//!
//! Azure's content filter needs no mapping: its refusals are OpenAI-shaped 400s
//! (`error.code: content_filter`), passed to the client as they are and never retried (a 400 is
//! the client's), and a filtered answer is an ordinary one with `finish_reason: content_filter`
//! and Azure's `prompt_filter_results` / `content_filter_results` members passed through. Its
//! 429s carry `retry-after-ms` / `retry-after` (read by [`super::retry_after`]).

use sluice_crds::{ApiKey, AzureAuth, AzureSpec};

use super::{
    client::UpstreamClient,
    entra::{COGNITIVE_SERVICES_SCOPE, Identity, Tokens},
    openai::{Auth, Endpoints, OpenAi, Target, parsed},
};

/// The header Azure reads a resource key from.
pub const API_KEY_HEADER: &str = "api-key";

/// An Azure OpenAI upstream at resource endpoint `base_url`. `client` calls the resource;
/// `identity_client` (no extra headers) calls the identity provider; `env` reads the pod's
/// workload identity variables.
pub fn upstream(
    base_url: &str,
    spec: &AzureSpec,
    api_key: Option<ApiKey>,
    client: UpstreamClient,
    identity_client: reqwest::Client,
    env: impl Fn(&str) -> Option<String>,
) -> OpenAi {
    let auth = match spec.auth {
        AzureAuth::ApiKey => api_key.map_or(Auth::None, |key| Auth::Header(API_KEY_HEADER, key)),
        AzureAuth::EntraId => Auth::Entra(Tokens::new(
            identity_client,
            Identity::from_env(env),
            COGNITIVE_SERVICES_SCOPE,
        )),
    };
    OpenAi::with(endpoints(base_url, spec), auth, client)
}

/// Where each API lives for `spec` at resource endpoint `base_url`.
pub fn endpoints(base_url: &str, spec: &AzureSpec) -> Endpoints {
    let version = spec.api_version.as_deref();
    match spec.deployment.as_deref() {
        Some(deployment) => {
            let at = |api: &[&str]| {
                url(
                    base_url,
                    &[&["openai", "deployments", deployment], api].concat(),
                    version,
                )
            };
            Endpoints {
                chat: at(&["chat", "completions"]),
                embeddings: at(&["embeddings"]),
                completions: at(&["completions"]),
                responses: url(base_url, &["openai", "responses"], version),
                responses_model: Some(deployment.to_owned()),
            }
        }
        None => {
            let at = |api: &[&str]| url(base_url, &[&["openai", "v1"], api].concat(), version);
            Endpoints {
                chat: at(&["chat", "completions"]),
                embeddings: at(&["embeddings"]),
                completions: at(&["completions"]),
                responses: at(&["responses"]),
                responses_model: None,
            }
        }
    }
}

/// `base` with `segments` appended (each percent-encoded, so a deployment name stays one
/// segment) and `api-version` when given; a base that is no URL is kept as text for every call
/// to refuse, as for any backend.
fn url(base: &str, segments: &[&str], api_version: Option<&str>) -> Target {
    let mut url = reqwest::Url::parse(base).map_err(|_| base.to_owned())?;
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    } else {
        return Err(base.to_owned());
    }
    if let Some(version) = api_version {
        url.query_pairs_mut().append_pair("api-version", version);
    }
    parsed(url.into())
}

#[cfg(test)]
mod tests;
