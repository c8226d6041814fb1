//! A streamed chat answer as the Responses events, for the `/v1/responses` endpoint: the
//! pipeline's chunks translated as they arrive ([`Translator`]), or a whole Response as the
//! events that would have streamed it ([`response_events`]). Framing them as SSE is the
//! endpoint's.
//!
//! The stream opens with `response.created` and `response.in_progress`. Reasoning, text and each
//! tool call become output items, one open at a time, in the order OpenAI's own stream has them:
//! `response.output_item.added`, for text and reasoning `response.content_part.added`, the
//! deltas, then the `…done` events that repeat the whole. The end is `response.completed` (or
//! `response.incomplete` after a length limit) with the whole Response and its usage; a failure
//! after the first event is `response.failed` with the output so far and the error, the last
//! event. Every event carries `sequence_number`, counting from 0.

use std::collections::HashMap;

use super::{base_id, call_item_id, call_name, ending, reasoning_item, shell, usage};
use crate::{
    formats::{
        openai::{ChatChunk, CompletionUsage},
        responses::{
            FunctionCallItem, OutputItem, OutputMessage, OutputText, ReasoningText, Response, ResponseError,
            ResponsesRequest, Status,
            stream::{Event, EventBody, Part},
        },
    },
    wire::{ProviderError, Usage},
};

/// The translation of one streamed answer into the Responses events.
#[derive(Debug)]
pub struct Translator {
    request: ResponsesRequest,
    /// The Response so far; set by the first chunk.
    response: Option<Response>,
    base: String,
    sequence: u64,
    /// The output item receiving deltas.
    open: Option<usize>,
    /// Output index by chat tool-call index.
    calls: HashMap<u32, usize>,
    finish: Option<String>,
    usage: Option<CompletionUsage>,
    metered: Option<Usage>,
}

impl Translator {
    /// A translator echoing `request`'s settings into the Response.
    pub fn new(request: ResponsesRequest) -> Self {
        Self {
            request,
            response: None,
            base: String::new(),
            sequence: 0,
            open: None,
            calls: HashMap::new(),
            finish: None,
            usage: None,
            metered: None,
        }
    }

