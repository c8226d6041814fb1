//! The usage of a whole OpenAI answer, read without building the answer: every other field is
//! checked to be JSON and skipped, so an answer costs a scan rather than a tree of allocations.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

pub(crate) use crate::formats::members::escapes_a_surrogate;
use crate::wire::Usage;

/// Why a body has no usage to read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// It is not one JSON value.
    #[error("the body is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// It is JSON, but not an object.
    #[error("the body is not a JSON object")]
    NotObject,
}

/// The `usage` of an OpenAI answer `body` (`None` when absent or null), after checking that the
/// body is one JSON object; the same verdicts as parsing it into a [`Value`], at a fraction of
/// the cost.
pub fn openai_usage(body: &[u8]) -> Result<Option<Usage>, BodyError> {
    // Skipping a string checks neither its UTF-8 nor its surrogate escapes: a body that is not
    // UTF-8 or that escapes a surrogate (rare either way) is parsed whole, for the same verdict.
    if std::str::from_utf8(body).is_err() || escapes_a_surrogate(body) {
        let value: Value = serde_json::from_slice(body)?;
        return match value.as_object() {
            Some(object) => Ok(object.get("usage").and_then(Usage::from_openai)),
            None => Err(BodyError::NotObject),
        };
    }
    match serde_json::from_slice::<Shape>(body)? {
        Shape::Object(usage) => Ok(usage.as_ref().and_then(Usage::from_openai)),
        Shape::Other => Err(BodyError::NotObject),
    }
}

/// A body as [`openai_usage`] sees it: an object and its last `usage` value, or anything else.
enum Shape {
    Object(Option<Value>),
    Other,
}

impl<'de> de::Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut usage = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                // A repeated key counts once, its last value, as in a parsed `Value`.
                Key::Usage => usage = Some(map.next_value::<Value>()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Shape::Object(usage))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
}

/// An object key: `usage` or another.
enum Key {
    Usage,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(if key == "usage" { Key::Usage } else { Key::Other })
    }
}

#[cfg(test)]
mod tests {
    use sluice_crds::Tokens;

    use super::*;

    /// What parsing the whole body into a `Value` says, the reference this module must match.
    fn by_value(body: &[u8]) -> Result<Option<Usage>, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        if !value.is_object() {
            return Err("the body is not a JSON object".into());
        }
        Ok(value.get("usage").and_then(Usage::from_openai))
    }

    #[test]
    fn reads_usage_like_a_parsed_value() {
        let bodies: &[&str] = &[
            r#"{"id":"x","choices":[{"message":{"content":"hi \"there\""}}],"usage":{"prompt_tokens":12,"completion_tokens":9,"prompt_tokens_details":{"cached_tokens":4}}}"#,
            r#"{"choices":[]}"#,
            r#"{"usage":null}"#,
            r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2,"completion_tokens":3}}"#,
            r#"{"us\u0061ge":{"prompt_tokens":5,"completion_tokens":6}}"#,
            r#"{"usage":"none"}"#,
            r#"  {"a":[1,2.5,-3,true,false,null,{"b":"c"}]}  "#,
            "[1,2]",
            "\"text\"",
            "42",
            "null",
            "{\"a\":1} trailing",
            "{\"a\":",
            "{\"a\":\"\\x\"}",
            "",
            "{\"a\":1,}",
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"a":"\udc00"}"#,
        ];
        for body in bodies {
            let ours = openai_usage(body.as_bytes()).map_err(|e| e.to_string());
            assert_eq!(ours, by_value(body.as_bytes()), "{body}");
        }
    }

    #[test]
    fn a_body_that_is_not_utf8_fails_as_before() {
        for body in [
            &b"{\"a\":\"\xff\"}"[..],
            b"{\"usage\":{\"prompt_tokens\":1},\"b\":\"\xc3\"}",
        ] {
            let ours = openai_usage(body).map_err(|e| e.to_string());
            assert_eq!(ours, by_value(body));
        }
    }

    #[test]
    fn counts_the_cached_tokens() {
        let body =
            br#"{"usage":{"prompt_tokens":12,"completion_tokens":9,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        let usage = openai_usage(body).unwrap().unwrap();
        assert_eq!(
            (usage.input, usage.cached_input, usage.output),
            (Tokens(12), Tokens(4), Tokens(9))
        );
    }
}
