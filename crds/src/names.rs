//! Names that cross the wire: backends and models.

use std::{borrow::Cow, fmt};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Declares a validated string newtype with its schema pattern and length bound.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, pattern = $pattern:literal, max = $max:literal, what = $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The schema pattern that every value matches.
            pub const PATTERN: &'static str = $pattern;
            /// The longest value accepted.
            pub const MAX_LEN: usize = $max;

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                if s.is_empty() || s.len() > $max || !Self::is_valid(&s) {
                    return Err(NameError { what: $what, value: s, max: $max });
                }
                Ok(Self(s))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": "string", "pattern": $pattern, "maxLength": $max})
            }
        }
    };
}

/// A string that does not fit a name's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {}", Self::rule(what))]
pub struct NameError {
    what: &'static str,
    value: String,
    max: usize,
}

impl NameError {
    fn rule(what: &str) -> &'static str {
        if what == "backend name" {
            "use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
        } else {
            "use letters, digits and . _ : / @ -, starting with a letter or digit, at most 128 characters"
        }
    }
}

name_type!(
    /// A backend's name within its route: a DNS label.
    BackendName,
    pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    max = 63,
    what = "backend name"
);

name_type!(
    /// A model name as clients send it and as upstreams take it (`gpt-4.1`, `meta-llama/Llama-3-8B`).
    ModelName,
    pattern = "^[A-Za-z0-9][A-Za-z0-9._:/@-]*$",
    max = 128,
    what = "model name"
);

impl BackendName {
    fn is_valid(s: &str) -> bool {
        let b = s.as_bytes();
        let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
        let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        b.iter().all(inner) && edge(b.first()) && edge(b.last())
    }
}

impl ModelName {
    fn is_valid(s: &str) -> bool {
        let b = s.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:/@-".contains(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_are_dns_labels() {
        assert!(BackendName::try_from("openai-2").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", &"a".repeat(64)] {
            assert!(BackendName::try_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn model_names_refuse_header_injection() {
        assert!(ModelName::try_from("meta-llama/Llama-3.1-8B").is_ok());
        assert!(ModelName::try_from("gpt-4.1\r\nx-evil: 1").is_err());
        assert!(ModelName::try_from(" gpt").is_err());
    }
}
