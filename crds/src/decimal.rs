//! Exact decimal strings in millionths: the one parser behind money and ratios.

/// Why a decimal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// A leading minus sign.
    #[error("{0:?} is negative; only zero or more is allowed")]
    Negative(String),
    /// More than six digits after the point.
    #[error("{0:?} has more than 6 decimal places")]
    TooPrecise(String),
    /// Not digits with an optional point.
    #[error("{0:?} is not a decimal number like \"12.50\"")]
    Syntax(String),
    /// Too large to count in millionths.
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// The decimal-string pattern the schema enforces (non-negative, at most six places).
pub const DECIMAL_PATTERN: &str = r"^[0-9]+(\.[0-9]{1,6})?$";

/// Parses `"12.50"` into 12_500_000 millionths, exactly, with no float in between.
pub fn parse_millionths(s: &str) -> Result<u64, DecimalError> {
    let s = s.trim();
    if s.starts_with('-') {
        return Err(DecimalError::Negative(s.to_owned()));
    }
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || (s.contains('.') && frac.is_empty()) {
        return Err(DecimalError::Syntax(s.to_owned()));
    }
    if frac.len() > 6 {
        return Err(DecimalError::TooPrecise(s.to_owned()));
    }
    let overflow = || DecimalError::Overflow(s.to_owned());
    let whole: u64 = whole.parse().map_err(|_| overflow())?;
    let frac_millionths: u64 = format!("{frac:0<6}").parse().map_err(|_| overflow())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac_millionths))
        .ok_or_else(overflow)
}

/// Writes millionths as a decimal with exactly six places, e.g. `4.210000`.
pub fn format_millionths(value: u64) -> String {
    format!("{}.{:06}", value / 1_000_000, value % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_millionths() {
        assert_eq!(parse_millionths("12.50"), Ok(12_500_000));
        assert_eq!(parse_millionths("0.000001"), Ok(1));
        assert_eq!(parse_millionths("7"), Ok(7_000_000));
    }

    #[test]
    fn refuses_negative_imprecise_and_malformed() {
        assert!(matches!(parse_millionths("-1.00"), Err(DecimalError::Negative(_))));
        assert!(matches!(
            parse_millionths("0.0000001"),
            Err(DecimalError::TooPrecise(_))
        ));
        for bad in ["", ".5", "5.", "1e3", "1,5", "abc"] {
            assert!(matches!(parse_millionths(bad), Err(DecimalError::Syntax(_))), "{bad}");
        }
        assert!(matches!(
            parse_millionths("99999999999999999999"),
            Err(DecimalError::Overflow(_))
        ));
    }

    #[test]
    fn formats_six_places() {
        assert_eq!(format_millionths(4_210_000), "4.210000");
        assert_eq!(format_millionths(1), "0.000001");
    }
}
