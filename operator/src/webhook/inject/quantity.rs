//! Kubernetes resource quantities (`250m`, `1`, `128Mi`) for the sidecar's CPU and memory:
//! validated before they reach a pod (a denial that names the annotation beats the API
//! server's generic message), and compared by value in the drift check because the API server
//! stores quantities in canonical form (`0.5` comes back as `500m`, `1024Mi` as `1Gi`).

/// Which resource a quantity measures; each accepts different suffixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Cores: `1`, `0.5`, `250m`.
    Cpu,
    /// Bytes: `128Mi`, `1Gi`, `500M`.
    Memory,
}

/// Why a quantity was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a number followed by a known suffix.
    #[error("not a quantity: expected a number and a suffix, like {example}")]
    Malformed {
        /// What a valid value looks like for this resource.
        example: &'static str,
    },
    /// `m` on memory means thousandths of a byte: nearly always a typo for `Mi`.
    #[error("the suffix m means thousandths of a byte; write Mi (mebibytes) or M (megabytes)")]
    MilliBytes,
    /// Zero would leave the sidecar no CPU or memory.
    #[error("must be greater than zero")]
    Zero,
    /// Finer than the resource can express (below 1m of CPU, fractions of a byte).
    #[error("too precise: CPU goes down to 1m, memory to 1 byte")]
    TooPrecise,
    /// Beyond anything a node has.
    #[error("too large")]
    TooLarge,
}

/// Parses `text` as a quantity of `resource`, in thousandths of the base unit (millicores,
/// millibytes) so both resources share one exact integer scale.
pub fn parse(resource: Resource, text: &str) -> Result<u128, QuantityError> {
    let malformed = QuantityError::Malformed {
        example: match resource {
            Resource::Cpu => "250m, 0.5 or 2",
            Resource::Memory => "128Mi or 1Gi",
        },
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let factor = factor(resource, suffix).ok_or(malformed.clone())??;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    // `.5` and `5.` are valid Kubernetes quantities; a bare `.` is not.
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(malformed);
    }
    let digits = format!("{whole}{fraction}");
    let mantissa: u128 = digits.parse().map_err(|_| {
        if digits.len() > 30 {
            QuantityError::TooLarge
        } else {
            QuantityError::Malformed {
                example: "a plain number",
            }
        }
    })?;
    let scale = u32::try_from(fraction.len())
        .ok()
        .and_then(|exp| 10u128.checked_pow(exp))
        .ok_or(QuantityError::TooPrecise)?;
    let scaled = mantissa.checked_mul(factor).ok_or(QuantityError::TooLarge)?;
    if scaled % scale != 0 {
        return Err(QuantityError::TooPrecise);
    }
    let value = scaled / scale;
    // Memory is whole bytes: millibytes must be a multiple of 1000.
    if resource == Resource::Memory && value % 1000 != 0 {
        return Err(QuantityError::TooPrecise);
    }
    if value == 0 {
        return Err(QuantityError::Zero);
    }
    Ok(value)
}

/// Thousandths of the base unit per unit of `suffix`; `None` for an unknown suffix, `Some(Err)`
/// for a suffix that is known but wrong for this resource.
fn factor(resource: Resource, suffix: &str) -> Option<Result<u128, QuantityError>> {
    const KI: u128 = 1024;
    let factor = match (resource, suffix) {
        (Resource::Cpu, "m") => 1,
        (_, "") => 1_000,
        (Resource::Memory, "m") => return Some(Err(QuantityError::MilliBytes)),
        (Resource::Memory, "k") => 1_000 * 1_000,
        (Resource::Memory, "M") => 1_000 * 1_000_000,
        (Resource::Memory, "G") => 1_000 * 1_000_000_000,
        (Resource::Memory, "T") => 1_000 * 1_000_000_000_000,
        (Resource::Memory, "Ki") => 1_000 * KI,
        (Resource::Memory, "Mi") => 1_000 * KI.pow(2),
        (Resource::Memory, "Gi") => 1_000 * KI.pow(3),
        (Resource::Memory, "Ti") => 1_000 * KI.pow(4),
        _ => return None,
    };
    Some(Ok(factor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_are_millicores() {
        for (text, millis) in [
            ("250m", 250),
            ("1", 1_000),
            ("0.5", 500),
            (".5", 500),
            ("2.", 2_000),
            ("1.25", 1_250),
        ] {
            assert_eq!(parse(Resource::Cpu, text), Ok(millis), "{text}");
        }
    }

    #[test]
    fn memory_quantities_are_millibytes() {
        for (text, bytes) in [
            ("128Mi", 128 * 1024 * 1024),
            ("1Gi", 1024 * 1024 * 1024),
            ("1.5Gi", 3 * 512 * 1024 * 1024),
            ("500M", 500_000_000),
            ("64k", 64_000),
            ("4096", 4096),
        ] {
            assert_eq!(parse(Resource::Memory, text), Ok(bytes * 1000), "{text}");
        }
    }

    #[test]
    fn equal_values_in_different_forms_compare_equal() {
        // What the API server's canonical form does to a value must not look like drift.
        assert_eq!(parse(Resource::Memory, "1024Mi"), parse(Resource::Memory, "1Gi"));
        assert_eq!(parse(Resource::Cpu, "0.5"), parse(Resource::Cpu, "500m"));
    }

    #[test]
    fn bad_quantities_say_what_is_wrong() {
        let cpu_example = QuantityError::Malformed {
            example: "250m, 0.5 or 2",
        };
        let memory_example = QuantityError::Malformed {
            example: "128Mi or 1Gi",
        };
        for (resource, text, error) in [
            (Resource::Cpu, "", cpu_example.clone()),
            (Resource::Cpu, "lots", cpu_example.clone()),
            (Resource::Cpu, "-1", cpu_example.clone()),
            (Resource::Cpu, "1Gi", cpu_example.clone()),
            (Resource::Cpu, "1.2.3", cpu_example.clone()),
            (Resource::Cpu, ".", cpu_example),
            (Resource::Cpu, "0", QuantityError::Zero),
            (Resource::Cpu, "0.0001", QuantityError::TooPrecise),
            (Resource::Cpu, "0.5m", QuantityError::TooPrecise),
            (Resource::Memory, "128m", QuantityError::MilliBytes),
            (Resource::Memory, "128 Mi", memory_example.clone()),
            (Resource::Memory, "128MB", memory_example),
            (Resource::Memory, "0.5", QuantityError::TooPrecise),
            (Resource::Memory, "0Mi", QuantityError::Zero),
            (
                Resource::Memory,
                "99999999999999999999999999999999999Ti",
                QuantityError::TooLarge,
            ),
        ] {
            assert_eq!(parse(resource, text), Err(error), "{resource:?} {text:?}");
        }
    }
}
