//! The client side of a streamed OpenAI answer: chunks framed as SSE as they arrive,
//! `[DONE]` at the end, or one error event if the upstream breaks off.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use crate::{
    response, sse,
    wire::{ChunkStream, ProviderError, StreamEvent, error_body},
};

/// A streamed chat answer as an HTTP body.
pub struct SseBody {
    stream: Option<ChunkStream>,
    /// Where the answer is in its writing.
    phase: Phase,
}

/// Hyper polls a body until it is pending (or its queue of 16 frames is full) before it writes
/// anything: the first event goes alone and is followed by one yield, so that it leaves at once
/// rather than after what else the upstream sent with it; after that the events that are ready
/// go together as one frame, one write rather than one per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    First,
    Flush,
    Rest,
}

/// Events gathered into one frame up to about this many bytes.
const MAX_FRAME_BYTES: usize = 16 * 1024;

impl SseBody {
    /// Wraps a stream whose first event has already been received.
    pub fn new(stream: ChunkStream) -> Self {
        Self {
            stream: Some(stream),
            phase: Phase::First,
        }
    }

    /// As the sidecar's response body type.
    pub fn boxed(self) -> response::Body {
        BodyExt::boxed_unsync(self)
    }

    /// The next event's framing appended to `frame`; `Pending` when none is ready, `Ready(false)`
    /// once the answer is over (its last event written).
    fn next_into(&mut self, frame: &mut BytesMut, cx: &mut Context<'_>) -> Poll<bool> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return Poll::Ready(false);
            };
            match std::task::ready!(stream.as_mut().poll_next(cx)) {
                Some(Ok(StreamEvent::Usage(_))) => continue,
                Some(Ok(StreamEvent::Data(payload))) => sse::encode_data_into(frame, &payload),
                Some(Err(e)) => {
                    // Headers are gone already: the error travels as an event the SDKs raise on.
                    self.stream = None;
                    let (kind, code) = match e {
                        ProviderError::Timeout(_) => ("upstream_error", "upstream_timeout"),
                        ProviderError::BudgetSpent(_) => ("rate_limit_error", "budget_exceeded"),
                        _ => ("upstream_error", "upstream_error"),
                    };
                    sse::encode_data_into(frame, &error_body(&e.to_string(), kind, Some(code), None));
                }
                None => {
                    self.stream = None;
                    frame.extend_from_slice(sse::DONE);
                }
            }
            return Poll::Ready(true);
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.phase == Phase::Flush {
            // Pending once, woken at once: hyper writes what it holds, then polls again.
            this.phase = Phase::Rest;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut frame = BytesMut::new();
        if !std::task::ready!(this.next_into(&mut frame, cx)) {
            return Poll::Ready(None);
        }
        if this.phase == Phase::First {
            this.phase = Phase::Flush;
        } else {
            while frame.len() < MAX_FRAME_BYTES && matches!(this.next_into(&mut frame, cx), Poll::Ready(true)) {}
        }
        Poll::Ready(Some(Ok(Frame::data(frame.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(text: &'static str) -> Result<StreamEvent, ProviderError> {
        Ok(StreamEvent::Data(Bytes::from_static(text.as_bytes())))
    }

    /// The body's frames as polled by hyper, `None` where it was pending.
    fn frames(items: Vec<Result<StreamEvent, ProviderError>>) -> Vec<Option<String>> {
        let mut body = SseBody::new(Box::pin(futures::stream::iter(items)));
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Pending => out.push(None),
                Poll::Ready(None) => return out,
                Poll::Ready(Some(frame)) => {
                    let Ok(frame) = frame;
                    let bytes = frame.into_data().unwrap_or_default();
                    out.push(Some(String::from_utf8_lossy(&bytes).into_owned()));
                }
            }
        }
    }

    #[test]
    fn the_first_event_leaves_alone_and_the_events_ready_after_it_leave_together() {
        let got = frames(vec![
            data("1"),
            Ok(StreamEvent::Usage(Default::default())),
            data("2"),
            data("3"),
        ]);
        assert_eq!(
            got,
            vec![
                Some("data: 1\n\n".to_owned()),
                None,
                Some("data: 2\n\ndata: 3\n\ndata: [DONE]\n\n".to_owned())
            ]
        );
    }

    #[test]
    fn an_error_after_events_is_their_last_event() {
        let got = frames(vec![
            data("1"),
            data("2"),
            Err(ProviderError::Interrupted("gone".into())),
            data("never"),
        ]);
        assert_eq!(got.len(), 3);
        let rest = got[2].as_deref().unwrap_or_default();
        assert!(rest.starts_with("data: 2\n\ndata: {\"error\":"), "{rest}");
        assert!(rest.contains("upstream_error") && rest.ends_with("\n\n") && !rest.contains("never"));
    }
}
