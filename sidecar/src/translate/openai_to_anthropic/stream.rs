//! A streamed OpenAI answer as Anthropic's events, for the `/v1/messages` endpoint: the
//! pipeline's chunks translated as they arrive ([`Translator`]), or a whole answer as the events
//! that would have streamed it ([`message_events`]). Framing the events as SSE is the endpoint's.
//!
//! The first chunk opens the message (`message_start`); text, reasoning and each tool call become
//! content blocks (`content_block_start`, deltas, `content_block_stop`), one open at a time; the
//! finish reason and the usage (which OpenAI sends after it) go out together in `message_delta`
//! when the stream ends, then `message_stop`. An upstream failure mid-way becomes an `error`
//! event ([`Translator::fail`]), the last one, which the Anthropic SDKs raise.

use std::collections::HashMap;

use serde_json::{Map, json};

use super::{anthropic_id, stop_reason, zero_usage};
use crate::{
    formats::{
        anthropic::{
            self, BlockDelta, ContentBlock, DeltaUsage, ErrorObject, Event, MessageDelta, MessagesResponse, StopReason,
            ThinkingBlock, ToolUseBlock, error_type_for,
        },
        openai::{ChatChunk, CompletionUsage},
    },
    wire::{ProviderError, Usage},
};

/// The block receiving deltas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u32),
    Thinking(u32),
    Tool(u32),
}

impl Open {
    fn index(self) -> u32 {
        match self {
            Self::Text(i) | Self::Thinking(i) | Self::Tool(i) => i,
        }
    }
}

/// The translation of one streamed answer into Anthropic's events.
#[derive(Debug, Default)]
pub struct Translator {
    started: bool,
    id: String,
    model: String,
    next_block: u32,
    open: Option<Open>,
    /// Block index by OpenAI tool-call index.
    tools: HashMap<u32, u32>,
    stop: Option<StopReason>,
    usage: Option<CompletionUsage>,
    metered: Option<Usage>,
}

impl Translator {
    /// Events for one OpenAI chunk.
    pub fn chunk(&mut self, payload: &[u8]) -> Result<Vec<Event>, ProviderError> {
        let chunk: ChatChunk = serde_json::from_slice(payload).map_err(|e| {
            ProviderError::InvalidResponse(format!("a stream chunk is not a chat.completion.chunk: {e}"))
        })?;
        let mut out = Vec::new();
        self.start(&mut out, &chunk.id, &chunk.model);
        if let Some(usage) = chunk.usage.counts() {
            self.usage = Some(usage.clone());
        }
        // Anthropic answers one choice; further choices have nowhere to go.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta;
            if let Some(thinking) = delta.reasoning_content.filter(|t| !t.is_empty()) {
                let index = self.open_block(&mut out, Open::Thinking, || {
                    ContentBlock::Thinking(ThinkingBlock {
                        thinking: String::new(),
                        signature: String::new(),
                    })
                });
                out.push(Event::ContentBlockDelta {
                    index,
                    delta: BlockDelta::ThinkingDelta { thinking },
                });
            }
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                let index = self.open_block(&mut out, Open::Text, || ContentBlock::text(""));
                out.push(Event::ContentBlockDelta {
                    index,
                    delta: BlockDelta::TextDelta { text },
                });
            }
            for call in delta.tool_calls {
                let index = match self.tools.get(&call.index) {
                    // Anthropic's blocks come one after another: a closed block cannot take
                    // more arguments, and a second block for the same call would split its JSON.
                    Some(index) if self.open != Some(Open::Tool(*index)) => {
                        return Err(ProviderError::InvalidResponse(format!(
                            "the upstream went back to tool call {} after another content block, which an \
                             Anthropic stream cannot carry",
                            call.index
                        )));
                    }
                    Some(index) => *index,
                    None => {
                        let function = call.function.clone().unwrap_or_default();
                        let block = ContentBlock::ToolUse(ToolUseBlock {
                            id: call
                                .id
                                .clone()
                                .unwrap_or_else(|| format!("toolu_{}_{}", self.id, call.index)),
                            name: function.name.unwrap_or_default(),
                            input: json!({}),
                            rest: Map::new(),
                        });
                        let index = self.open_block(&mut out, Open::Tool, || block);
                        self.tools.insert(call.index, index);
                        index
                    }
                };
                if let Some(partial_json) = call.function.and_then(|f| f.arguments).filter(|a| !a.is_empty()) {
                    out.push(Event::ContentBlockDelta {
                        index,
                        delta: BlockDelta::InputJsonDelta { partial_json },
                    });
                }
            }
            if let Some(finish) = choice.finish_reason {
                self.stop = Some(stop_reason(&finish));
            }
        }
        Ok(out)
    }

    /// Usage the pipeline metered, for when the answer's chunks carried none.
    pub fn metered(&mut self, usage: Usage) {
        self.metered = Some(usage);
    }

    /// The events that end a whole answer.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::with_capacity(4);
        self.start(&mut out, "", "");
        self.close(&mut out);
        let usage = match (&self.usage, self.metered) {
            (Some(usage), _) => delta_usage(&super::usage(usage)),
            (None, Some(metered)) => delta_usage(&super::usage(&CompletionUsage::of(&metered))),
            (None, None) => DeltaUsage::default(),
        };
        out.push(Event::MessageDelta {
            delta: MessageDelta {
                stop_reason: Some(self.stop.unwrap_or(StopReason::EndTurn)),
                stop_sequence: None,
            },
            usage,
        });
        out.push(Event::MessageStop);
        out
    }

    /// The event that reports a failure after the stream began.
    pub fn fail(&mut self, error: &ProviderError) -> Vec<Event> {
        let kind = match error {
            ProviderError::Status { status, .. } => error_type_for(status.as_u16()),
            ProviderError::Timeout(_) => "timeout_error",
            ProviderError::BudgetSpent(_) => "rate_limit_error",
            _ => "api_error",
        };
        vec![Event::Error {
            error: ErrorObject {
                kind: kind.into(),
                message: error.to_string(),
            },
        }]
    }

    /// `message_start`, once, from the first chunk's id and model.
    fn start(&mut self, out: &mut Vec<Event>, id: &str, model: &str) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = anthropic_id(id);
        self.model = model.to_owned();
        out.push(Event::MessageStart {
            message: MessagesResponse {
                id: self.id.clone(),
                kind: "message".into(),
                role: "assistant".into(),
                model: self.model.clone(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: zero_usage(),
                rest: Map::new(),
            },
        });
    }

    /// The index of the open block of `kind`, opening a new one (and closing the previous) if
    /// the open block is of another kind. Tool blocks are opened once per call.
    fn open_block(&mut self, out: &mut Vec<Event>, kind: fn(u32) -> Open, block: impl FnOnce() -> ContentBlock) -> u32 {
        let wanted = kind(self.next_block);
        if let Some(open) = self.open
            && std::mem::discriminant(&open) == std::mem::discriminant(&wanted)
            && !matches!(open, Open::Tool(_))
        {
            return open.index();
        }
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        out.push(Event::ContentBlockStart {
            index,
            content_block: block(),
        });
        self.open = Some(wanted);
        index
    }

    fn close(&mut self, out: &mut Vec<Event>) {
        if let Some(open) = self.open.take() {
            out.push(Event::ContentBlockStop { index: open.index() });
        }
    }
}

