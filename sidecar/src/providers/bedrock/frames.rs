//! The binary event-stream framing of a `converse-stream` answer
//! (`application/vnd.amazon.eventstream`), decoded with the field's decoder
//! (`aws-smithy-eventstream`): the counterpart of the SSE reading in `providers`. Each message
//! is checked (its CRCs, by the decoder) and becomes one event for the translator, its JSON
//! payload keyed by its `:event-type` (`{"contentBlockDelta": {…}}`); an `exception` or `error`
//! message becomes the stream's error. Bounded in size and by the deadline; a connection that
//! closes inside a message is an interrupted answer.

use std::pin::Pin;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::BytesMut;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use super::super::{BodyStream, MAX_UPSTREAM_BODY, ProviderError, TimeoutPhase};
use crate::{formats::bedrock::ErrorBody, sse::SseEvent, translate::bedrock_to_openai};

/// The event types the translator knows; others (ones AWS may add) are skipped.
const KNOWN_EVENTS: [&str; 6] = [
    "messageStart",
    "contentBlockStart",
    "contentBlockDelta",
    "contentBlockStop",
    "messageStop",
    "metadata",
];

/// The answer's events as they arrive, ending when the connection closes cleanly.
pub fn events(body: impl BodyStream, deadline: Instant) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send {
    struct State {
        body: Pin<Box<dyn Stream<Item = Result<bytes::Bytes, ProviderError>> + Send>>,
        buffer: BytesMut,
        decoder: MessageFrameDecoder,
        /// Bytes of a message have been read but not the whole message.
        partial: bool,
        finished: bool,
    }
    let state = State {
        body: Box::pin(body),
        buffer: BytesMut::new(),
        decoder: MessageFrameDecoder::new(),
        partial: false,
        finished: false,
    };
    futures::stream::unfold(state, move |mut s| async move {
        if s.finished {
            return None;
        }
        loop {
            let had_bytes = !s.buffer.is_empty();
            match s.decoder.decode_frame(&mut s.buffer) {
                Ok(DecodedFrame::Complete(message)) => {
                    s.partial = !s.buffer.is_empty();
                    match event(&message) {
                        Ok(None) => continue,
                        Ok(Some(event)) => return Some((Ok(event), s)),
                        Err(e) => {
                            s.finished = true;
                            return Some((Err(e), s));
                        }
                    }
                }
                Ok(DecodedFrame::Incomplete) => s.partial |= had_bytes,
                Err(e) => {
                    s.finished = true;
                    let e = ProviderError::InvalidResponse(format!("a bedrock event-stream message is malformed: {e}"));
                    return Some((Err(e), s));
                }
            }
            let failure = match tokio::time::timeout_at(deadline, s.body.next()).await {
                Err(_) => ProviderError::Timeout(TimeoutPhase::Total),
                Ok(Some(Ok(bytes))) if s.buffer.len() + bytes.len() > MAX_UPSTREAM_BODY => {
                    ProviderError::InvalidResponse(format!("a stream message larger than {MAX_UPSTREAM_BODY} bytes"))
                }
                Ok(Some(Ok(bytes))) => {
                    s.buffer.extend_from_slice(&bytes);
                    continue;
                }
                Ok(Some(Err(e))) => e,
                Ok(None) if s.partial => {
                    ProviderError::Interrupted("the connection closed in the middle of an event-stream message".into())
                }
                Ok(None) => return None,
            };
            s.finished = true;
            return Some((Err(failure), s));
        }
    })
}

/// A header's string value.
fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

/// What one message is: an event for the translator, nothing (an event type it does not know),
/// or the stream's error.
fn event(message: &Message) -> Result<Option<SseEvent>, ProviderError> {
    let payload = std::str::from_utf8(message.payload())
        .map_err(|_| ProviderError::InvalidResponse("a bedrock stream message's payload is not UTF-8".into()))?;
    match header(message, ":message-type").unwrap_or("event") {
        "event" => {
            let kind = header(message, ":event-type").unwrap_or_default();
            if !KNOWN_EVENTS.contains(&kind) {
                return Ok(None);
            }
            let payload = if payload.trim().is_empty() { "{}" } else { payload };
            Ok(Some(SseEvent {
                event: Some(kind.to_owned()),
                data: format!("{{\"{kind}\":{payload}}}").into(),
            }))
        }
        "exception" => {
            let kind = header(message, ":exception-type").unwrap_or("exception");
            let body: ErrorBody = serde_json::from_str(payload).unwrap_or_default();
            Err(bedrock_to_openai::error(None, kind, &body.message, None))
        }
        other => {
            // `error` messages carry their code and text in headers.
            let code = header(message, ":error-code").unwrap_or(other);
            let text = header(message, ":error-message").unwrap_or_default();
            Err(bedrock_to_openai::error(None, code, text, None))
        }
    }
}
