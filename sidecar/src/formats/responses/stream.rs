//! The events of a streamed Response: each carries its `type` (which the SSE `event:` name
//! repeats) and a `sequence_number` counting from 0 across the stream.

use serde::{Deserialize, Serialize};

use super::{OutputItem, OutputText, Response};

/// One event of a streamed Response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
    /// Its place in the stream, from 0.
    pub sequence_number: u64,
}

impl Event {
    /// The event's `type`, for the SSE `event:` line.
    pub fn name(&self) -> &'static str {
        match &self.body {
            EventBody::Created { .. } => "response.created",
            EventBody::InProgress { .. } => "response.in_progress",
            EventBody::Completed { .. } => "response.completed",
            EventBody::Incomplete { .. } => "response.incomplete",
            EventBody::Failed { .. } => "response.failed",
            EventBody::OutputItemAdded { .. } => "response.output_item.added",
            EventBody::OutputItemDone { .. } => "response.output_item.done",
            EventBody::ContentPartAdded { .. } => "response.content_part.added",
            EventBody::ContentPartDone { .. } => "response.content_part.done",
            EventBody::OutputTextDelta { .. } => "response.output_text.delta",
            EventBody::OutputTextDone { .. } => "response.output_text.done",
            EventBody::ReasoningTextDelta { .. } => "response.reasoning_text.delta",
            EventBody::ReasoningTextDone { .. } => "response.reasoning_text.done",
            EventBody::FunctionCallArgumentsDelta { .. } => "response.function_call_arguments.delta",
            EventBody::FunctionCallArgumentsDone { .. } => "response.function_call_arguments.done",
            EventBody::Error { .. } => "error",
        }
    }
}

/// What an event says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventBody {
    /// The stream began: the Response, in progress, with no output.
    #[serde(rename = "response.created")]
    Created {
        /// The Response so far.
        response: Box<Response>,
    },
    /// The model is working.
    #[serde(rename = "response.in_progress")]
    InProgress {
        /// The Response so far.
        response: Box<Response>,
    },
    /// The Response is whole, with its usage.
    #[serde(rename = "response.completed")]
    Completed {
        /// The whole Response.
        response: Box<Response>,
    },
    /// The Response stopped early.
    #[serde(rename = "response.incomplete")]
    Incomplete {
        /// The Response as far as it went.
        response: Box<Response>,
    },
    /// The Response broke off.
    #[serde(rename = "response.failed")]
    Failed {
        /// The Response as far as it went, with its `error`.
        response: Box<Response>,
    },
    /// An output item begins.
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        /// Its place in `output`.
        output_index: u32,
        /// The item, empty.
        item: OutputItem,
    },
    /// An output item is whole.
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        /// Its place in `output`.
        output_index: u32,
        /// The whole item.
        item: OutputItem,
    },
    /// A content part of a message (or reasoning item) begins.
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        /// The item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The part's place in the item's content.
        content_index: u32,
        /// The part, empty.
        part: Part,
    },
    /// A content part is whole.
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        /// The item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The part's place in the item's content.
        content_index: u32,
        /// The whole part.
        part: Part,
    },
    /// More answer text.
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        /// The message item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The part's place in the message.
        content_index: u32,
        /// The new text.
        delta: String,
        /// Log probabilities (none from a translated answer).
        logprobs: Vec<serde_json::Value>,
    },
    /// A text part is whole.
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        /// The message item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The part's place in the message.
        content_index: u32,
        /// The whole text.
        text: String,
        /// Log probabilities (none from a translated answer).
        logprobs: Vec<serde_json::Value>,
    },
    /// More reasoning text.
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningTextDelta {
        /// The reasoning item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The part's place in the item's content.
        content_index: u32,
        /// The new text.
        delta: String,
    },
    /// A reasoning text is whole.
    #[serde(rename = "response.reasoning_text.done")]
    ReasoningTextDone {
        /// The reasoning item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The part's place in the item's content.
        content_index: u32,
        /// The whole text.
        text: String,
    },
    /// More of a call's arguments.
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta {
        /// The function call item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The new argument text.
        delta: String,
    },
    /// A call's arguments are whole.
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        /// The function call item.
        item_id: String,
        /// Its place in `output`.
        output_index: u32,
        /// The function.
        name: String,
        /// The whole arguments.
        arguments: String,
    },
    /// The stream failed.
    #[serde(rename = "error")]
    Error {
        /// A machine-readable code.
        code: Option<String>,
        /// What happened.
        message: String,
        /// The request field at fault, if any.
        param: Option<String>,
    },
}

/// A content part as the part events carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Part {
    /// Answer text.
    Text(OutputText),
    /// Reasoning text.
    Reasoning(super::ReasoningText),
}
