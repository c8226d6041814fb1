//! What a failed attempt means: whether it may be retried, and what the breaker counts.

use sluice_crds::RetryOn;

use crate::{
    circuit::Verdict,
    wire::{ProviderError, TimeoutPhase, is_client_fault},
};

/// Kinds of failure, as the retry policy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// No connection.
    Connect,
    /// No first byte in time (or an upstream 408).
    Timeout,
    /// 429.
    RateLimited,
    /// 500, 502, 503, 504, 529, or an answer that broke off or is not the protocol.
    Server,
    /// Another server-side status (501, 505…): the backend failed, but trying again will not help.
    OtherServer,
    /// The client's own fault (400, 401, 403, 404, 422…): returned as is.
    Client,
    /// The request's whole time ran out.
    Deadline,
}

impl Class {
    /// Classifies one failure.
    pub fn of(error: &ProviderError) -> Self {
        match error {
            ProviderError::Connect(_) => Self::Connect,
            ProviderError::Timeout(TimeoutPhase::FirstByte) => Self::Timeout,
            ProviderError::Timeout(TimeoutPhase::Total) => Self::Deadline,
            ProviderError::Status { status, .. } => match status.as_u16() {
                429 => Self::RateLimited,
                408 => Self::Timeout,
                500 | 502 | 503 | 504 | 529 => Self::Server,
                _ if is_client_fault(*status) => Self::Client,
                _ => Self::OtherServer,
            },
            ProviderError::InvalidResponse(_) | ProviderError::Interrupted(_) => Self::Server,
            // The backend cannot carry this request at all: another attempt there cannot help.
            ProviderError::Unsupported(_) => Self::Client,
            // Only raised mid-stream, after the first byte: never retried.
            ProviderError::BudgetSpent(_) => Self::Client,
        }
    }

    /// Whether `retry_on` allows another attempt after this failure.
    pub fn retryable(self, retry_on: &[RetryOn]) -> bool {
        let needs = match self {
            Self::Connect => RetryOn::ConnectError,
            Self::Timeout => RetryOn::Timeout,
            Self::RateLimited => RetryOn::TooManyRequests,
            Self::Server => RetryOn::ServerError,
            Self::OtherServer | Self::Client | Self::Deadline => return false,
        };
        retry_on.contains(&needs)
    }

    /// What the circuit breaker counts: a 429 or the client's mistake says nothing of health.
    pub fn verdict(self) -> Verdict {
        match self {
            Self::RateLimited | Self::Client => Verdict::Neutral,
            Self::Connect | Self::Timeout | Self::Server | Self::OtherServer | Self::Deadline => Verdict::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::StatusCode;

    use super::*;

    fn status(code: u16) -> ProviderError {
        ProviderError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after: None,
            body: Bytes::new(),
        }
    }

    #[test]
    fn retries_what_the_policy_names_and_never_the_clients_4xx() {
        let all = [
            RetryOn::ConnectError,
            RetryOn::Timeout,
            RetryOn::TooManyRequests,
            RetryOn::ServerError,
        ];
        for code in [500, 502, 503, 504, 529, 429, 408] {
            assert!(Class::of(&status(code)).retryable(&all), "{code}");
        }
        for code in [400, 401, 403, 404, 422, 501] {
            assert!(!Class::of(&status(code)).retryable(&all), "{code}");
        }
        assert!(Class::of(&ProviderError::Connect("refused".into())).retryable(&all));
        assert!(Class::of(&ProviderError::Timeout(TimeoutPhase::FirstByte)).retryable(&all));
        assert!(!Class::of(&ProviderError::Timeout(TimeoutPhase::Total)).retryable(&all));
        assert!(!Class::of(&status(503)).retryable(&[RetryOn::TooManyRequests]));
        assert!(!Class::of(&status(429)).retryable(&[RetryOn::ServerError]));
    }

    #[test]
    fn the_breaker_ignores_429_and_client_errors() {
        assert_eq!(Class::of(&status(429)).verdict(), Verdict::Neutral);
        assert_eq!(Class::of(&status(400)).verdict(), Verdict::Neutral);
        assert_eq!(Class::of(&status(503)).verdict(), Verdict::Failure);
    }
}
