//! Bedrock's `converse-stream` events as OpenAI chunks: a small state machine fed one event (the
//! JSON payload of one event-stream message, keyed by its `:event-type`) at a time. Reading the
//! binary framing and turning exception messages into errors is the provider's.
//!
//! `messageStart` becomes the role chunk; text deltas content deltas; reasoning text reasoning
//! deltas; a tool block's start the tool call's first delta (index, id, name, empty arguments)
//! and its `toolUse` deltas more arguments. `messageStop` becomes the finish chunk; `metadata`
//! carries the usage, sent after it. The stream must reach `messageStop`: ending earlier is an
//! interrupted answer.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{finish_reason, usage};
use crate::{
    formats::{
        bedrock::{BlockDelta, StreamEvent as Event, TokenUsage},
        openai::{ChatChunk, Delta, FunctionDelta, ToolCallDelta},
    },
    translate::StreamTranslator,
    wire::{ProviderError, StreamEvent},
};

/// The translation of one streamed answer.
#[derive(Debug)]
pub struct Translator {
    wants_usage: bool,
    created: u64,
    model: String,
    id: String,
    /// Whether the role chunk went out.
    started: bool,
    /// OpenAI's tool-call index for each Bedrock content block that is a tool call.
    calls: BTreeMap<u32, u32>,
    /// Whether `messageStop` arrived.
    stopped: bool,
    usage: Option<TokenUsage>,
}

impl Translator {
    /// A translator for answer `id` of `model` made at `created`; `wants_usage` as the client asked.
    pub fn new(wants_usage: bool, created: u64, model: &str, id: &str) -> Self {
        Self {
            wants_usage,
            created,
            model: model.to_owned(),
            id: id.to_owned(),
            started: false,
            calls: BTreeMap::new(),
            stopped: false,
            usage: None,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&str>) -> StreamEvent {
        let chunk = ChatChunk::delta(&self.id, self.created, &self.model, 0, delta, finish.map(str::to_owned));
        StreamEvent::Data(Bytes::from(chunk.to_json(self.wants_usage)))
    }

    /// A chunk, preceded by the role chunk the first time.
    fn push(&mut self, out: &mut Vec<StreamEvent>, delta: Delta, finish: Option<&str>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(Delta::role(), None));
        }
        out.push(self.chunk(delta, finish));
    }

    fn delta(&mut self, block: u32, delta: BlockDelta) -> Option<Delta> {
        if let Some(text) = delta.text {
            return (!text.is_empty()).then(|| Delta::text(text));
        }
        if let Some(tool) = delta.tool_use {
            let index = *self.calls.get(&block)?;
            return (!tool.input.is_empty()).then(|| {
                Delta::tool_call(ToolCallDelta {
                    index,
                    function: Some(FunctionDelta {
                        name: None,
                        arguments: Some(tool.input),
                    }),
                    ..ToolCallDelta::default()
                })
            });
        }
        let text = delta.reasoning_content?.text.filter(|t| !t.is_empty())?;
        Some(Delta::reasoning(text))
    }
}

impl StreamTranslator for Translator {
    type Event = Event;
    const EVENT: &'static str = "a bedrock stream event";

    fn on(&mut self, event: Event) -> Result<Vec<StreamEvent>, ProviderError> {
        let mut out = Vec::new();
        match event {
            Event::MessageStart(_) => {
                if !self.started {
                    self.started = true;
                    out.push(self.chunk(Delta::role(), None));
                }
            }
            Event::ContentBlockStart(start) => {
                if let Some(tool) = start.start.tool_use {
                    let index = u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
                    self.calls.insert(start.content_block_index, index);
                    let delta = Delta::tool_call(ToolCallDelta {
                        index,
                        id: Some(tool.tool_use_id),
                        kind: Some("function".into()),
                        function: Some(FunctionDelta {
                            name: Some(tool.name),
                            arguments: Some(String::new()),
                        }),
                        ..ToolCallDelta::default()
                    });
                    self.push(&mut out, delta, None);
                }
            }
            Event::ContentBlockDelta(delta) => {
                if let Some(delta) = self.delta(delta.content_block_index, delta.delta) {
                    self.push(&mut out, delta, None);
                }
            }
            Event::ContentBlockStop(_) => {}
            Event::MessageStop(stop) => {
                self.stopped = true;
                self.push(&mut out, Delta::default(), Some(finish_reason(&stop.stop_reason)));
            }
            Event::Metadata(metadata) => self.usage = Some(metadata.usage),
        }
        Ok(out)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if !self.stopped {
            return Err(ProviderError::Interrupted(
                "the bedrock stream ended before its messageStop event".into(),
            ));
        }
        let mut out = Vec::with_capacity(2);
        if let Some(counts) = self.usage.as_ref().map(usage) {
            out.push(StreamEvent::Usage(counts.to_usage()));
            if self.wants_usage {
                let chunk = ChatChunk::usage(&self.id, self.created, &self.model, counts);
                out.push(StreamEvent::Data(Bytes::from(chunk.to_json(true))));
            }
        }
        Ok(out)
    }
}
