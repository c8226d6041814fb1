//! What the client asks of the gateway through `x-sluice-*` request headers.

use std::time::Duration;

use http::{HeaderMap, HeaderName};
use sluice_crds::MicroUsd;

use crate::{error::ApiError, limits::Priority, route::plan::Constraints};

/// `x-sluice-user`: the end user, for per-user limits and attribution (else the body's `user`).
pub const USER: HeaderName = HeaderName::from_static("x-sluice-user");
/// `x-sluice-max-cost-usd`: the most this request may cost, e.g. `0.01`.
pub const MAX_COST: HeaderName = HeaderName::from_static("x-sluice-max-cost-usd");
/// `x-sluice-max-latency-ms`: the slowest backend latency estimate acceptable.
pub const MAX_LATENCY: HeaderName = HeaderName::from_static("x-sluice-max-latency-ms");
/// `x-sluice-priority`: 0 (first) to 9 (last) in concurrency queues; 5 without it.
pub const PRIORITY: HeaderName = HeaderName::from_static("x-sluice-priority");
/// `x-sluice-cache: bypass`: neither read nor fill the cache.
pub const CACHE: HeaderName = HeaderName::from_static("x-sluice-cache");

/// The client's asks, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asks {
    /// The user, if named.
    pub user: Option<String>,
    /// Cost and latency bounds.
    pub constraints: Constraints,
    /// Queue priority.
    pub priority: Priority,
    /// Whether to skip the cache.
    pub bypass_cache: bool,
}

impl Asks {
    /// Reads the headers; `body_user` is the body's `user`, used when the header is absent.
    /// A malformed header is refused with 400 naming it, rather than silently ignored.
    pub fn read(headers: &HeaderMap, body_user: Option<&str>) -> Result<Self, ApiError> {
        let text = |name: &HeaderName| -> Result<Option<&str>, ApiError> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .map(|s| Some(s.trim()))
                    .map_err(|_| ApiError::bad_request(format!("header {name} is not visible ASCII"), None)),
            }
        };
        let user = text(&USER)?.filter(|u| !u.is_empty()).or(body_user).map(str::to_owned);
        let max_cost = text(&MAX_COST)?
            .map(|v| {
                v.parse::<MicroUsd>().map_err(|e| {
                    ApiError::bad_request(format!("header {MAX_COST}: {e}; write dollars such as 0.05"), None)
                })
            })
            .transpose()?;
        let max_latency = text(&MAX_LATENCY)?
            .map(|v| {
                v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                    ApiError::bad_request(
                        format!("header {MAX_LATENCY}: {v:?} is not a whole number of milliseconds"),
                        None,
                    )
                })
            })
            .transpose()?;
        let priority = match text(&PRIORITY)? {
            None => Priority::DEFAULT,
            Some(v) => v.parse::<u8>().ok().and_then(Priority::new).ok_or_else(|| {
                ApiError::bad_request(
                    format!("header {PRIORITY}: {v:?} is not a priority from 0 (first) to 9 (last)"),
                    None,
                )
            })?,
        };
        let bypass_cache = match text(&CACHE)? {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("bypass") => true,
            Some(v) => {
                return Err(ApiError::bad_request(
                    format!("header {CACHE}: {v:?} is not understood; the only value is bypass"),
                    None,
                ));
            }
        };
        Ok(Self {
            user,
            constraints: Constraints { max_cost, max_latency },
            priority,
            bypass_cache,
        })
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert((*name).clone(), HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn reads_every_header() {
        let h = headers(&[
            (&USER, "alice"),
            (&MAX_COST, "0.05"),
            (&MAX_LATENCY, "1500"),
            (&PRIORITY, "0"),
            (&CACHE, "Bypass"),
        ]);
        let asks = Asks::read(&h, Some("bob")).unwrap();
        assert_eq!(asks.user.as_deref(), Some("alice"));
        assert_eq!(asks.constraints.max_cost, Some(MicroUsd::new(50_000)));
        assert_eq!(asks.constraints.max_latency, Some(Duration::from_millis(1500)));
        assert_eq!(asks.priority, Priority::HIGHEST);
        assert!(asks.bypass_cache);
    }

    #[test]
    fn defaults_without_headers_and_takes_the_body_user() {
        let asks = Asks::read(&HeaderMap::new(), Some("bob")).unwrap();
        assert_eq!(asks.user.as_deref(), Some("bob"));
        assert_eq!(asks.priority, Priority::DEFAULT);
        assert_eq!(asks.constraints, Constraints::default());
        assert!(!asks.bypass_cache);
    }

    #[test]
    fn refuses_malformed_values_naming_the_header() {
        for (name, value) in [
            (&MAX_COST, "cheap"),
            (&MAX_LATENCY, "1.5s"),
            (&PRIORITY, "10"),
            (&CACHE, "refresh"),
        ] {
            let err = Asks::read(&headers(&[(name, value)]), None).unwrap_err();
            assert!(err.to_string().contains(name.as_str()), "{err}");
        }
    }
}
