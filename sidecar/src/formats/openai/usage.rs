//! The usage of a whole OpenAI answer, read without building the answer: every other field is
//! checked to be JSON and skipped, so an answer costs a scan rather than a tree of allocations.
//! The `usage` object itself is read member by member into counts, as `Usage::from_openai`
//! reads a parsed `Value` (same numbers for the same JSON), without building that `Value`.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

pub(crate) use crate::formats::members::escapes_a_surrogate;
use sluice_crds::Tokens;

use crate::{formats::members::MemberKey, wire::Usage};

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
        Shape::Object(usage) => Ok(usage.and_then(|u| u.0)),
        Shape::Other => Err(BodyError::NotObject),
    }
}

/// A body as [`openai_usage`] sees it: an object and its last `usage` value, or anything else.
enum Shape {
    Object(Option<UsageValue>),
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
                Key::Usage => usage = Some(map.next_value::<UsageValue>()?),
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

/// A `usage` value read as `Usage::from_openai` reads it: an object's counts, `None` otherwise.
struct UsageValue(Option<Usage>);

impl<'de> de::Deserialize<'de> for UsageValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UsageVisitor)
    }
}

struct UsageVisitor;

impl<'de> Visitor<'de> for UsageVisitor {
    type Value = UsageValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UsageValue, A::Error> {
        // A repeated member counts once, its last value, as in a parsed `Value`.
        let (mut input, mut output, mut details) = (0, 0, Details::default());
        while let Some(name) = map.next_key::<MemberKey>()? {
            match &*name.0 {
                "prompt_tokens" => input = map.next_value::<Count>()?.0,
                "completion_tokens" => output = map.next_value::<Count>()?.0,
                "prompt_tokens_details" => details = map.next_value::<Details>()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(UsageValue(Some(Usage {
            input: Tokens(input),
            cached_input: Tokens(details.cached),
            cache_write_input: Tokens(details.cache_creation),
            output: Tokens(output),
            estimated: false,
        })))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<UsageValue, A::Error> {
        skip_seq(seq).map(|()| UsageValue(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<UsageValue, E> {
        Ok(UsageValue(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<UsageValue, E> {
        Ok(UsageValue(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<UsageValue, E> {
        Ok(UsageValue(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<UsageValue, E> {
        Ok(UsageValue(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<UsageValue, E> {
        Ok(UsageValue(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<UsageValue, E> {
        Ok(UsageValue(None))
    }
}

/// `prompt_tokens_details`: its cache counts, zero when it is not an object.
#[derive(Default)]
struct Details {
    cached: u64,
    cache_creation: u64,
}

impl<'de> de::Deserialize<'de> for Details {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DetailsVisitor)
    }
}

struct DetailsVisitor;

impl<'de> Visitor<'de> for DetailsVisitor {
    type Value = Details;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Details, A::Error> {
        let mut details = Details::default();
        while let Some(name) = map.next_key::<MemberKey>()? {
            match &*name.0 {
                "cached_tokens" => details.cached = map.next_value::<Count>()?.0,
                "cache_creation_tokens" => details.cache_creation = map.next_value::<Count>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(details)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Details, A::Error> {
        skip_seq(seq).map(|()| Details::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Details, E> {
        Ok(Details::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Details, E> {
        Ok(Details::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Details, E> {
        Ok(Details::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Details, E> {
        Ok(Details::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Details, E> {
        Ok(Details::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Details, E> {
        Ok(Details::default())
    }
}

/// A count as `Value::as_u64` reads it: a non-negative integer, zero for anything else.
struct Count(u64);

impl<'de> de::Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CountVisitor)
    }
}

struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = Count;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
        Ok(Count(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
        Ok(Count(u64::try_from(v).unwrap_or(0)))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Count, E> {
        Ok(Count(0))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Count, E> {
        Ok(Count(0))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Count, E> {
        Ok(Count(0))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
        Ok(Count(0))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Count(0))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Count, A::Error> {
        skip_seq(seq).map(|()| Count(0))
    }
}

/// Reads the rest of an array, checking it is JSON.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
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
            // The usage object's own members, read without a `Value`.
            r#"{"usage":{"prompt_tokens":-3,"completion_tokens":2.5,"total_tokens":"x"}}"#,
            r#"{"usage":{"prompt_tokens":"12","completion_tokens":[1],"prompt_tokens_details":[{"cached_tokens":1}]}}"#,
            r#"{"usage":{"prompt_tokens":{"n":1},"completion_tokens":true,"prompt_tokens_details":null}}"#,
            r#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551616}}"#,
            r#"{"usage":{"prompt_tokens":1,"prompt_tokens":7,"completion_tokens_details":{"reasoning_tokens":3}}}"#,
            r#"{"usage":{"prompt_tokens_details":{"cached_tokens":4,"cache_creation_tokens":2},"prompt_tokens_details":{"cached_tokens":1}}}"#,
            r#"{"usage":{"prompt_tokens_details":{"cached_tokens":4},"prompt_tokens_details":"gone"}}"#,
            r#"{"usage":{"pr\u006fmpt_tokens":9,"prompt_tokens_details":{"cached_t\u006fkens":5}}}"#,
            r#"{"usage":{"prompt_tokens":1e400}}"#,
            r#"{"usage":{"prompt_tokens":1,}}"#,
            r#"{"usage":{"prompt_tokens":1},"usage":[1,2]}"#,
            r#"{"usage":{"prompt_tokens":01}}"#,
            r#"{"usage":[{"prompt_tokens":1}]}"#,
            r#"{"usage":{}}"#,
            r#"{"usage":7}"#,
            r#"{"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":-1,"x":[{}]}}}"#,
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
