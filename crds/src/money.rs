//! `MicroUsd`: money as an integer count of micro-dollars.

use std::{fmt, ops, str::FromStr};

use crate::decimal::{self, DECIMAL_PATTERN, DecimalError};

/// An amount of US dollars in millionths; written as a decimal string (`"12.50"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MicroUsd(u64);

impl MicroUsd {
    /// Nothing.
    pub const ZERO: Self = Self(0);

    /// An amount of micro-dollars.
    pub const fn new(micros: u64) -> Self {
        Self(micros)
    }

    /// The count of micro-dollars.
    pub const fn micros(self) -> u64 {
        self.0
    }

    /// Subtraction that stops at zero.
    pub const fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }

    /// Addition that stops at the maximum.
    pub const fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }
}

impl ops::Add for MicroUsd {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        self.saturating_add(rhs)
    }
}

impl ops::AddAssign for MicroUsd {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl FromStr for MicroUsd {
    type Err = DecimalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decimal::parse_millionths(s).map(Self)
    }
}

impl fmt::Display for MicroUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&decimal::format_millionths(self.0))
    }
}

crate::string_form::string_form!(MicroUsd, "MicroUsd", {
    "type": "string",
    "pattern": DECIMAL_PATTERN,
    "description": "US dollars as a decimal string, e.g. \"12.50\"; at most 6 decimal places.",
});

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_decimal_string() {
        let m: MicroUsd = "4.21".parse().unwrap();
        assert_eq!(m, MicroUsd::new(4_210_000));
        assert_eq!(m.to_string(), "4.210000");
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"4.210000\"");
    }

    #[test]
    fn refuses_negative_price_in_yaml() {
        let err = serde_json::from_str::<MicroUsd>("\"-2.00\"").unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
    }
}
