//! A bearer token's digest: how the control server recognises a token it has already
//! authenticated (its review cache, the session a stream opened with) without keeping the
//! token itself in memory.

use http::HeaderMap;
use sha2::{Digest, Sha256};

/// The SHA-256 of a bearer token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A digest is not the token, but nothing needs to read it in a log either.
        f.write_str("TokenDigest(<redacted>)")
    }
}

impl TokenDigest {
    /// The digest of `token`.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

/// The request's `Authorization: Bearer` token, if it carries a non-empty one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_is_read_trimmed_and_an_empty_one_is_none() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(http::header::AUTHORIZATION, "Bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(http::header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn equal_tokens_have_equal_digests_and_the_debug_form_hides_it() {
        assert_eq!(TokenDigest::of("a"), TokenDigest::of("a"));
        assert_ne!(TokenDigest::of("a"), TokenDigest::of("b"));
        assert_eq!(format!("{:?}", TokenDigest::of("a")), "TokenDigest(<redacted>)");
    }
}
