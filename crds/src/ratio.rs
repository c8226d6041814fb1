//! `Ratio`: a probability in `[0, 1]` written as a decimal string (`"0.05"`).

use std::{fmt, str::FromStr};

use crate::decimal::{self, DecimalError};

/// A fraction between 0 and 1, held in millionths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ratio(u32);

/// Why a ratio was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatioError {
    /// Not a decimal.
    #[error(transparent)]
    Decimal(#[from] DecimalError),
    /// Greater than one.
    #[error("{0:?} is above 1; a ratio is between 0 and 1")]
    AboveOne(String),
}

impl Ratio {
    /// Never.
    pub const ZERO: Self = Self(0);
    /// One million millionths.
    pub const ONE_MILLIONTHS: u32 = 1_000_000;

    /// The ratio in millionths (0..=1_000_000).
    pub const fn millionths(self) -> u32 {
        self.0
    }
}

impl FromStr for Ratio {
    type Err = RatioError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let m = decimal::parse_millionths(s)?;
        u32::try_from(m)
            .ok()
            .filter(|m| *m <= Self::ONE_MILLIONTHS)
            .map(Self)
            .ok_or_else(|| RatioError::AboveOne(s.to_owned()))
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&decimal::format_millionths(u64::from(self.0)))
    }
}

crate::string_form::string_form!(Ratio, "Ratio", {
    "type": "string",
    "pattern": r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$",
    "description": "A fraction between 0 and 1 as a decimal string, e.g. \"0.05\".",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bounds_and_refuses_above_one() {
        assert_eq!("0.0".parse::<Ratio>().map(Ratio::millionths), Ok(0));
        assert_eq!("0.25".parse::<Ratio>().map(Ratio::millionths), Ok(250_000));
        assert_eq!("1".parse::<Ratio>().map(Ratio::millionths), Ok(1_000_000));
        assert!(matches!("1.5".parse::<Ratio>(), Err(RatioError::AboveOne(_))));
    }
}
