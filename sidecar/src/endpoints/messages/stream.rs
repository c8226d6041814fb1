//! The client side of a streamed `/v1/messages` answer: the pipeline's OpenAI chunks as
//! Anthropic's events (`translate::openai_to_anthropic::stream`), framed as server-sent events
//! as they arrive. An upstream failure mid-way becomes an `error` event, the end of the body,
//! which the Anthropic SDKs raise.

use crate::{
    endpoints::translated_sse::{EventTranslator, NamedEvent, TranslatedSseBody},
    formats::anthropic::Event,
    translate::openai_to_anthropic::stream::Translator,
    wire::{ChunkStream, ProviderError, Usage},
};

pub use crate::endpoints::translated_sse::encode;

/// A streamed chat answer as an Anthropic event-stream body.
pub type MessagesSseBody = TranslatedSseBody<Translator>;

/// The body of a stream whose first event has already been received.
pub fn body(stream: ChunkStream) -> MessagesSseBody {
    TranslatedSseBody::new(stream, Translator::default())
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
