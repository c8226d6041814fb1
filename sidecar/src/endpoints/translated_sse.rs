//! A streamed chat answer retold in another API's events (Anthropic Messages, OpenAI
//! Responses), framed as server-sent events as they arrive: what those endpoints share. The
//! API's own part is its [`EventTranslator`]: an upstream failure mid-way becomes the events
//! that API ends a failed stream with, the end of the body.

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
    response,
    wire::{ChunkStream, ProviderError, StreamEvent, Usage},
};

/// One API's stream events, named for the SSE `event:` line.
pub trait NamedEvent: serde::Serialize {
    /// The event's `type`.
    fn name(&self) -> &'static str;
}

/// Retells the pipeline's chat stream as one API's events.
pub trait EventTranslator: std::fmt::Debug + Send + Unpin + 'static {
    /// That API's event.
    type Event: NamedEvent;
    /// The usage the provider reported apart from the chunks.
    fn metered(&mut self, usage: Usage);
    /// The events one chat chunk becomes.
    fn chunk(&mut self, payload: &[u8]) -> Result<Vec<Self::Event>, ProviderError>;
    /// The events that end a stream that failed.
    fn fail(&mut self, error: &ProviderError) -> Vec<Self::Event>;
    /// The events that end a stream that completed.
    fn finish(&mut self) -> Vec<Self::Event>;
}

/// Events as SSE: `event: <type>` and its JSON `data:`.
pub fn encode<E: NamedEvent>(events: &[E]) -> Bytes {
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

/// A streamed chat answer as another API's event-stream body.
pub struct TranslatedSseBody<T> {
    stream: Option<ChunkStream>,
    translator: T,
    pending: VecDeque<Bytes>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for TranslatedSseBody<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranslatedSseBody")
            .field("translator", &self.translator)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<T: EventTranslator> TranslatedSseBody<T> {
    /// Wraps a stream whose first event has already been received.
    pub fn new(stream: ChunkStream, translator: T) -> Self {
        Self {
            stream: Some(stream),
            translator,
            pending: VecDeque::new(),
        }
    }

    /// As the sidecar's response body type.
    pub fn boxed(self) -> response::Body {
        BodyExt::boxed_unsync(self)
    }
}

impl<T: EventTranslator> Body for TranslatedSseBody<T> {
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
                    // Headers are gone already: the failure travels as the stream's last events,
                    // which the API's SDKs raise on.
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
