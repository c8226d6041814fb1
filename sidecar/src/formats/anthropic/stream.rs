//! The events of a streamed answer: the SSE `event:` name repeats each one's `type`.

use serde::{Deserialize, Serialize};

use super::{ContentBlock, ErrorObject, MessagesResponse, StopReason};

/// One event of a streamed answer; the SSE `event:` name repeats its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The message skeleton, with input usage.
    MessageStart {
        /// Id, model, empty content, usage so far.
        message: MessagesResponse,
    },
    /// A block begins.
    ContentBlockStart {
        /// Its position in `content`.
        index: u32,
        /// The block, empty (a tool call's `input` is `{}`).
        content_block: ContentBlock,
    },
    /// More of a block.
    ContentBlockDelta {
        /// The block.
        index: u32,
        /// What is new.
        delta: BlockDelta,
    },
    /// A block ends.
    ContentBlockStop {
        /// The block.
        index: u32,
    },
    /// The stop reason and cumulative usage.
    MessageDelta {
        /// Stop reason and sequence.
        delta: MessageDelta,
        /// Usage so far.
        usage: DeltaUsage,
    },
    /// The end.
    MessageStop,
    /// A keep-alive.
    Ping,
    /// A failure after the stream began (`overloaded_error`, …).
    Error {
        /// What failed.
        error: ErrorObject,
    },
    /// An event type this version does not know; ignored as Anthropic asks clients to.
    #[serde(other)]
    Unknown,
}

impl Event {
    /// The SSE `event:` name of this event.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Ping => "ping",
            Self::Error { .. } => "error",
            Self::Unknown => "unknown",
        }
    }
}

/// What a `content_block_delta` adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    /// More text.
    TextDelta {
        /// The text.
        text: String,
    },
    /// More of a tool call's input, as JSON text.
    InputJsonDelta {
        /// The JSON text.
        partial_json: String,
    },
    /// More reasoning.
    ThinkingDelta {
        /// The text.
        thinking: String,
    },
    /// The reasoning's signature.
    SignatureDelta {
        /// The signature.
        signature: String,
    },
    /// A delta type this version does not know (citations, …).
    #[serde(other)]
    Other,
}

/// `delta` of a `message_delta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDelta {
    /// Why generation stopped.
    #[serde(default)]
    pub stop_reason: Option<StopReason>,
    /// Which stop sequence matched.
    #[serde(default)]
    pub stop_sequence: Option<String>,
}

/// `usage` of a `message_delta`: cumulative counts, optional ones absent when unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaUsage {
    /// Output tokens so far.
    #[serde(default)]
    pub output_tokens: u64,
    /// Uncached input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Input tokens written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}
