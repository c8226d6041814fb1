//! The client side of a streamed `/v1/responses` answer: the pipeline's chat chunks as the
//! Responses events (`translate::openai_to_responses::stream`), framed as server-sent events as
//! they arrive. An upstream failure mid-way becomes `response.failed`, the end of the body.
//! An `openai` backend's own events pass through ([`PassedThroughSseBody`]), named by their
//! `type`; a failure after them is an `error` event numbered after the last.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use crate::{
    endpoints::translated_sse::{EventTranslator, NamedEvent, TranslatedSseBody},
    formats::responses::{
        ResponsesRequest,
        stream::{Event, EventBody},
    },
    response,
    translate::openai_to_responses::stream::Translator,
    wire::{ChunkStream, ProviderError, StreamEvent, Usage},
};

pub use crate::endpoints::translated_sse::encode;

/// A streamed chat answer as a Responses event-stream body.
pub type ResponsesSseBody = TranslatedSseBody<Translator>;

/// The body of a stream whose first event has already been received; `request` is echoed.
pub fn body(stream: ChunkStream, request: ResponsesRequest) -> ResponsesSseBody {
    TranslatedSseBody::new(stream, Translator::new(request))
}

impl NamedEvent for Event {
    fn name(&self) -> &'static str {
        Event::name(self)
    }
}

impl EventTranslator for Translator {
    type Event = Event;

    fn metered(&mut self, usage: Usage) {
        Translator::metered(self, usage);
    }

    fn chunk(&mut self, payload: &[u8]) -> Result<Vec<Event>, ProviderError> {
        Translator::chunk(self, payload)
    }

    fn fail(&mut self, error: &ProviderError) -> Vec<Event> {
        Translator::fail(self, error)
    }

    fn finish(&mut self) -> Vec<Event> {
        Translator::finish(self)
    }
}

/// An `openai` backend's Responses events, framed as they came (`event: <type>`).
pub struct PassedThroughSseBody {
    stream: Option<ChunkStream>,
    /// The `sequence_number` the next event would have.
    next_sequence: u64,
}

impl std::fmt::Debug for PassedThroughSseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassedThroughSseBody")
            .field("next_sequence", &self.next_sequence)
            .finish_non_exhaustive()
    }
}

/// What framing an event reads from it.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    sequence_number: Option<u64>,
}

impl PassedThroughSseBody {
    /// Wraps a stream whose first event has already been received.
    pub fn new(stream: ChunkStream) -> Self {
        Self {
            stream: Some(stream),
            next_sequence: 0,
        }
    }

    /// As the sidecar's response body type.
    pub fn boxed(self) -> response::Body {
        BodyExt::boxed_unsync(self)
    }

    fn frame(&mut self, payload: &[u8]) -> Bytes {
        let head: Option<Head<'_>> = serde_json::from_slice(payload).ok();
        let mut out = BytesMut::new();
        if let Some(head) = head {
            if let Some(n) = head.sequence_number {
                self.next_sequence = n + 1;
            }
            if !head.kind.is_empty() {
                out.extend_from_slice(b"event: ");
                out.extend_from_slice(head.kind.as_bytes());
                out.extend_from_slice(b"\n");
            }
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\n\n");
        out.freeze()
    }
}

impl Body for PassedThroughSseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            let bytes = match std::task::ready!(stream.as_mut().poll_next(cx)) {
                Some(Ok(StreamEvent::Usage(_))) => continue,
                Some(Ok(StreamEvent::Data(payload))) => this.frame(&payload),
                Some(Err(e)) => {
                    this.stream = None;
                    let code = match e {
                        ProviderError::BudgetSpent(_) => "budget_exceeded",
                        ProviderError::Timeout(_) => "upstream_timeout",
                        _ => "server_error",
                    };
                    let event = Event {
                        body: EventBody::Error {
                            code: Some(code.into()),
                            message: e.to_string(),
                            param: None,
                        },
                        sequence_number: this.next_sequence,
                    };
                    encode(&[event])
                }
                None => {
                    this.stream = None;
                    return Poll::Ready(None);
                }
            };
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none()
    }
}
