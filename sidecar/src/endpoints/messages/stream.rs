//! The client side of a streamed `/v1/messages` answer: the pipeline's OpenAI chunks as
//! Anthropic's events (`translate::openai_to_anthropic::stream`), framed as server-sent events
//! as they arrive. An upstream failure mid-way becomes an `error` event, the end of the body,
//! which the Anthropic SDKs raise.

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use crate::{
    formats::anthropic::Event,
    response,
    translate::openai_to_anthropic::stream::Translator,
    wire::{ChunkStream, StreamEvent},
};

/// One event as SSE: `event: <type>` and its JSON `data:`.
pub fn encode(events: &[Event]) -> Bytes {
    let mut out = BytesMut::new();
    for event in events {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.name().as_bytes());
        out.extend_from_slice(b"\ndata: ");
        // Plain data always serializes.
        out.extend_from_slice(&serde_json::to_vec(event).unwrap_or_default());
        out.extend_from_slice(b"\n\n");
    }
    out.freeze()
}

/// A streamed chat answer as an Anthropic event-stream body.
pub struct MessagesSseBody {
    stream: Option<ChunkStream>,
    translator: Translator,
    pending: VecDeque<Bytes>,
}

impl std::fmt::Debug for MessagesSseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagesSseBody")
            .field("translator", &self.translator)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl MessagesSseBody {
    /// Wraps a stream whose first event has already been received.
    pub fn new(stream: ChunkStream) -> Self {
        Self {
            stream: Some(stream),
            translator: Translator::default(),
            pending: VecDeque::new(),
        }
    }

    /// As the sidecar's response body type.
    pub fn boxed(self) -> response::Body {
        BodyExt::boxed_unsync(self)
    }
}

impl Body for MessagesSseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            let events = match std::task::ready!(stream.as_mut().poll_next(cx)) {
                Some(Ok(StreamEvent::Usage(usage))) => {
                    this.translator.metered(usage);
                    continue;
                }
                Some(Ok(StreamEvent::Data(payload))) => match this.translator.chunk(&payload) {
                    Ok(events) => events,
                    Err(e) => {
                        this.stream = None;
                        this.translator.fail(&e)
                    }
                },
                Some(Err(e)) => {
                    // Headers are gone already: the failure travels as an event the SDKs raise on.
                    this.stream = None;
                    this.translator.fail(&e)
                }
                None => {
                    this.stream = None;
                    this.translator.finish()
                }
            };
            if !events.is_empty() {
                this.pending.push_back(encode(&events));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none() && self.pending.is_empty()
    }
}
