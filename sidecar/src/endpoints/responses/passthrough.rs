//! An `openai` backend's own Responses events, framed as they came (`event: <type>`), with
//! what they told so far kept aside: when the sidecar ends the stream because a hard budget has
//! no money left, the client gets `response.failed` with the output so far (unfinished items
//! marked `incomplete`) and the `budget_exceeded` error, as a translated stream ends. Any other
//! failure after the first event is an `error` event numbered after the last.

use std::{
    borrow::Cow,
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    endpoints::translated_sse::encode,
    formats::responses::stream::{Event, EventBody},
    response,
    wire::{ChunkStream, ProviderError, StreamEvent},
};

/// An `openai` backend's Responses events, framed as they came.
pub struct PassedThroughSseBody {
    stream: Option<ChunkStream>,
    /// The `sequence_number` the next event would have.
    next_sequence: u64,
    /// The Response as its events told it so far.
    told: Told,
}

impl std::fmt::Debug for PassedThroughSseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassedThroughSseBody")
            .field("next_sequence", &self.next_sequence)
            .finish_non_exhaustive()
    }
}

/// What framing an event reads from it.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Cow<'a, str>,
    #[serde(default)]
    sequence_number: Option<u64>,
}

/// Where a delta or an item goes in the Response.
#[derive(Deserialize)]
struct Place<'a> {
    #[serde(default)]
    output_index: usize,
    #[serde(default)]
    content_index: usize,
    #[serde(default)]
    summary_index: usize,
    #[serde(borrow, default)]
    delta: Cow<'a, str>,
}

/// The Response as the events told it: the shell from `response.created` (or
/// `response.in_progress`) and the output items, with the deltas applied to them.
#[derive(Debug, Default)]
struct Told {
    response: Option<Value>,
    output: Vec<Value>,
}

impl Told {
    /// Takes in one event of kind `kind`.
    fn observe(&mut self, kind: &str, payload: &[u8]) {
        match kind {
            "response.created" | "response.in_progress" => {
                if let Ok(mut event) = serde_json::from_slice::<Value>(payload) {
                    self.response = Some(event["response"].take());
                }
            }
            "response.output_item.added" | "response.output_item.done" | "response.content_part.added" => {
                let Ok(mut event) = serde_json::from_slice::<Value>(payload) else {
                    return;
                };
                let Ok(place) = serde_json::from_slice::<Place<'_>>(payload) else {
                    return;
                };
                let item = self.item(place.output_index);
                if kind == "response.content_part.added" {
                    *slot(&mut item["content"], place.content_index) = event["part"].take();
                } else {
                    *item = event["item"].take();
                }
            }
            "response.output_text.delta" | "response.refusal.delta" | "response.reasoning_text.delta" => {
                let (field, part) = match kind {
                    "response.output_text.delta" => ("text", "output_text"),
                    "response.refusal.delta" => ("refusal", "refusal"),
                    _ => ("text", "reasoning_text"),
                };
                if let Ok(p) = serde_json::from_slice::<Place<'_>>(payload) {
                    let item = self.item(p.output_index);
                    append(slot(&mut item["content"], p.content_index), part, field, &p.delta);
                }
            }
            "response.reasoning_summary_text.delta" => {
                if let Ok(p) = serde_json::from_slice::<Place<'_>>(payload) {
                    let item = self.item(p.output_index);
                    append(
                        slot(&mut item["summary"], p.summary_index),
                        "summary_text",
                        "text",
                        &p.delta,
                    );
                }
            }
            "response.function_call_arguments.delta" => {
                if let Ok(p) = serde_json::from_slice::<Place<'_>>(payload) {
                    let item = self.item(p.output_index);
                    let so_far = item["arguments"].as_str().unwrap_or_default().to_owned();
                    item["arguments"] = Value::String(so_far + &p.delta);
                }
            }
            _ => {}
        }
    }

    fn item(&mut self, index: usize) -> &mut Value {
        if self.output.len() <= index {
            self.output.resize(index + 1, json!({}));
        }
        &mut self.output[index]
    }

    /// `response.failed` for what was told, numbered `sequence`; `None` before any Response.
    fn failed(&self, code: &str, message: &str, sequence: u64) -> Option<Bytes> {
        let mut response = self.response.clone()?;
        let output: Vec<Value> = self
            .output
            .iter()
            .filter(|item| item.get("type").is_some())
            .cloned()
            .map(|mut item| {
                if item.get("status").and_then(Value::as_str) != Some("completed") {
                    item["status"] = json!("incomplete");
                }
                item
            })
            .collect();
        response["status"] = json!("failed");
        response["output"] = Value::Array(output);
        response["error"] = json!({"code": code, "message": message});
        response["usage"] = Value::Null;
        let event = json!({"type": "response.failed", "response": response, "sequence_number": sequence});
        Some(Bytes::from(format!("event: response.failed\ndata: {event}\n\n")))
    }
}

