//! The client side of a streamed OpenAI answer: chunks framed as SSE as they arrive,
//! `[DONE]` at the end, or one error event if the upstream breaks off.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use crate::{
    response, sse,
    wire::{ChunkStream, ProviderError, StreamEvent, error_body},
};

/// A streamed chat answer as an HTTP body.
pub struct SseBody {
    stream: Option<ChunkStream>,
}

impl SseBody {
    /// Wraps a stream whose first event has already been received.
    pub fn new(stream: ChunkStream) -> Self {
        Self { stream: Some(stream) }
    }

    /// As the sidecar's response body type.
    pub fn boxed(self) -> response::Body {
        BodyExt::boxed_unsync(self)
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            let frame = match std::task::ready!(stream.as_mut().poll_next(cx)) {
                Some(Ok(StreamEvent::Usage(_))) => continue,
                Some(Ok(StreamEvent::Data(payload))) => sse::encode_data(&payload),
                Some(Err(e)) => {
                    // Headers are gone already: the error travels as an event the SDKs raise on.
                    this.stream = None;
                    let (kind, code) = match e {
                        ProviderError::Timeout(_) => ("upstream_error", "upstream_timeout"),
                        ProviderError::BudgetSpent(_) => ("rate_limit_error", "budget_exceeded"),
                        _ => ("upstream_error", "upstream_error"),
                    };
                    sse::encode_data(&error_body(&e.to_string(), kind, Some(code), None))
                }
                None => {
                    this.stream = None;
                    Bytes::from_static(sse::DONE)
                }
            };
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none()
    }
}
