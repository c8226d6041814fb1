//! Who is calling: the pod bound to the caller's projected ServiceAccount token, as the API
//! server's `TokenReview` says — never what the request claims.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use http::HeaderMap;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::{Api, Client, api::PostParams};
use sluice_crds::control::{AUDIENCE, PodIdentity};

use crate::token::{self, TokenDigest};

/// How long a successful review is reused for the same token.
const CACHE_FOR: Duration = Duration::from_secs(30);
/// Bound on remembered reviews.
const CACHE_MAX: usize = 10_000;

const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const SA_PREFIX: &str = "system:serviceaccount:";

/// Why a caller was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    MissingToken,
    /// The API server did not authenticate the token.
    #[error("token not authenticated: {0}")]
    Unauthenticated(String),
    /// The token is not for audience `sluice`.
    #[error("token is not issued for audience {AUDIENCE}")]
    WrongAudience,
    /// The token is not a ServiceAccount token bound to a pod.
    #[error("token is not bound to a pod")]
    NotAPod,
    /// The review itself failed.
    #[error("TokenReview failed: {0}")]
    Review(#[from] kube::Error),
}

impl AuthError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::MissingToken | Self::Unauthenticated(_) => http::StatusCode::UNAUTHORIZED,
            Self::WrongAudience | Self::NotAPod => http::StatusCode::FORBIDDEN,
            Self::Review(_) => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Reviews tokens, remembering recent answers so a busy sidecar does not cost a review per call.
pub struct Authenticator {
    client: Client,
    cache: Mutex<HashMap<TokenDigest, (PodIdentity, Instant)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Reviews with `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The pod the request's token is bound to.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<PodIdentity, AuthError> {
        let token = token::bearer(headers).ok_or(AuthError::MissingToken)?;
        let digest = TokenDigest::of(token);
        if let Some(identity) = self.cached(&digest) {
            return Ok(identity);
        }
        // A review is trusted for `CACHE_FOR` counted from before it was asked: the pod was not
        // deleted before then (what `ledgers::RECLAIM_WAIT` relies on).
        let asked = Instant::now();
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec![AUDIENCE.to_owned()]),
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let identity = identity_of(&reviewed)?;
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_FOR);
        }
        cache.insert(digest, (identity.clone(), asked));
        Ok(identity)
    }

    fn cached(&self, digest: &TokenDigest) -> Option<PodIdentity> {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(digest)
            .filter(|(_, at)| at.elapsed() < CACHE_FOR)
            .map(|(id, _)| id.clone())
    }
}

/// Reads the pod out of a completed review.
pub fn identity_of(review: &TokenReview) -> Result<PodIdentity, AuthError> {
    let status = review
        .status
        .as_ref()
        .ok_or_else(|| AuthError::Unauthenticated("no status".into()))?;
    if status.authenticated != Some(true) {
        return Err(AuthError::Unauthenticated(status.error.clone().unwrap_or_default()));
    }
    if !status.audiences.iter().flatten().any(|a| a == AUDIENCE) {
        return Err(AuthError::WrongAudience);
    }
    let user = status.user.as_ref().ok_or(AuthError::NotAPod)?;
    let namespace = user
        .username
        .as_deref()
        .and_then(|u| u.strip_prefix(SA_PREFIX))
        .and_then(|rest| rest.split_once(':'))
        .map(|(ns, _)| ns.to_owned())
        .ok_or(AuthError::NotAPod)?;
    let extra = |key: &str| {
        user.extra
            .as_ref()
            .and_then(|e| e.get(key))
            .and_then(|v| v.first())
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or(AuthError::NotAPod)
    };
    Ok(PodIdentity {
        namespace,
        name: extra(POD_NAME)?,
        uid: extra(POD_UID)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn review(value: serde_json::Value) -> TokenReview {
        serde_json::from_value(serde_json::json!({"spec": {}, "status": value})).unwrap()
    }

    #[test]
    fn the_pod_comes_from_the_reviewed_token() {
        let r = review(serde_json::json!({
            "authenticated": true, "audiences": ["sluice"],
            "user": {"username": "system:serviceaccount:team-a:default",
                     "extra": {"authentication.kubernetes.io/pod-name": ["bot-1"],
                               "authentication.kubernetes.io/pod-uid": ["u-1"]}}}));
        assert_eq!(
            identity_of(&r).unwrap(),
            PodIdentity {
                namespace: "team-a".into(),
                name: "bot-1".into(),
                uid: "u-1".into()
            }
        );
    }

    #[test]
    fn unbound_wrong_audience_and_unauthenticated_tokens_are_refused() {
        let unbound = review(serde_json::json!({"authenticated": true, "audiences": ["sluice"],
            "user": {"username": "system:serviceaccount:team-a:default"}}));
        assert!(matches!(identity_of(&unbound), Err(AuthError::NotAPod)));
        let other = review(serde_json::json!({"authenticated": true, "audiences": ["api"], "user": {}}));
        assert!(matches!(identity_of(&other), Err(AuthError::WrongAudience)));
        let bad = review(serde_json::json!({"authenticated": false, "error": "expired"}));
        assert!(matches!(identity_of(&bad), Err(AuthError::Unauthenticated(e)) if e == "expired"));
    }
}
