//! A JSON object's top-level members borrowed from its text, in order, each value left as the
//! text it came as: what a stream chunk or a request body needs when only a member or two is
//! read or replaced, without building the tree of maps and strings a `Value` would be.

use std::{borrow::Cow, ops::Range};

use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, Visitor},
};
use serde_json::{Value, value::RawValue};

/// The members of one JSON object, borrowed from its text.
#[derive(Debug)]
pub struct Members<'a> {
    text: &'a [u8],
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Members<'a> {
    /// The members of `text` when it is one JSON object; the same verdict as parsing a [`Value`].
    pub fn parse(text: &'a [u8]) -> Result<Self, serde_json::Error> {
        // Raw values check escapes but not that surrogates pair up, which a `Value` refuses.
        if escapes_a_surrogate(text) {
            serde_json::from_slice::<Value>(text)?;
        }
        let List(members) = serde_json::from_slice(text)?;
        Ok(Self { text, members })
    }

    /// The value of `key`; the last one when a key repeats, as in a parsed [`Value`].
    pub fn member(&self, key: &str) -> Option<&'a RawValue> {
        self.members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Where in the text each value of `key` lies (every one when a key repeats).
    pub fn spans<'s>(&'s self, key: &'s str) -> impl Iterator<Item = Range<usize>> + 's {
        let base = self.text.as_ptr() as usize;
        self.members.iter().filter(move |(k, _)| k == key).map(move |(_, v)| {
            // A raw value borrows its text from `self.text`: its offset is where it points.
            let start = v.get().as_ptr() as usize - base;
            start..start + v.get().len()
        })
    }

    /// Where the object's closing brace is.
    pub fn end(&self) -> Option<usize> {
        self.text.iter().rposition(|b| *b == b'}')
    }

    /// The object's text without any `key` member, the others as they came.
    pub fn without(&self, key: &str) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(self.text.len());
        out.push(b'{');
        for (k, v) in self.members.iter().filter(|(k, _)| k != key) {
            if out.len() > 1 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, k.as_ref())?;
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
        Ok(out)
    }
}

/// Whether `text` may hold a `\uD…` escape (an escaped backslash before `ud` counts too: it only
/// costs the slow road).
pub fn escapes_a_surrogate(text: &[u8]) -> bool {
    text.windows(3)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && w[2].eq_ignore_ascii_case(&b'd'))
}

/// The member list as deserialized.
struct List<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for List<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ListVisitor)
    }
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = List<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<List<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<MemberKey<'de>>()? {
            members.push((key.0, map.next_value()?));
        }
        Ok(List(members))
    }
}

/// An object key, borrowed unless it had escapes (serde's own `Cow<str>` always copies).
#[derive(Debug)]
pub struct MemberKey<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for MemberKey<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = MemberKey<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
                Ok(MemberKey(Cow::Borrowed(key)))
            }

            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
                Ok(MemberKey(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}
