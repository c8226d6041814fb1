//! Why an upstream call failed, and the OpenAI-shaped error body every refusal carries.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// No answer before `timeouts.firstByte`.
    FirstByte,
    /// The request outlived `timeouts.total`.
    Total,
}

/// Why an upstream call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// No connection could be made.
    #[error("could not connect to the upstream: {0}")]
    Connect(String),
    /// A timeout ran out.
    #[error("the upstream did not answer in time ({})", match .0 { TimeoutPhase::FirstByte => "first byte", TimeoutPhase::Total => "total" })]
    Timeout(TimeoutPhase),
    /// The upstream answered with an error status.
    #[error("the upstream answered {status}{}", upstream_message(body))]
    Status {
        /// The upstream's status.
        status: StatusCode,
        /// Its `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// Its body, bounded.
        body: Bytes,
    },
    /// The upstream answered something that is not its protocol.
    #[error("the upstream answered an invalid response: {0}")]
    InvalidResponse(String),
    /// The connection broke or the stream ended early.
    #[error("the upstream connection broke off: {0}")]
    Interrupted(String),
    /// The backend cannot serve this request as asked (an API its provider lacks, a part its
    /// format cannot carry); the client's to change, not retried.
    #[error("{0}")]
    Unsupported(String),
    /// The sidecar ended a streamed answer because its hard budget has no money for more.
    #[error("{0}")]
    BudgetSpent(String),
}

/// `: <message>` from an OpenAI- or Anthropic-shaped error body, when there is one.
fn upstream_message(body: &Bytes) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(|m| format!(": {m}"))
        })
        .unwrap_or_default()
}

/// The error with its causes, which carry the useful part (e.g. "connection refused"); a cause
/// that only repeats the text before it (a wrapper displaying its source) is left out.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut last = text.clone();
    let mut source = e.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if said != last {
            text.push_str(": ");
            text.push_str(&said);
        }
        last = said;
        source = cause.source();
    }
    text
}

/// A 4xx that is the client's fault: not retried, passed back as such.
pub fn is_client_fault(status: StatusCode) -> bool {
    status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::REQUEST_TIMEOUT
}

/// `{"error": {"message", "type", "code", "param"}}` as bytes.
pub fn error_body(message: &str, kind: &str, code: Option<&str>, param: Option<&str>) -> Bytes {
    let value = json!({"error": {"message": message, "type": kind, "code": code, "param": param}});
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::with_causes;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("{0}")]
        Wraps(#[from] std::io::Error),
        #[error("sending the request")]
        Sending(#[source] std::io::Error),
    }

    #[test]
    fn causes_are_appended_once_each() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(with_causes(&refused()), "connection refused");
        // A wrapper that displays its source: the repeat is left out.
        assert_eq!(with_causes(&Outer::from(refused())), "connection refused");
        assert_eq!(
            with_causes(&Outer::Sending(refused())),
            "sending the request: connection refused"
        );
    }
}
