//! One chunk of an OpenAI-protocol stream as the relay reads it: only the members it acts on
//! (`error`, `usage`, `choices`), borrowed from the event's text, every other member skipped
//! unread. A chunk that needs no change is forwarded as the bytes it came as.

use std::{borrow::Cow, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, Visitor},
};
use serde_json::{Value, value::RawValue};

use crate::formats::members::{MemberKey, Members, escapes_a_surrogate};

/// The members of a chunk the relay acts on; the last of each when a key repeats, as in a
/// parsed [`Value`].
#[derive(Debug, Default)]
pub struct Chunk<'a> {
    text: &'a str,
    error: Option<&'a RawValue>,
    usage: Option<&'a RawValue>,
    choices: Option<&'a RawValue>,
    /// How many `usage` members there are, and the key of the last as it lies in the text
    /// (`None` when it had escapes and was copied).
    usages: usize,
    usage_key: Option<&'a str>,
}

impl<'a> Chunk<'a> {
    /// The chunk in `data` when it is one JSON object; the same verdict as parsing a [`Value`].
    pub fn parse(data: &'a str) -> Result<Self, serde_json::Error> {
        // Raw values check escapes but not that surrogates pair up, which a `Value` refuses.
        // Most chunks have no escape at all: one fast scan says so.
        if memchr::memchr(b'\\', data.as_bytes()).is_some() && escapes_a_surrogate(data.as_bytes()) {
            serde_json::from_str::<Value>(data)?;
        }
        let mut chunk: Self = serde_json::from_str(data)?;
        chunk.text = data;
        Ok(chunk)
    }

    /// Its `error`.
    pub fn error(&self) -> Option<&'a RawValue> {
        self.error
    }

    /// Its `usage`.
    pub fn usage(&self) -> Option<&'a RawValue> {
        self.usage
    }

    /// Whether `choices` is missing, not an array, or empty (a usage-only chunk).
    pub fn has_no_choices(&self) -> bool {
        self.choices.is_none_or(|raw| {
            let text = raw.get();
            !text.starts_with('[') || text[1..].trim_start().starts_with(']')
        })
    }

    /// The chunk's text without its `usage`, the rest as it came: the member is cut out with
    /// one comma next to it. A key that repeats or has escapes (never seen from an upstream)
    /// has the chunk read whole and written again without it.
    pub fn without_usage(&self) -> Result<Vec<u8>, serde_json::Error> {
        let (1, Some(key), Some(value)) = (self.usages, self.usage_key, self.usage) else {
            return Members::parse(self.text.as_bytes())?.without("usage");
        };
        let text = self.text.as_bytes();
        let base = text.as_ptr() as usize;
        // A borrowed key is the text between its quotes; a raw value starts past any whitespace.
        let key_start = key.as_ptr() as usize - base - 1;
        let value_end = value.get().as_ptr() as usize - base + value.get().len();
        let next = text[value_end..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map(|i| value_end + i);
        let previous = text[..key_start].iter().rposition(|b| !b.is_ascii_whitespace());
        let cut = match (next, previous) {
            (Some(i), _) if text[i] == b',' => key_start..i + 1,
            (_, Some(i)) if text[i] == b',' => i..value_end,
            _ => key_start..value_end,
        };
        let mut out = Vec::with_capacity(text.len() - cut.len());
        out.extend_from_slice(&text[..cut.start]);
        out.extend_from_slice(&text[cut.end..]);
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for Chunk<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ChunkVisitor)
    }
}

struct ChunkVisitor;

impl<'de> Visitor<'de> for ChunkVisitor {
    type Value = Chunk<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Chunk<'de>, A::Error> {
        let mut chunk = Chunk::default();
        while let Some(MemberKey(key)) = map.next_key()? {
            if key == "usage" {
                chunk.usages += 1;
                chunk.usage_key = match key {
                    Cow::Borrowed(k) => Some(k),
                    Cow::Owned(_) => None,
                };
            }
            let slot = match key.as_ref() {
                "error" => &mut chunk.error,
                "usage" => &mut chunk.usage,
                "choices" => &mut chunk.choices,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(chunk)
    }
}
