//! `Duration`: a span written the way Kubernetes users write them (`250ms`, `30s`, `5m`).

use std::{fmt, str::FromStr, time};

/// The schema pattern the API server enforces; `FromStr` accepts exactly this language.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// A non-negative span of time, parsed from `<n><unit>` groups, e.g. `1m30s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(time::Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string has no groups at all.
    #[error("empty duration: write e.g. 250ms, 30s, 5m or 1h")]
    Empty,
    /// A unit without digits before it, or a stray character.
    #[error("invalid duration {0:?}: expected groups like 250ms, 30s, 5m or 1h")]
    Syntax(String),
    /// Digits without a unit.
    #[error("duration {0:?} lacks a unit: add ms, s, m or h")]
    MissingUnit(String),
    /// The value does not fit.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

impl Duration {
    /// Wraps a standard duration.
    pub const fn new(inner: time::Duration) -> Self {
        Self(inner)
    }

    /// A duration of whole milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(time::Duration::from_millis(ms))
    }

    /// A duration of whole seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(time::Duration::from_secs(s))
    }

    /// The standard duration inside.
    pub const fn get(self) -> time::Duration {
        self.0
    }
}

impl From<Duration> for time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        let overflow = || DurationError::Overflow(s.to_owned());
        let mut total_ms: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(DurationError::Syntax(s.to_owned()));
            }
            let (number, tail) = rest.split_at(digits);
            let value: u64 = number.parse().map_err(|_| overflow())?;
            let (unit_ms, tail) = if let Some(t) = tail.strip_prefix("ms") {
                (1, t)
            } else if let Some(t) = tail.strip_prefix('s') {
                (1_000, t)
            } else if let Some(t) = tail.strip_prefix('m') {
                (60_000, t)
            } else if let Some(t) = tail.strip_prefix('h') {
                (3_600_000, t)
            } else if tail.is_empty() {
                return Err(DurationError::MissingUnit(s.to_owned()));
            } else {
                return Err(DurationError::Syntax(s.to_owned()));
            };
            let part = value.checked_mul(unit_ms).ok_or_else(overflow)?;
            total_ms = total_ms.checked_add(part).ok_or_else(overflow)?;
            rest = tail;
        }
        Ok(Self::from_millis(total_ms))
    }
}

impl fmt::Display for Duration {
    /// Writes the shortest exact form: `1h`, `90s`, `250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => f.write_str("0s"),
            ms if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000),
            ms if ms % 1_000 == 0 => write!(f, "{}s", ms / 1_000),
            ms => write!(f, "{ms}ms"),
        }
    }
}

crate::string_form::string_form!(Duration, "Duration", {
    "type": "string",
    "pattern": DURATION_PATTERN,
    "description": "A duration such as 250ms, 30s, 5m or 1h30m.",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_compounds() {
        assert_eq!("250ms".parse(), Ok(Duration::from_millis(250)));
        assert_eq!("30s".parse(), Ok(Duration::from_secs(30)));
        assert_eq!("5m".parse(), Ok(Duration::from_secs(300)));
        assert_eq!("1h30m".parse(), Ok(Duration::from_secs(5_400)));
    }

    #[test]
    fn refuses_missing_unit_and_garbage_with_reason() {
        assert_eq!("30".parse::<Duration>(), Err(DurationError::MissingUnit("30".into())));
        assert_eq!("1.5s".parse::<Duration>(), Err(DurationError::Syntax("1.5s".into())));
        assert_eq!("-1s".parse::<Duration>(), Err(DurationError::Syntax("-1s".into())));
        assert_eq!("".parse::<Duration>(), Err(DurationError::Empty));
        assert!(matches!(
            "99999999999999999999h".parse::<Duration>(),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn displays_shortest_exact_form() {
        assert_eq!(Duration::from_millis(90_000).to_string(), "90s");
        assert_eq!(Duration::from_secs(3_600).to_string(), "1h");
        assert_eq!(Duration::from_millis(1_500).to_string(), "1500ms");
    }
}