    /// Events for one chat chunk.
    pub fn chunk(&mut self, payload: &[u8]) -> Result<Vec<Event>, ProviderError> {
        let chunk: ChatChunk = serde_json::from_slice(payload).map_err(|e| {
            ProviderError::InvalidResponse(format!("a stream chunk is not a chat.completion.chunk: {e}"))
        })?;
        let mut out = Vec::new();
        self.start(&mut out, &chunk.id, &chunk.model, chunk.created);
        if let Some(counts) = chunk.usage.counts() {
            self.usage = Some(counts.clone());
        }
        // The Responses API answers one choice.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta;
            if let Some(text) = delta.reasoning_content.filter(|t| !t.is_empty()) {
                self.reasoning_delta(&mut out, text);
            }
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.text_delta(&mut out, text);
            }
            for call in delta.tool_calls {
                let index = match self.calls.get(&call.index) {
                    Some(&index) if self.open == Some(index) => index,
                    Some(_) => {
                        return Err(ProviderError::InvalidResponse(format!(
                            "the upstream went back to tool call {} after another output item",
                            call.index
                        )));
                    }
                    None => {
                        let function = call.function.clone().unwrap_or_default();
                        let (namespace, name) = call_name(&self.request, &function.name.unwrap_or_default());
                        let n = self.calls.len();
                        let item = OutputItem::FunctionCall(FunctionCallItem {
                            id: Some(call_item_id(&self.base, n)),
                            call_id: call.id.clone().unwrap_or_else(|| format!("call_{}_{n}", self.base)),
                            name,
                            namespace,
                            arguments: String::new(),
                            status: Some("in_progress".into()),
                            rest: call.rest.clone(),
                        });
                        let index = self.open_item(&mut out, item);
                        self.calls.insert(call.index, index);
                        index
                    }
                };
                if let Some(arguments) = call.function.and_then(|f| f.arguments).filter(|a| !a.is_empty()) {
                    let item_id = self.item_id(index);
                    if let Some(OutputItem::FunctionCall(c)) = self.item_mut(index) {
                        c.arguments.push_str(&arguments);
                    }
                    self.emit(
                        &mut out,
                        EventBody::FunctionCallArgumentsDelta {
                            item_id,
                            output_index: index as u32,
                            delta: arguments,
                        },
                    );
                }
            }
            if let Some(finish) = choice.finish_reason {
                self.finish = Some(finish);
            }
        }
        Ok(out)
    }

    /// Usage the pipeline metered, for when the answer's chunks carried none.
    pub fn metered(&mut self, usage: Usage) {
        self.metered = Some(usage);
    }

    /// The events that end a whole answer: the open item's `…done` events, then
    /// `response.completed` (or `response.incomplete`) with the usage.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.start(&mut out, "", "", 0);
        self.close(&mut out);
        let counts = match (&self.usage, self.metered) {
            (Some(counts), _) => Some(usage(counts)),
            (None, Some(metered)) => Some(usage(&CompletionUsage::of(&metered))),
            (None, None) => None,
        };
        let (status, details) = ending(self.finish.as_deref());
        let Some(response) = self.response.as_mut() else {
            return out;
        };
        response.status = status;
        response.incomplete_details = details;
        response.usage = counts;
        let response = Box::new(response.clone());
        let body = match status {
            Status::Incomplete => EventBody::Incomplete { response },
            _ => EventBody::Completed { response },
        };
        self.emit(&mut out, body);
        out
    }

    /// The event that reports a failure after the stream began: `response.failed`, with the
    /// output so far (an unfinished item marked `incomplete`) and the error.
    pub fn fail(&mut self, error: &ProviderError) -> Vec<Event> {
        let mut out = Vec::new();
        self.start(&mut out, "", "", 0);
        let code = match error {
            ProviderError::BudgetSpent(_) => "budget_exceeded",
            ProviderError::Timeout(_) => "upstream_timeout",
            ProviderError::Status { status, .. } if status.as_u16() == 429 => "rate_limit_exceeded",
            _ => "server_error",
        };
        if let Some(index) = self.open.take() {
            set_status(self.item_mut(index), "incomplete");
        }
        let Some(response) = self.response.as_mut() else {
            return out;
        };
        response.status = Status::Failed;
        response.error = Some(ResponseError {
            code: code.into(),
            message: error.to_string(),
        });
        response.usage = self.metered.map(|m| usage(&CompletionUsage::of(&m)));
        let response = Box::new(response.clone());
        self.emit(&mut out, EventBody::Failed { response });
        out
    }

    /// `response.created` and `response.in_progress`, once, from the first chunk.
    fn start(&mut self, out: &mut Vec<Event>, id: &str, model: &str, created: u64) {
        if self.response.is_some() {
            return;
        }
        self.base = base_id(id).to_owned();
        let response = shell(&self.request, id, model, created);
        self.emit(
            out,
            EventBody::Created {
                response: Box::new(response.clone()),
            },
        );
        self.emit(
            out,
            EventBody::InProgress {
                response: Box::new(response.clone()),
            },
        );
        self.response = Some(response);
    }

    fn emit(&mut self, out: &mut Vec<Event>, body: EventBody) {
        out.push(Event {
            body,
            sequence_number: self.sequence,
        });
        self.sequence += 1;
    }

    fn item_mut(&mut self, index: usize) -> Option<&mut OutputItem> {
        self.response.as_mut()?.output.get_mut(index)
    }

    fn item(&self, index: usize) -> Option<&OutputItem> {
        self.response.as_ref()?.output.get(index)
    }

    fn item_id(&self, index: usize) -> String {
        match self.item(index) {
            Some(OutputItem::Message(m)) => m.id.clone(),
            Some(OutputItem::Reasoning(r)) => r.id.clone(),
            Some(OutputItem::FunctionCall(c)) => c.id.clone().unwrap_or_default(),
            None => String::new(),
        }
    }

    /// Closes the open item and opens `item` (empty) after it; its output index.
    fn open_item(&mut self, out: &mut Vec<Event>, item: OutputItem) -> usize {
        self.close(out);
        let Some(response) = self.response.as_mut() else {
            return 0;
        };
        let index = response.output.len();
        response.output.push(item.clone());
        self.open = Some(index);
        self.emit(
            out,
            EventBody::OutputItemAdded {
                output_index: index as u32,
                item,
            },
        );
        index
    }

    fn reasoning_delta(&mut self, out: &mut Vec<Event>, text: String) {
        let index = match self.open {
            Some(i) if matches!(self.item(i), Some(OutputItem::Reasoning(_))) => i,
            _ => {
                let mut item = reasoning_item(&self.base, String::new());
                item.content = Some(Vec::new());
                let index = self.open_item(out, OutputItem::Reasoning(item));
                self.emit_part_added(out, index, Part::Reasoning(reasoning_text(String::new())));
                if let Some(OutputItem::Reasoning(r)) = self.item_mut(index) {
                    r.content = Some(vec![reasoning_text(String::new())]);
                }
                index
            }
        };
        if let Some(OutputItem::Reasoning(r)) = self.item_mut(index)
            && let Some(part) = r.content.as_mut().and_then(|c| c.first_mut())
        {
            part.text.push_str(&text);
        }
        let item_id = self.item_id(index);
        self.emit(
            out,
            EventBody::ReasoningTextDelta {
                item_id,
                output_index: index as u32,
                content_index: 0,
                delta: text,
            },
        );
    }

    fn text_delta(&mut self, out: &mut Vec<Event>, text: String) {
        let index = match self.open {
            Some(i) if matches!(self.item(i), Some(OutputItem::Message(_))) => i,
            _ => {
                let message = OutputMessage {
                    id: format!("msg_{}", self.base),
                    status: "in_progress".into(),
                    role: "assistant".into(),
                    content: Vec::new(),
                };
                let index = self.open_item(out, OutputItem::Message(message));
                self.emit_part_added(out, index, Part::Text(OutputText::new(String::new())));
                if let Some(OutputItem::Message(m)) = self.item_mut(index) {
                    m.content.push(OutputText::new(String::new()));
                }
                index
            }
        };
        if let Some(OutputItem::Message(m)) = self.item_mut(index)
            && let Some(part) = m.content.first_mut()
        {
            part.text.push_str(&text);
        }
        let item_id = self.item_id(index);
        self.emit(
            out,
            EventBody::OutputTextDelta {
                item_id,
                output_index: index as u32,
                content_index: 0,
                delta: text,
                logprobs: Vec::new(),
            },
        );
    }

    fn emit_part_added(&mut self, out: &mut Vec<Event>, index: usize, part: Part) {
        let item_id = self.item_id(index);
        self.emit(
            out,
            EventBody::ContentPartAdded {
                item_id,
                output_index: index as u32,
                content_index: 0,
                part,
            },
        );
    }

    /// The open item's `…done` events, its status `completed`.
    fn close(&mut self, out: &mut Vec<Event>) {
        let Some(index) = self.open.take() else { return };
        set_status(self.item_mut(index), "completed");
        let Some(item) = self.item(index).cloned() else {
            return;
        };
        let output_index = index as u32;
        let item_id = self.item_id(index);
        match &item {
            OutputItem::Message(m) => {
                let part = m
                    .content
                    .first()
                    .cloned()
                    .unwrap_or_else(|| OutputText::new(String::new()));
                self.emit(
                    out,
                    EventBody::OutputTextDone {
                        item_id: item_id.clone(),
                        output_index,
                        content_index: 0,
                        text: part.text.clone(),
                        logprobs: Vec::new(),
                    },
                );
                self.emit(
                    out,
                    EventBody::ContentPartDone {
                        item_id,
                        output_index,
                        content_index: 0,
                        part: Part::Text(part),
                    },
                );
            }
            OutputItem::Reasoning(r) => {
                let part = r
                    .content
                    .as_ref()
                    .and_then(|c| c.first())
                    .cloned()
                    .unwrap_or_else(|| reasoning_text(String::new()));
                self.emit(
                    out,
                    EventBody::ReasoningTextDone {
                        item_id: item_id.clone(),
                        output_index,
                        content_index: 0,
                        text: part.text.clone(),
                    },
                );
                self.emit(
                    out,
                    EventBody::ContentPartDone {
                        item_id,
                        output_index,
                        content_index: 0,
                        part: Part::Reasoning(part),
                    },
                );
            }
            OutputItem::FunctionCall(c) => {
                self.emit(
                    out,
                    EventBody::FunctionCallArgumentsDone {
                        item_id,
                        output_index,
                        name: c.name.clone(),
                        arguments: c.arguments.clone(),
                    },
                );
            }
        }
        self.emit(out, EventBody::OutputItemDone { output_index, item });
    }
}