/// Element `index` of the array `list` (made an array, and long enough, if it was not).
fn slot(list: &mut Value, index: usize) -> &mut Value {
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    match list {
        Value::Array(items) => {
            if items.len() <= index {
                items.resize(index + 1, Value::Null);
            }
            &mut items[index]
        }
        other => other,
    }
}

/// Appends `delta` to `part[field]`, making `part` a `{"type": kind}` part if it was none.
fn append(part: &mut Value, kind: &str, field: &str, delta: &str) {
    if !part.is_object() {
        *part = json!({"type": kind, field: ""});
    }
    let so_far = part[field].as_str().unwrap_or_default().to_owned();
    part[field] = Value::String(so_far + delta);
}

impl PassedThroughSseBody {
    /// Wraps a stream whose first event has already been received.
    pub fn new(stream: ChunkStream) -> Self {
        Self {
            stream: Some(stream),
            next_sequence: 0,
            told: Told::default(),
        }
    }

    /// As the sidecar's response body type.
    pub fn boxed(self) -> response::Body {
        BodyExt::boxed_unsync(self)
    }

    fn frame(&mut self, payload: &[u8]) -> Bytes {
        let head: Option<Head<'_>> = serde_json::from_slice(payload).ok();
        let mut out = BytesMut::new();
        if let Some(head) = head {
            if let Some(n) = head.sequence_number {
                self.next_sequence = n + 1;
            }
            if !head.kind.is_empty() {
                self.told.observe(&head.kind, payload);
                out.extend_from_slice(b"event: ");
                out.extend_from_slice(head.kind.as_bytes());
                out.extend_from_slice(b"\n");
            }
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\n\n");
        out.freeze()
    }

    /// The last event after a failure: `response.failed` for a budget cut once a Response was
    /// told, else an `error` event.
    fn failure(&self, error: &ProviderError) -> Bytes {
        let code = match error {
            ProviderError::BudgetSpent(_) => "budget_exceeded",
            ProviderError::Timeout(_) => "upstream_timeout",
            _ => "server_error",
        };
        let message = error.to_string();
        if let ProviderError::BudgetSpent(_) = error
            && let Some(failed) = self.told.failed(code, &message, self.next_sequence)
        {
            return failed;
        }
        let event = Event {
            body: EventBody::Error {
                code: Some(code.into()),
                message,
                param: None,
            },
            sequence_number: self.next_sequence,
        };
        encode(&[event])
    }
}

impl Body for PassedThroughSseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            let bytes = match std::task::ready!(stream.as_mut().poll_next(cx)) {
                Some(Ok(StreamEvent::Usage(_))) => continue,
                Some(Ok(StreamEvent::Data(payload))) => this.frame(&payload),
                Some(Err(e)) => {
                    this.stream = None;
                    this.failure(&e)
                }
                None => {
                    this.stream = None;
                    return Poll::Ready(None);
                }
            };
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none()
    }
}
