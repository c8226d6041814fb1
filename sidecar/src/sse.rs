//! Server-sent events: an incremental decoder for upstream streams and the encoder for clients.

use bytes::{Bytes, BytesMut};

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the upstream names its events (Anthropic does).
    pub event: Option<String>,
    /// The `data:` lines joined by newlines.
    pub data: String,
}

/// The stream broke the format or a bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// One event grew beyond the bound without ending.
    #[error("an event exceeded {0} bytes without ending")]
    TooLarge(usize),
    /// The event's text is not UTF-8.
    #[error("an event is not valid UTF-8")]
    NotUtf8,
}

/// Splits a byte stream into events as bytes arrive, holding at most one partial event.
#[derive(Debug)]
pub struct SseDecoder {
    buffer: BytesMut,
    max_event_bytes: usize,
}

impl SseDecoder {
    /// A decoder refusing events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            max_event_bytes,
        }
    }

    /// Appends bytes received from the network.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<Result<SseEvent, SseError>> {
        loop {
            let Some((end, sep_len)) = find_event_end(&self.buffer) else {
                if self.buffer.len() <= self.max_event_bytes {
                    return None;
                }
                // Drop what cannot be an event, so memory stays bounded and the error is said once.
                self.buffer.clear();
                return Some(Err(SseError::TooLarge(self.max_event_bytes)));
            };
            let raw = self.buffer.split_to(end + sep_len).freeze();
            match parse_event(&raw[..end]) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Whether bytes of an unfinished event remain (the stream ended mid-event).
    pub fn has_partial(&self) -> bool {
        self.buffer.iter().any(|b| !b.is_ascii_whitespace())
    }
}

/// Finds the blank line ending an event: `\n\n`, `\r\n\r\n` or `\r\r`.
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        match buf[i] {
            b'\n' if buf.get(i + 1) == Some(&b'\n') => return Some((i, 2)),
            b'\r' if buf[i + 1..].starts_with(b"\n\r\n") => return Some((i, 4)),
            b'\r' if buf.get(i + 1) == Some(&b'\r') => return Some((i, 2)),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses one event's lines; `None` for an event with no data (comments, keep-alives).
fn parse_event(raw: &[u8]) -> Result<Option<SseEvent>, SseError> {
    let text = std::str::from_utf8(raw).map_err(|_| SseError::NotUtf8)?;
    let mut event = None;
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            "event" => event = Some(value.to_owned()),
            _ => {}
        }
    }
    Ok(data.map(|data| SseEvent { event, data }))
}

/// Frames a JSON payload as one `data:` event.
pub fn encode_data(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// The OpenAI end-of-stream marker.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<Result<SseEvent, SseError>> {
        let mut d = SseDecoder::new(1024);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(e) = d.next_event() {
                out.push(e);
            }
        }
        out
    }

    fn data(s: &str) -> Result<SseEvent, SseError> {
        Ok(SseEvent {
            event: None,
            data: s.into(),
        })
    }

    #[test]
    fn decodes_events_split_across_reads() {
        let got = decode_all(&[b"data: {\"a\"", b":1}\n", b"\ndata: [DONE]\n\n"]);
        assert_eq!(got, vec![data("{\"a\":1}"), data("[DONE]")]);
    }

    #[test]
    fn keeps_event_names_and_joins_multiline_data() {
        let got = decode_all(&[b"event: ping\ndata: a\ndata: b\r\n\r\n"]);
        assert_eq!(
            got,
            vec![Ok(SseEvent {
                event: Some("ping".into()),
                data: "a\nb".into()
            })]
        );
    }

    #[test]
    fn skips_comments_and_empty_events() {
        let got = decode_all(&[b": keep-alive\n\ndata:x\n\n"]);
        assert_eq!(got, vec![data("x")]);
    }

    #[test]
    fn refuses_an_event_that_never_ends() {
        let got = decode_all(&[&[b'x'; 2000]]);
        assert_eq!(got, vec![Err(SseError::TooLarge(1024))]);
    }

    #[test]
    fn reports_a_partial_event_left_at_the_end() {
        let mut d = SseDecoder::new(1024);
        d.push(b"data: {\"cut");
        assert!(d.next_event().is_none());
        assert!(d.has_partial());
    }
}