fn reasoning_text(text: String) -> ReasoningText {
    ReasoningText {
        kind: "reasoning_text".into(),
        text,
    }
}

fn set_status(item: Option<&mut OutputItem>, status: &str) {
    match item {
        Some(OutputItem::Message(m)) => status.clone_into(&mut m.status),
        Some(OutputItem::FunctionCall(c)) => c.status = Some(status.to_owned()),
        Some(OutputItem::Reasoning(r)) => {
            r.rest.insert("status".into(), status.into());
        }
        None => {}
    }
}

/// A whole Response as the events that would have streamed it, each text in one delta.
pub fn response_events(whole: &Response) -> Vec<Event> {
    let mut sequence = 0;
    let mut out = Vec::new();
    let mut emit = |body: EventBody| {
        out.push(Event {
            body,
            sequence_number: sequence,
        });
        sequence += 1;
    };
    let mut opening = whole.clone();
    opening.status = Status::InProgress;
    opening.output.clear();
    opening.usage = None;
    opening.incomplete_details = None;
    emit(EventBody::Created {
        response: Box::new(opening.clone()),
    });
    emit(EventBody::InProgress {
        response: Box::new(opening),
    });
    for (index, item) in whole.output.iter().enumerate() {
        let output_index = index as u32;
        match item {
            OutputItem::Message(m) => {
                let mut empty = m.clone();
                empty.status = "in_progress".into();
                empty.content.clear();
                emit(EventBody::OutputItemAdded {
                    output_index,
                    item: OutputItem::Message(empty),
                });
                for (content_index, part) in m.content.iter().enumerate() {
                    let content_index = content_index as u32;
                    emit(EventBody::ContentPartAdded {
                        item_id: m.id.clone(),
                        output_index,
                        content_index,
                        part: Part::Text(OutputText::new(String::new())),
                    });
                    if !part.text.is_empty() {
                        emit(EventBody::OutputTextDelta {
                            item_id: m.id.clone(),
                            output_index,
                            content_index,
                            delta: part.text.clone(),
                            logprobs: Vec::new(),
                        });
                    }
                    emit(EventBody::OutputTextDone {
                        item_id: m.id.clone(),
                        output_index,
                        content_index,
                        text: part.text.clone(),
                        logprobs: Vec::new(),
                    });
                    emit(EventBody::ContentPartDone {
                        item_id: m.id.clone(),
                        output_index,
                        content_index,
                        part: Part::Text(part.clone()),
                    });
                }
            }
            OutputItem::Reasoning(r) => {
                let mut empty = r.clone();
                empty.content = Some(Vec::new());
                emit(EventBody::OutputItemAdded {
                    output_index,
                    item: OutputItem::Reasoning(empty),
                });
                for (content_index, part) in r.content.iter().flatten().enumerate() {
                    let content_index = content_index as u32;
                    emit(EventBody::ContentPartAdded {
                        item_id: r.id.clone(),
                        output_index,
                        content_index,
                        part: Part::Reasoning(reasoning_text(String::new())),
                    });
                    emit(EventBody::ReasoningTextDelta {
                        item_id: r.id.clone(),
                        output_index,
                        content_index,
                        delta: part.text.clone(),
                    });
                    emit(EventBody::ReasoningTextDone {
                        item_id: r.id.clone(),
                        output_index,
                        content_index,
                        text: part.text.clone(),
                    });
                    emit(EventBody::ContentPartDone {
                        item_id: r.id.clone(),
                        output_index,
                        content_index,
                        part: Part::Reasoning(part.clone()),
                    });
                }
            }
            OutputItem::FunctionCall(c) => {
                let item_id = c.id.clone().unwrap_or_default();
                let mut empty = c.clone();
                empty.arguments.clear();
                empty.status = Some("in_progress".into());
                emit(EventBody::OutputItemAdded {
                    output_index,
                    item: OutputItem::FunctionCall(empty),
                });
                if !c.arguments.is_empty() {
                    emit(EventBody::FunctionCallArgumentsDelta {
                        item_id: item_id.clone(),
                        output_index,
                        delta: c.arguments.clone(),
                    });
                }
                emit(EventBody::FunctionCallArgumentsDone {
                    item_id,
                    output_index,
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                });
            }
        }
        emit(EventBody::OutputItemDone {
            output_index,
            item: item.clone(),
        });
    }
    let response = Box::new(whole.clone());
    emit(match whole.status {
        Status::Incomplete => EventBody::Incomplete { response },
        Status::Failed => EventBody::Failed { response },
        Status::Completed | Status::InProgress => EventBody::Completed { response },
    });
    out
}
