//! Server-sent events: an incremental decoder for upstream streams and the encoder for clients.

use bytes::{Bytes, BytesMut};
use bytes_utils::Str;

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the upstream names its events (Anthropic does).
    pub event: Option<String>,
    /// The `data:` lines joined by newlines; one line shares the bytes it came in (no copy).
    pub data: Str,
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
    buffer: Buffer,
    max_event_bytes: usize,
}

/// The bytes not decoded yet: a read's bytes as they came while its events are taken out of it,
/// gathered (copied) only while an event spans reads.
#[derive(Debug)]
enum Buffer {
    Shared(Bytes),
    Gathered(BytesMut),
}

impl Buffer {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Shared(b) => b,
            Self::Gathered(b) => b,
        }
    }
}

impl SseDecoder {
    /// A decoder refusing events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            buffer: Buffer::Shared(Bytes::new()),
            max_event_bytes,
        }
    }

    /// Appends bytes received from the network.
    pub fn push(&mut self, bytes: Bytes) {
        self.buffer = match std::mem::replace(&mut self.buffer, Buffer::Shared(Bytes::new())) {
            Buffer::Shared(held) if held.is_empty() => Buffer::Shared(bytes),
            Buffer::Shared(held) => {
                let mut gathered = BytesMut::with_capacity(held.len() + bytes.len());
                gathered.extend_from_slice(&held);
                gathered.extend_from_slice(&bytes);
                Buffer::Gathered(gathered)
            }
            Buffer::Gathered(mut gathered) => {
                gathered.extend_from_slice(&bytes);
                Buffer::Gathered(gathered)
            }
        };
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<Result<SseEvent, SseError>> {
        loop {
            let Some((end, sep_len)) = find_event_end(self.buffer.bytes()) else {
                if self.buffer.bytes().len() <= self.max_event_bytes {
                    return None;
                }
                // Drop what cannot be an event, so memory stays bounded and the error is said once.
                self.buffer = Buffer::Shared(Bytes::new());
                return Some(Err(SseError::TooLarge(self.max_event_bytes)));
            };
            let mut raw = match &mut self.buffer {
                Buffer::Shared(b) => b.split_to(end + sep_len),
                Buffer::Gathered(b) => {
                    let raw = b.split_to(end + sep_len).freeze();
                    if b.is_empty() {
                        // The spanning event is whole: later reads are shared again.
                        self.buffer = Buffer::Shared(Bytes::new());
                    }
                    raw
                }
            };
            raw.truncate(end);
            match parse_event(raw) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Whether bytes of an unfinished event remain (the stream ended mid-event).
    pub fn has_partial(&self) -> bool {
        self.buffer.bytes().iter().any(|b| !b.is_ascii_whitespace())
    }
}

/// Finds the blank line ending an event: `\n\n`, `\r\n\r\n` or `\r\r`.
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(at) = memchr::memchr2(b'\n', b'\r', &buf[from..]) {
        let i = from + at;
        match buf[i] {
            b'\n' if buf.get(i + 1) == Some(&b'\n') => return Some((i, 2)),
            b'\r' if buf[i + 1..].starts_with(b"\n\r\n") => return Some((i, 4)),
            b'\r' if buf.get(i + 1) == Some(&b'\r') => return Some((i, 2)),
            _ => {}
        }
        from = i + 1;
    }
    None
}

/// Parses one event's lines; `None` for an event with no data (comments, keep-alives).
fn parse_event(raw: Bytes) -> Result<Option<SseEvent>, SseError> {
    // The usual event, one `data:` line, is a slice of what was read.
    if let Some(value) = raw.strip_prefix(b"data:")
        && memchr::memchr2(b'\n', b'\r', value).is_none()
    {
        let start = raw.len() - value.len() + usize::from(value.first() == Some(&b' '));
        let data = Str::from_inner(raw.slice(start..)).map_err(|_| SseError::NotUtf8)?;
        return Ok(Some(SseEvent { event: None, data }));
    }
    let text = std::str::from_utf8(&raw).map_err(|_| SseError::NotUtf8)?;
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
    Ok(data.map(|data| SseEvent {
        event,
        data: Str::from(data),
    }))
}

/// Appends a JSON payload framed as one `data:` event to `out`.
pub fn encode_data_into(out: &mut BytesMut, payload: &[u8]) {
    out.reserve(payload.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
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
            d.push(Bytes::copy_from_slice(c));
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
    fn a_one_line_event_shares_the_bytes_it_was_read_in() {
        let read = Bytes::from_static(b"data: {\"a\":1}\n\ndata:x\n\n");
        let mut d = SseDecoder::new(1024);
        d.push(read.clone());
        let first = d.next_event().unwrap().unwrap();
        assert_eq!(first.data, "{\"a\":1}");
        assert_eq!(first.data.as_ptr(), read[6..].as_ptr());
        assert_eq!(d.next_event(), Some(data("x")));
        assert_eq!(d.next_event(), None);
    }

    #[test]
    fn an_event_split_across_reads_is_gathered_and_later_reads_are_shared_again() {
        let mut d = SseDecoder::new(1024);
        d.push(Bytes::from_static(b"data: a\r"));
        assert_eq!(d.next_event(), None);
        d.push(Bytes::from_static(b"\n\r\ndata: b\n\n"));
        assert_eq!(d.next_event(), Some(data("a")));
        assert_eq!(d.next_event(), Some(data("b")));
        assert!(!d.has_partial());
        let read = Bytes::from_static(b"data: c\n\n");
        d.push(read.clone());
        let c = d.next_event().unwrap().unwrap();
        assert_eq!(c.data.as_ptr(), read[6..].as_ptr());
    }

    #[test]
    fn refuses_a_one_line_event_that_is_not_utf8() {
        let got = decode_all(&[b"data: \xff\n\n"]);
        assert_eq!(got, vec![Err(SseError::NotUtf8)]);
    }

    #[test]
    fn reports_a_partial_event_left_at_the_end() {
        let mut d = SseDecoder::new(1024);
        d.push(Bytes::from_static(b"data: {\"cut"));
        assert!(d.next_event().is_none());
        assert!(d.has_partial());
    }
}
