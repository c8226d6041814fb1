//! What a streamed answer says of itself (`id`, `model`, finish reasons), gathered chunk by
//! chunk while its request span records: a whole answer is read once at the end
//! ([`super::answer`]), a stream only exists in pieces. Only those members are read.

use std::{borrow::Cow, collections::BTreeMap};

use opentelemetry::{KeyValue, Value};
use serde::Deserialize;

/// The GenAI response attributes of one streamed answer, as far as it has streamed.
#[derive(Debug, Default)]
pub struct StreamedAnswer {
    id: Option<String>,
    model: Option<String>,
    /// One reason per choice index; a Responses stream has one, its terminal status.
    finish_reasons: BTreeMap<u32, String>,
}

/// A chat completion chunk, or a Responses event (which names its `type`).
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    choices: Vec<Choice<'a>>,
    #[serde(borrow)]
    response: Option<Response<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

/// The response object of a Responses lifecycle event.
#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    incomplete_details: Option<Incomplete<'a>>,
}

#[derive(Deserialize)]
struct Incomplete<'a> {
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
}

/// Responses events that end an answer and say how.
const TERMINAL_EVENTS: [&str; 3] = ["response.completed", "response.incomplete", "response.failed"];

fn keep(slot: &mut Option<String>, value: Option<Cow<'_, str>>) {
    if slot.is_none()
        && let Some(value) = value
    {
        *slot = Some(value.into_owned());
    }
}

impl StreamedAnswer {
    /// Reads one event's payload; a payload that is not a chunk or an event is skipped.
    pub fn observe(&mut self, payload: &[u8]) {
        let Ok(chunk) = serde_json::from_slice::<Chunk<'_>>(payload) else {
            return;
        };
        if let Some(response) = chunk.response {
            keep(&mut self.id, response.id);
            keep(&mut self.model, response.model);
            if chunk.kind.as_deref().is_some_and(|k| TERMINAL_EVENTS.contains(&k)) {
                let reason = response.incomplete_details.and_then(|d| d.reason).or(response.status);
                if let Some(reason) = reason {
                    self.finish_reasons.insert(0, reason.into_owned());
                }
            }
            return;
        }
        keep(&mut self.id, chunk.id);
        keep(&mut self.model, chunk.model);
        for choice in chunk.choices {
            if let Some(reason) = choice.finish_reason {
                self.finish_reasons.insert(choice.index, reason.into_owned());
            }
        }
    }

    /// `gen_ai.response.id`, `.model` and `.finish_reasons`, those that were seen.
    pub fn attributes(self) -> Vec<KeyValue> {
        let mut out = Vec::new();
        if let Some(id) = self.id {
            out.push(KeyValue::new("gen_ai.response.id", id));
        }
        if let Some(model) = self.model {
            out.push(KeyValue::new("gen_ai.response.model", model));
        }
        if !self.finish_reasons.is_empty() {
            let reasons = self.finish_reasons.into_values().map(Into::into).collect();
            out.push(KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(opentelemetry::Array::String(reasons)),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(events: &[&str]) -> Vec<(String, String)> {
        let mut answer = StreamedAnswer::default();
        for event in events {
            answer.observe(event.as_bytes());
        }
        answer
            .attributes()
            .into_iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    }

    #[test]
    fn a_chat_stream_gives_its_id_model_and_each_choices_finish_reason() {
        let got = attributes(&[
            r#"{"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            r#"{"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","choices":[{"index":1,"delta":{},"finish_reason":"length"}]}"#,
            r#"{"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"id":"chatcmpl-1","model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        ]);
        assert_eq!(
            got,
            [
                ("gen_ai.response.id".into(), "chatcmpl-1".into()),
                ("gen_ai.response.model".into(), "gpt-4o-2024-08-06".into()),
                ("gen_ai.response.finish_reasons".into(), r#"["stop","length"]"#.into()),
            ]
        );
    }

    #[test]
    fn a_responses_stream_gives_the_response_and_its_terminal_status() {
        let got = attributes(&[
            r#"{"type":"response.created","response":{"id":"resp_1","model":"gpt-4.1","status":"in_progress"}}"#,
            r#"{"type":"response.output_text.delta","delta":"Hi","item_id":"msg_1"}"#,
            r#"{"type":"response.incomplete","response":{"id":"resp_1","model":"gpt-4.1","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"}}}"#,
        ]);
        assert_eq!(
            got,
            [
                ("gen_ai.response.id".into(), "resp_1".into()),
                ("gen_ai.response.model".into(), "gpt-4.1".into()),
                (
                    "gen_ai.response.finish_reasons".into(),
                    r#"["max_output_tokens"]"#.into()
                ),
            ]
        );
    }

    #[test]
    fn payloads_that_are_not_chunks_are_skipped() {
        assert!(attributes(&["[DONE]", "{not json", r#"{"choices":"none"}"#]).is_empty());
    }
}
