//! A client's own bytes sent on to an OpenAI-protocol upstream with only what must change
//! spliced in: the backend's `model`, and the `stream_options` that ask for usage. Cloning a
//! parsed request and serializing it again cost more than the rest of its path; a splice finds
//! the top-level members' spans and copies the bytes once. Members nested deeper (a tool's
//! parameters naming a "model") are never touched, and a key that repeats is replaced
//! everywhere it appears, so the upstream reads the backend's value whichever one it keeps.

use std::{fmt, ops::Range};

use bytes::Bytes;
use serde::Serialize;

use super::StreamOptions;
use crate::formats::members::Members;

/// The body a request was parsed from, kept beside it so that it can go upstream as it came;
/// empty for a request a translation built (there is nothing to splice into: it is serialized).
#[derive(Clone, Default)]
pub struct RawBody(Option<Bytes>);

impl RawBody {
    /// The bytes a request was parsed from.
    pub fn new(bytes: Bytes) -> Self {
        Self(Some(bytes))
    }

    /// The bytes, if the request came as bytes.
    pub fn get(&self) -> Option<&Bytes> {
        self.0.as_ref()
    }
}

impl fmt::Debug for RawBody {
    // The parsed request beside it already shows the content: its size is enough here.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(b) => write!(f, "RawBody({} bytes)", b.len()),
            None => f.write_str("RawBody(none)"),
        }
    }
}

/// What changes in a body on its way upstream.
#[derive(Debug, Clone, Copy)]
pub struct Edits<'a> {
    /// The backend's model name.
    pub model: &'a str,
    /// The `stream_options` to send in place of the client's, if they change.
    pub stream_options: Option<&'a StreamOptions>,
}

/// Why a body could not be spliced (it is then serialized from its parsed form).
#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    /// The bytes are not one JSON object.
    #[error("the body is not a JSON object: {0}")]
    NotObject(#[from] serde_json::Error),
    /// The object has no `model` member to replace.
    #[error("the body has no model")]
    NoModel,
}

/// The body for an upstream: `raw` with `edits` spliced in, or, when there are no raw bytes or
/// they do not splice, what `parsed` builds, serialized.
pub fn upstream_body<T: Serialize>(
    raw: &RawBody,
    edits: Edits<'_>,
    parsed: impl FnOnce() -> T,
) -> Result<Bytes, serde_json::Error> {
    if let Some(spliced) = raw.get().and_then(|bytes| splice(bytes, edits).ok()) {
        return Ok(spliced);
    }
    serde_json::to_vec(&parsed()).map(Bytes::from)
}

/// `raw` (one JSON object) with every top-level `model` set to `edits.model` and, when
/// `edits.stream_options` is set, every top-level `stream_options` set to it (added when absent).
pub fn splice(raw: &[u8], edits: Edits<'_>) -> Result<Bytes, SpliceError> {
    let members = Members::parse(raw)?;
    let model = serde_json::to_vec(edits.model)?;
    let mut replacements: Vec<(Range<usize>, &[u8])> = members.spans("model").map(|s| (s, &model[..])).collect();
    if replacements.is_empty() {
        return Err(SpliceError::NoModel);
    }
    let options = edits.stream_options.map(serde_json::to_vec).transpose()?;
    let added;
    if let Some(options) = &options {
        let before = replacements.len();
        replacements.extend(members.spans("stream_options").map(|s| (s, &options[..])));
        if replacements.len() == before {
            let end = members.end().ok_or(SpliceError::NoModel)?;
            let mut member = b",\"stream_options\":".to_vec();
            member.extend_from_slice(options);
            added = member;
            replacements.push((end..end, &added[..]));
        }
    }
    replacements.sort_by_key(|(span, _)| span.start);
    let grows: usize = replacements.iter().map(|(_, with)| with.len()).sum();
    let mut out = Vec::with_capacity(raw.len() + grows);
    let mut at = 0;
    for (span, with) in replacements {
        out.extend_from_slice(&raw[at..span.start]);
        out.extend_from_slice(with);
        at = span.end;
    }
    out.extend_from_slice(&raw[at..]);
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests;
