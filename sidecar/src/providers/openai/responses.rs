//! OpenAI's own Responses API, passed through: the client's body goes to `POST /responses` with
//! `model` rewritten, and the answer comes back as OpenAI wrote it (a Response object, or its
//! events up to the terminal one); the usage is read from the Response, or from the final event.

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use super::super::{
    BodyStream, ChunkStream, Complete, MAX_UPSTREAM_BODY, ProviderError, StreamEvent, body_stream, client::Response,
    read_body, sse_events,
};
use crate::{
    formats::openai::splice::{Edits, splice},
    sse::SseEvent,
    wire::Usage,
};

/// The events that end a Responses stream.
const TERMINAL: [&str; 4] = ["response.completed", "response.incomplete", "response.failed", "error"];

/// A whole Response and its usage.
pub async fn complete(resp: Response, deadline: tokio::time::Instant) -> Result<Complete, ProviderError> {
    let body = read_body(resp, MAX_UPSTREAM_BODY, deadline).await?;
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| ProviderError::InvalidResponse(format!("the answer is not a Response: {e}")))?;
    let usage = doc.get("usage").and_then(Usage::from_responses);
    Ok(Complete { body, usage })
}

/// The events of a streamed Response as they arrive, each event's JSON as one item, with the
/// usage of the terminal event split out for accounting.
pub fn stream(body: impl BodyStream, deadline: tokio::time::Instant) -> ChunkStream {
    let events = sse_events(body, deadline, is_terminal);
    Box::pin(events.flat_map(|event| futures::stream::iter(items(event))))
}

fn is_terminal(event: &SseEvent) -> bool {
    let kind = event.event.as_deref().or_else(|| type_of(&event.data));
    kind.is_some_and(|k| TERMINAL.contains(&k))
}

/// The `type` of an event whose SSE frame has no `event:` name (cheap: the field comes first).
fn type_of(data: &str) -> Option<&'static str> {
    TERMINAL
        .iter()
        .copied()
        .find(|t| data.contains(&format!("\"type\":\"{t}\"")) || data.contains(&format!("\"type\": \"{t}\"")))
}

fn items(event: Result<SseEvent, ProviderError>) -> Vec<Result<StreamEvent, ProviderError>> {
    let event = match event {
        Ok(e) => e,
        Err(e) => return vec![Err(e)],
    };
    let Ok(doc) = serde_json::from_str::<Value>(&event.data) else {
        return vec![Err(ProviderError::InvalidResponse(
            "a Responses stream event is not JSON".into(),
        ))];
    };
    let mut out = Vec::with_capacity(2);
    if let Some(usage) = doc.pointer("/response/usage").and_then(Usage::from_responses) {
        out.push(Ok(StreamEvent::Usage(usage)));
    }
    out.push(Ok(StreamEvent::Data(event.data.into_inner())));
    out
}

/// The client's body with `model` rewritten to the backend's: spliced into its bytes, or (when
/// they do not splice) set in the parsed body.
pub fn body(request: &Bytes, model: &str) -> Result<Bytes, serde_json::Error> {
    let edits = Edits {
        model,
        stream_options: None,
    };
    if let Ok(spliced) = splice(request, edits) {
        return Ok(spliced);
    }
    let mut body: Value = serde_json::from_slice(request)?;
    if let Some(o) = body.as_object_mut() {
        o.insert("model".into(), Value::from(model));
    }
    serde_json::to_vec(&body).map(Bytes::from)
}

/// The upstream's body as a stream.
pub fn events(resp: Response, deadline: tokio::time::Instant) -> ChunkStream {
    stream(body_stream(resp), deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_pass_through_with_the_final_usage_split_out_and_end_at_the_terminal_one() {
        let text = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0}\n\n\
                    event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":1,\
                    \"response\":{\"usage\":{\"input_tokens\":7,\"input_tokens_details\":{\"cached_tokens\":2},\
                    \"output_tokens\":3}}}\n\n\
                    event: ignored\ndata: {}\n\n";
        let body = futures::stream::iter([Ok(Bytes::from(text))]);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let items: Vec<_> = stream(body, deadline).collect().await;
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[0], Ok(StreamEvent::Data(d)) if d.starts_with(b"{\"type\":\"response.created\"")));
        match &items[1] {
            Ok(StreamEvent::Usage(u)) => {
                assert_eq!((u.input.0, u.cached_input.0, u.output.0), (7, 2, 3));
            }
            other => panic!("expected usage, got {other:?}"),
        }
        assert!(matches!(&items[2], Ok(StreamEvent::Data(_))));
    }
}
