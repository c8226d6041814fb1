//! Gemini's `streamGenerateContent?alt=sse` as OpenAI chunks: a small state machine fed one event
//! (a partial `GenerateContentResponse`) at a time.
//!
//! Text parts become content deltas, thought parts reasoning deltas; a function call arrives whole
//! and becomes one tool-call delta with its index, id, name and arguments. A candidate's
//! `finishReason` becomes its finish chunk. Gemini sends no end marker: the connection closing
//! after every candidate finished is the end, and closing earlier is an interrupted answer.
//! Usage is cumulative; the last `usageMetadata` seen is the answer's.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::{Translated, finish_reason, openai_id};
use crate::{
    formats::{
        gemini::{ErrorObject, GenerateContentResponse, UsageMetadata},
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
    fallback_id: String,
    /// The answer's id key, from its first event.
    key: Option<String>,
    /// Choices whose role chunk went out.
    started: BTreeSet<u32>,
    /// Tool calls made so far, per choice.
    calls: BTreeMap<u32, u32>,
    /// Tool calls made so far in the whole answer, for ids.
    calls_made: u32,
    /// Choices that finished.
    finished: BTreeSet<u32>,
    usage: Option<UsageMetadata>,
}

impl Translator {
    /// A translator for an answer of `model` made at `created`; `fallback_id` identifies it when
    /// Gemini gives no `responseId`; `wants_usage` as the client asked.
    pub fn new(wants_usage: bool, created: u64, model: &str, fallback_id: &str) -> Self {
        Self {
            wants_usage,
            created,
            model: model.to_owned(),
            fallback_id: fallback_id.to_owned(),
            key: None,
            started: BTreeSet::new(),
            calls: BTreeMap::new(),
            calls_made: 0,
            finished: BTreeSet::new(),
            usage: None,
        }
    }

    fn id(&self) -> String {
        openai_id(self.key.as_deref().unwrap_or(&self.fallback_id))
    }

    fn chunk(&self, index: u32, delta: Delta, finish: Option<&str>) -> StreamEvent {
        let chunk = ChatChunk::delta(
            &self.id(),
            self.created,
            &self.model,
            index,
            delta,
            finish.map(str::to_owned),
        );
        StreamEvent::Data(Bytes::from(chunk.to_json(self.wants_usage)))
    }

    /// A chunk for choice `index`, preceded by its role chunk the first time.
    fn content(&mut self, out: &mut Vec<StreamEvent>, index: u32, delta: Delta, finish: Option<&str>) {
        if self.started.insert(index) {
            out.push(self.chunk(index, Delta::role(), None));
        }
        out.push(self.chunk(index, delta, finish));
    }
}

impl StreamTranslator for Translator {
    type Event = GenerateContentResponse;
    const EVENT: &'static str = "a gemini stream event";

    fn on(&mut self, response: GenerateContentResponse) -> Result<Vec<StreamEvent>, ProviderError> {
        if let Some(error) = response.rest.get("error") {
            let error: ErrorObject = serde_json::from_value(error.clone())
                .map_err(|e| ProviderError::InvalidResponse(format!("a gemini stream error is malformed: {e}")))?;
            return Err(super::error(&error, None));
        }
        super::check_prompt(&response)?;
        if self.key.is_none() {
            self.key = response.response_id.clone();
            if let Some(version) = &response.model_version {
                self.model.clone_from(version);
            }
        }
        if let Some(usage) = response.usage_metadata {
            self.usage = Some(usage);
        }
        let key = self.key.clone().unwrap_or_else(|| self.fallback_id.clone());
        let mut out = Vec::new();
        for candidate in response.candidates {
            let index = candidate.index;
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                let delta = match super::part(part, &key, &mut self.calls_made) {
                    Some(Translated::Text(text)) => Delta::text(text),
                    Some(Translated::Reasoning(text)) => Delta::reasoning(text),
                    Some(Translated::Call(call)) => {
                        let calls = self.calls.entry(index).or_default();
                        let tool_index = *calls;
                        *calls += 1;
                        Delta::tool_call(ToolCallDelta {
                            index: tool_index,
                            id: Some(call.id),
                            kind: Some(call.kind),
                            function: Some(FunctionDelta {
                                name: Some(call.function.name),
                                arguments: Some(call.function.arguments),
                            }),
                            rest: call.rest,
                        })
                    }
                    None => continue,
                };
                self.content(&mut out, index, delta, None);
            }
            if let Some(reason) = candidate.finish_reason.as_deref() {
                let made_calls = self.calls.get(&index).is_some_and(|n| *n > 0);
                self.finished.insert(index);
                self.content(
                    &mut out,
                    index,
                    Delta::default(),
                    Some(finish_reason(Some(reason), made_calls)),
                );
            }
        }
        Ok(out)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.finished.is_empty() || self.finished.len() < self.started.len() {
            return Err(ProviderError::Interrupted(
                "the gemini stream closed before the answer's finish reason".into(),
            ));
        }
        let mut out = Vec::with_capacity(2);
        if let Some(usage) = self.usage.as_ref().map(super::usage) {
            out.push(StreamEvent::Usage(usage.to_usage()));
            if self.wants_usage {
                let chunk = ChatChunk::usage(&self.id(), self.created, &self.model, usage);
                out.push(StreamEvent::Data(Bytes::from(chunk.to_json(true))));
            }
        }
        Ok(out)
    }
}
