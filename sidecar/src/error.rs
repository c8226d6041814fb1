//! The sidecar's error contract: every refusal is OpenAI-shaped with an honest status.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::{
    response::{self, Response},
    wire::{ProviderError, error_body, is_client_fault},
};

/// Why a request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; `param` names the offending field when known.
    #[error("{message}")]
    BadRequest {
        /// What is wrong and how to fix it.
        message: String,
        /// The JSON field at fault.
        param: Option<String>,
    },
    /// No route of this pod serves the model.
    #[error("model {model:?} is not served here; available models: {}", available.join(", "))]
    ModelNotFound {
        /// The model the client asked for.
        model: String,
        /// Every model this pod may use.
        available: Vec<String>,
    },
    /// The body exceeds the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// No such endpoint.
    #[error("no endpoint {method} {path}")]
    UnknownEndpoint {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The endpoint exists for another method.
    #[error("{path} does not accept {method}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// An admin path that only the sidecar's own pod may read, asked from elsewhere.
    #[error(
        "{path} is served only to this pod (a loopback peer such as 127.0.0.1), not to {peer}: it shows every \
         route, price and spend; read it from inside the pod, or through `kubectl port-forward`"
    )]
    LoopbackOnly {
        /// The request path.
        path: String,
        /// Who asked: the connection's peer address, or `an unknown peer`.
        peer: String,
    },
    /// A stored Response was asked for; this gateway stores none.
    #[error(
        "response {id:?} was not stored: this gateway keeps no responses (store is accepted and ignored); \
         keep the Response the create call returned"
    )]
    NotStored {
        /// The id asked for.
        id: String,
    },
    /// No configuration has been loaded yet.
    #[error("no configuration loaded yet")]
    NotReady,
    /// The backend that serves this model cannot serve this kind of request.
    #[error("{0}")]
    Unsupported(String),
    /// A rate limit of the route, the user or every candidate backend is spent for now.
    #[error("rate limit reached: {limit}; retry in {}s", retry_after_secs(*retry_after))]
    RateLimited {
        /// Which limit, in words.
        limit: String,
        /// How long until the request would pass.
        retry_after: Duration,
    },
    /// A hard budget is spent for this period.
    #[error("{0}")]
    BudgetExceeded(#[from] crate::budget::Exhausted),
    /// This pod's slice of a budget is spent and no top-up came in time; the budget has money.
    #[error("{0}")]
    AllowanceShort(#[from] crate::budget::Short),
    /// No backend can take the request: every circuit is open, or none survives the filters.
    #[error("no backend available: {reason}")]
    NoBackendAvailable {
        /// Why, naming the filter or the open circuits.
        reason: String,
    },
    /// Every allowed attempt failed upstream.
    #[error(transparent)]
    Upstream(#[from] ProviderError),
}

/// What a request refused for a spent slice is told to wait: about one more ask and push.
const ALLOWANCE_RETRY_AFTER: Duration = Duration::from_secs(1);

impl ApiError {
    /// A 400 naming the field at fault.
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::BadRequest {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }

    /// The HTTP response for this error; the one place errors meet status codes.
    pub fn into_response(self) -> Response {
        let message = self.to_string();
        let (status, kind, code, param, retry_after) = match &self {
            Self::BadRequest { param, .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                param.clone(),
                None,
            ),
            Self::ModelNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
                Some("model".into()),
                None,
            ),
            Self::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                Some("request_too_large"),
                None,
                None,
            ),
            Self::UnknownEndpoint { .. } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("unknown_url"),
                None,
                None,
            ),
            Self::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                Some("method_not_allowed"),
                None,
                None,
            ),
            Self::LoopbackOnly { .. } => (
                StatusCode::FORBIDDEN,
                "permission_error",
                Some("loopback_only"),
                None,
                None,
            ),
            Self::NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                Some("not_ready"),
                None,
                None,
            ),
            Self::NotStored { .. } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("not_found"),
                None,
                None,
            ),
            Self::Unsupported(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("unsupported_for_backend"),
                None,
                None,
            ),
            Self::RateLimited { retry_after, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limited"),
                None,
                Some(*retry_after),
            ),
            Self::BudgetExceeded(e) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("budget_exceeded"),
                None,
                e.retry_after(jiff::Timestamp::now()),
            ),
            // Not `budget_exceeded`: the budget has money and a retry in a moment is likely
            // served. A 429 `rate_limited` with a short Retry-After is what OpenAI's SDKs
            // retry by themselves (they honour Retry-After up to a minute).
            Self::AllowanceShort(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limited"),
                None,
                Some(ALLOWANCE_RETRY_AFTER),
            ),
            Self::NoBackendAvailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                Some("no_backend_available"),
                None,
                None,
            ),
            Self::Upstream(e) => return upstream_response(e),
        };
        let body = error_body(&message, kind, code, param.as_deref());
        let mut resp = response::json(status, body);
        if let Some(after) = retry_after {
            set_retry_after(&mut resp, after);
        }
        resp
    }
}

/// Maps the last upstream failure to what the client sees.
fn upstream_response(e: &ProviderError) -> Response {
    let message = e.to_string();
    match e {
        // The client's own fault upstream (bad request, bad key, unknown model): returned as such.
        ProviderError::Status { status, body, .. } if is_client_fault(*status) => {
            let body = if is_openai_error(body) {
                body.clone()
            } else {
                error_body(&message, "invalid_request_error", Some("upstream_client_error"), None)
            };
            response::json(*status, body)
        }
        ProviderError::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after,
            ..
        } => {
            let body = error_body(&message, "rate_limit_error", Some("upstream_rate_limited"), None);
            let mut resp = response::json(StatusCode::TOO_MANY_REQUESTS, body);
            set_retry_after(&mut resp, retry_after.unwrap_or(Duration::from_secs(1)));
            resp
        }
        ProviderError::Status { .. } | ProviderError::Interrupted(_) => response::json(
            StatusCode::BAD_GATEWAY,
            error_body(&message, "upstream_error", Some("upstream_error"), None),
        ),
        ProviderError::InvalidResponse(_) => response::json(
            StatusCode::BAD_GATEWAY,
            error_body(&message, "upstream_error", Some("upstream_invalid_response"), None),
        ),
        ProviderError::Connect(_) => response::json(
            StatusCode::BAD_GATEWAY,
            error_body(&message, "upstream_error", Some("upstream_unreachable"), None),
        ),
        ProviderError::Timeout(_) => response::json(
            StatusCode::GATEWAY_TIMEOUT,
            error_body(&message, "timeout", Some("upstream_timeout"), None),
        ),
        ProviderError::BudgetSpent(_) => response::json(
            StatusCode::TOO_MANY_REQUESTS,
            error_body(&message, "rate_limit_error", Some("budget_exceeded"), None),
        ),
        // The backend cannot serve what was asked (embeddings from Anthropic, say): the client's to change.
        ProviderError::Unsupported(_) => response::json(
            StatusCode::BAD_REQUEST,
            error_body(&message, "invalid_request_error", Some("unsupported_for_backend"), None),
        ),
    }
}

fn is_openai_error(body: &Bytes) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("error").is_some_and(serde_json::Value::is_object))
}

fn set_retry_after(resp: &mut Response, after: Duration) {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(after)));
}

/// Whole seconds, rounded up: a client that waits the advertised time must find capacity.
fn retry_after_secs(after: Duration) -> u64 {
    after
        .as_secs()
        .saturating_add(u64::from(after.subsec_nanos() > 0))
        .max(1)
}
