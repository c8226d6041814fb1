//! Anthropic's event stream as OpenAI chunks: a small state machine fed one event at a time.
//!
//! `message_start` gives the id, model and input usage; each `content_block_start` of a tool
//! call opens an OpenAI tool call (index, id, name) whose `input_json_delta`s become argument
//! deltas; `message_delta` gives the finish reason and the final counts; `message_stop` ends the
//! answer with the usage. The role chunk waits for the first content, so an `error` event that
//! follows `message_start` (Anthropic's overloads often do) still fails the attempt before the
//! client has seen a byte.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Map;

use super::{finish_reason, openai_id};
use crate::{
    formats::{
        anthropic::{self, BlockDelta, ContentBlock, Event, StopReason},
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
    id: String,
    model: String,
    usage: anthropic::Usage,
    /// OpenAI tool-call index by Anthropic content-block index.
    tools: HashMap<u32, u32>,
    /// Whether the role chunk went out.
    started: bool,
    /// Whether `message_stop` came, which reports the usage: the answer is whole, nothing follows.
    stopped: bool,
}

impl Translator {
    /// A translator for an answer made at `created`; `wants_usage` as the client asked.
    pub fn new(wants_usage: bool, created: u64) -> Self {
        Self {
            wants_usage,
            created,
            id: String::new(),
            model: String::new(),
            usage: anthropic::Usage::default(),
            tools: HashMap::new(),
            started: false,
            stopped: false,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&str>) -> StreamEvent {
        let chunk = ChatChunk::delta(&self.id, self.created, &self.model, 0, delta, finish.map(str::to_owned));
        StreamEvent::Data(Bytes::from(chunk.to_json(self.wants_usage)))
    }

    /// A content chunk, preceded by the role chunk the first time.
    fn content(&mut self, delta: Delta, finish: Option<&str>) -> Vec<StreamEvent> {
        let mut out = Vec::with_capacity(2);
        if !self.started {
            self.started = true;
            out.push(self.chunk(Delta::role(), None));
        }
        out.push(self.chunk(delta, finish));
        out
    }

    fn text(&mut self, text: String) -> Vec<StreamEvent> {
        if text.is_empty() {
            return Vec::new();
        }
        self.content(Delta::text(text), None)
    }
}

impl StreamTranslator for Translator {
    type Event = Event;
    const EVENT: &'static str = "an anthropic stream event";

    fn on(&mut self, event: Event) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.stopped {
            // A second message_stop would report the usage twice.
            return Err(ProviderError::InvalidResponse(format!(
                "an anthropic stream sent {} after message_stop",
                event.name()
            )));
        }
        Ok(match event {
            Event::MessageStart { message } => {
                self.id = openai_id(&message.id);
                self.model = message.model;
                self.usage = message.usage;
                Vec::new()
            }
            Event::ContentBlockStart { index, content_block } => match content_block {
                ContentBlock::Text(block) => self.text(block.text),
                ContentBlock::ToolUse(call) => {
                    let tool_index = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                    self.tools.insert(index, tool_index);
                    // The input streams as JSON text next; a non-empty start input is already whole.
                    let arguments = match call.input.as_object() {
                        Some(map) if map.is_empty() => String::new(),
                        None if call.input.is_null() => String::new(),
                        _ => call.input.to_string(),
                    };
                    self.content(
                        Delta::tool_call(ToolCallDelta {
                            index: tool_index,
                            id: Some(call.id),
                            kind: Some("function".into()),
                            function: Some(FunctionDelta {
                                name: Some(call.name),
                                arguments: Some(arguments),
                            }),
                            rest: Map::new(),
                        }),
                        None,
                    )
                }
                ContentBlock::Thinking(block) if !block.thinking.is_empty() => {
                    self.content(Delta::reasoning(block.thinking), None)
                }
                _ => Vec::new(),
            },
            Event::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => self.text(text),
                BlockDelta::InputJsonDelta { partial_json } if partial_json.is_empty() => Vec::new(),
                BlockDelta::InputJsonDelta { partial_json } => {
                    let tool_index = *self.tools.get(&index).ok_or_else(|| {
                        ProviderError::InvalidResponse(format!(
                            "input_json_delta for content block {index}, which is not a tool_use block"
                        ))
                    })?;
                    self.content(
                        Delta::tool_call(ToolCallDelta {
                            index: tool_index,
                            function: Some(FunctionDelta {
                                name: None,
                                arguments: Some(partial_json),
                            }),
                            ..ToolCallDelta::default()
                        }),
                        None,
                    )
                }
                BlockDelta::ThinkingDelta { thinking } if !thinking.is_empty() => {
                    self.content(Delta::reasoning(thinking), None)
                }
                _ => Vec::new(),
            },
            Event::MessageDelta { delta, usage } => {
                self.usage.output_tokens = usage.output_tokens;
                // Counts on a message_delta are cumulative; absent ones keep message_start's.
                if let Some(n) = usage.input_tokens {
                    self.usage.input_tokens = n;
                }
                if let Some(n) = usage.cache_creation_input_tokens {
                    self.usage.cache_creation_input_tokens = Some(n);
                }
                if let Some(n) = usage.cache_read_input_tokens {
                    self.usage.cache_read_input_tokens = Some(n);
                }
                let finish = finish_reason(Some(delta.stop_reason.unwrap_or(StopReason::EndTurn)));
                self.content(Delta::default(), Some(finish))
            }
            Event::MessageStop => {
                self.stopped = true;
                let usage = super::usage(&self.usage);
                let mut out = vec![StreamEvent::Usage(usage.to_usage())];
                if self.wants_usage {
                    let chunk = ChatChunk::usage(&self.id, self.created, &self.model, usage);
                    out.push(StreamEvent::Data(Bytes::from(chunk.to_json(true))));
                }
                out
            }
            Event::Error { error } => {
                return Err(super::error(
                    anthropic::status_for(&error.kind),
                    &error.kind,
                    &error.message,
                ));
            }
            Event::ContentBlockStop { .. } | Event::Ping | Event::Unknown => Vec::new(),
        })
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        // The event stream ends cleanly at an event *named* `message_stop` or `error`; unless its
        // data was the stop (which said everything), the answer and its usage are not whole.
        if self.stopped {
            Ok(Vec::new())
        } else {
            Err(ProviderError::Interrupted(
                "the anthropic stream ended without a message_stop event".into(),
            ))
        }
    }
}