fn delta_usage(usage: &anthropic::Usage) -> DeltaUsage {
    DeltaUsage {
        output_tokens: usage.output_tokens,
        input_tokens: Some(usage.input_tokens),
        cache_creation_input_tokens: usage.cache_creation_input_tokens,
        cache_read_input_tokens: usage.cache_read_input_tokens,
    }
}

/// A whole message as the events that would have streamed it.
pub fn message_events(message: &MessagesResponse) -> Vec<Event> {
    let mut skeleton = message.clone();
    skeleton.content = Vec::new();
    skeleton.stop_reason = None;
    skeleton.stop_sequence = None;
    skeleton.usage.output_tokens = 0;
    let mut events = vec![Event::MessageStart { message: skeleton }];
    for (index, block) in (0u32..).zip(&message.content) {
        let (start, delta) = match block {
            ContentBlock::Text(t) => (
                ContentBlock::text(""),
                Some(BlockDelta::TextDelta { text: t.text.clone() }),
            ),
            ContentBlock::Thinking(t) => (
                ContentBlock::Thinking(ThinkingBlock {
                    thinking: String::new(),
                    signature: t.signature.clone(),
                }),
                Some(BlockDelta::ThinkingDelta {
                    thinking: t.thinking.clone(),
                }),
            ),
            ContentBlock::ToolUse(call) => (
                ContentBlock::ToolUse(ToolUseBlock {
                    input: json!({}),
                    ..call.clone()
                }),
                Some(BlockDelta::InputJsonDelta {
                    partial_json: call.input.to_string(),
                }),
            ),
            other => (other.clone(), None),
        };
        events.push(Event::ContentBlockStart {
            index,
            content_block: start,
        });
        events.extend(delta.map(|delta| Event::ContentBlockDelta { index, delta }));
        events.push(Event::ContentBlockStop { index });
    }
    events.push(Event::MessageDelta {
        delta: MessageDelta {
            stop_reason: message.stop_reason,
            stop_sequence: message.stop_sequence.clone(),
        },
        usage: delta_usage(&message.usage),
    });
    events.push(Event::MessageStop);
    events
}
