//! The client side of a streamed `/v1/responses` answer: the pipeline's chat chunks as the
//! Responses events (`translate::openai_to_responses::stream`), framed as server-sent events as
//! they arrive. An upstream failure mid-way becomes `response.failed`, the end of the body.
//! An `openai` backend's own events pass through (`super::passthrough`).

use crate::{
    endpoints::translated_sse::{EventTranslator, NamedEvent, TranslatedSseBody},
    formats::responses::{ResponsesRequest, stream::Event},
    translate::openai_to_responses::stream::Translator,
    wire::{ChunkStream, ProviderError, Usage},
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
