//! OpenAI and OpenAI-compatible upstreams: the body passes through with `model` rewritten.

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use sluice_crds::ApiKey;

use super::{
    BodyStream, ChatCall, ChunkStream, Complete, EmbeddingsCall, MAX_UPSTREAM_BODY, ProviderError, Reply, StreamEvent,
    body_stream, error_from_response, format, read_body, replayed_stream, sse_events, transport_error,
};
use crate::{accounting::Usage, request::StreamOptions, sse::SseEvent};

/// An OpenAI-protocol upstream at one API root.
#[derive(Debug)]
pub struct OpenAi {
    client: reqwest::Client,
    /// Parsed once: reqwest would parse a `&str` again on every request. A URL that does not
    /// parse is kept as text, for reqwest to refuse as before.
    chat_url: Result<reqwest::Url, String>,
    embeddings_url: Result<reqwest::Url, String>,
    api_key: Option<ApiKey>,
}

impl OpenAi {
    /// An upstream at `base_url` (e.g. `https://api.openai.com/v1`).
    pub fn new(base_url: &str, api_key: Option<ApiKey>, client: reqwest::Client) -> Self {
        let base = base_url.trim_end_matches('/');
        Self {
            client,
            chat_url: parsed(format!("{base}/chat/completions")),
            embeddings_url: parsed(format!("{base}/embeddings")),
            api_key,
        }
    }

    /// Sends a chat completion, streaming or not.
    pub async fn chat(&self, call: &ChatCall<'_>) -> Result<Reply, ProviderError> {
        let mut body = call.request.clone();
        body.model = call.model.to_string();
        let client_wants_usage = call.request.wants_stream_usage();
        if call.request.is_stream() {
            // Always ask for usage so streams are accounted; the client gets it only if it asked.
            body.stream_options
                .get_or_insert_with(StreamOptions::default)
                .include_usage = Some(true);
        }
        let resp = self.send(&self.chat_url, &body).await?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp, call.deadline, self.api_key.as_ref()).await);
        }
        if !call.request.is_stream() {
            return complete(resp, call.deadline).await.map(Reply::Complete);
        }
        if is_json(&resp) {
            // Some OpenAI-compatible servers ignore `stream: true` and answer whole: the client
            // still gets the stream it asked for, made of that answer.
            let whole = complete(resp, call.deadline).await?;
            let chunks =
                format::completion_as_stream(&whole.body, client_wants_usage, whole.usage).ok_or_else(|| {
                    ProviderError::InvalidResponse(
                        "the upstream answered a streamed request with JSON that is not a chat completion".to_owned(),
                    )
                })?;
            return Ok(Reply::Stream(replayed_stream(chunks, whole.usage)));
        }
        Ok(Reply::Stream(translate_body(
            body_stream(resp),
            call.deadline,
            client_wants_usage,
        )))
    }

    /// Sends an embeddings request.
    pub async fn embeddings(&self, call: &EmbeddingsCall<'_>) -> Result<Complete, ProviderError> {
        let mut body = call.request.clone();
        body.model = call.model.to_string();
        let resp = self.send(&self.embeddings_url, &body).await?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp, call.deadline, self.api_key.as_ref()).await);
        }
        complete(resp, call.deadline).await
    }

    async fn send(
        &self,
        url: &Result<reqwest::Url, String>,
        body: &impl serde::Serialize,
    ) -> Result<reqwest::Response, ProviderError> {
        let request = match url {
            Ok(url) => self.client.post(url.clone()),
            Err(text) => self.client.post(text),
        };
        let mut request = request.json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        request.send().await.map_err(|e| transport_error(&e))
    }
}

/// `url` parsed, or its text when it does not parse.
fn parsed(url: String) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(&url).map_err(|_| url)
}

/// The chunks of a streamed answer's body (server-sent events up to `[DONE]`), with usage split
/// out and, unless the client asked for it, stripped from the chunks.
pub fn translate_body(body: impl BodyStream, deadline: tokio::time::Instant, client_wants_usage: bool) -> ChunkStream {
    let events = sse_events(body, deadline, |e| e.data == "[DONE]");
    let chunks = events
        .filter_map(move |event| async move { to_stream_events(event, client_wants_usage) })
        .flat_map(futures::stream::iter)
        // An error ends the answer, as in every provider's stream: an error event followed by
        // the connection closing without `[DONE]` is one failure, not two.
        .scan(false, |failed, item| {
            let next = (!*failed).then_some(item);
            if let Some(Err(_)) = &next {
                *failed = true;
            }
            futures::future::ready(next)
        });
    Box::pin(chunks)
}

/// Reads a whole JSON answer and its usage.
/// Whether the answer says it is a JSON document (rather than an event stream).
fn is_json(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"))
}

async fn complete(resp: reqwest::Response, deadline: tokio::time::Instant) -> Result<Complete, ProviderError> {
    parse_complete(read_body(resp, MAX_UPSTREAM_BODY, deadline).await?)
}

/// A whole answer's body, checked to be a JSON object, with its usage.
pub fn parse_complete(body: Bytes) -> Result<Complete, ProviderError> {
    let usage =
        crate::accounting::body::openai_usage(&body).map_err(|e| ProviderError::InvalidResponse(e.to_string()))?;
    Ok(Complete { body, usage })
}

/// Maps one upstream event to what goes on: `None` at `[DONE]`, usage split out, and the
/// `usage` field removed from chunks when the client did not ask for it.
fn to_stream_events(
    event: Result<SseEvent, ProviderError>,
    client_wants_usage: bool,
) -> Option<Vec<Result<StreamEvent, ProviderError>>> {
    let event = match event {
        Ok(e) if e.data == "[DONE]" => return None,
        Ok(e) => e,
        Err(e) => return Some(vec![Err(e)]),
    };
    let mut chunk: Value = match serde_json::from_str(&event.data) {
        Ok(Value::Object(map)) => Value::Object(map),
        Ok(_) | Err(_) => {
            return Some(vec![Err(ProviderError::InvalidResponse(
                "a stream event is not a JSON object".into(),
            ))]);
        }
    };
    if let Some(error) = chunk.get("error") {
        let body = Bytes::from(serde_json::json!({ "error": error }).to_string());
        let status = http::StatusCode::BAD_GATEWAY;
        return Some(vec![Err(ProviderError::Status {
            status,
            retry_after: None,
            body,
        })]);
    }
    let usage = chunk.get("usage").and_then(Usage::from_openai);
    let usage_only = chunk.get("choices").and_then(Value::as_array).is_none_or(Vec::is_empty);
    let mut out = Vec::with_capacity(2);
    if let Some(u) = usage {
        out.push(Ok(StreamEvent::Usage(u)));
    }
    let forward = if client_wants_usage {
        Some(Bytes::from(event.data))
    } else if usage.is_some() && usage_only {
        None
    } else if let Some(map) = chunk.as_object_mut().filter(|m| m.contains_key("usage")) {
        map.remove("usage");
        Some(Bytes::from(chunk.to_string()))
    } else {
        Some(Bytes::from(event.data))
    };
    out.extend(forward.map(|b| Ok(StreamEvent::Data(b))));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_crds::Tokens;

    fn event(data: &str) -> Result<SseEvent, ProviderError> {
        Ok(SseEvent {
            event: None,
            data: data.into(),
        })
    }

    fn data_of(items: &[Result<StreamEvent, ProviderError>]) -> Vec<String> {
        items
            .iter()
            .filter_map(|i| match i {
                Ok(StreamEvent::Data(b)) => Some(String::from_utf8(b.to_vec()).unwrap()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn strips_usage_the_client_did_not_ask_for() {
        let chunk = r#"{"id":"1","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}"#;
        let out = to_stream_events(event(chunk), false).unwrap();
        assert_eq!(
            data_of(&out),
            vec![r#"{"id":"1","choices":[{"index":0,"delta":{"content":"hi"}}]}"#]
        );
    }

    #[test]
    fn drops_the_usage_chunk_but_keeps_its_counts() {
        let chunk = r#"{"id":"1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#;
        let out = to_stream_events(event(chunk), false).unwrap();
        assert!(data_of(&out).is_empty());
        assert!(matches!(
            out[0],
            Ok(StreamEvent::Usage(Usage {
                input: Tokens(5),
                output: Tokens(7),
                ..
            }))
        ));
    }

    #[test]
    fn forwards_the_usage_chunk_verbatim_when_asked() {
        let chunk = r#"{"id":"1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#;
        let out = to_stream_events(event(chunk), true).unwrap();
        assert_eq!(data_of(&out), vec![chunk]);
    }

    #[test]
    fn ends_at_done_and_fails_on_garbage() {
        assert!(to_stream_events(event("[DONE]"), false).is_none());
        let out = to_stream_events(event("{not json"), false).unwrap();
        assert!(matches!(out[0], Err(ProviderError::InvalidResponse(_))));
    }

    #[tokio::test]
    async fn the_stream_ends_at_its_first_error() {
        // Found by fuzzing: an error event, then the connection closing without [DONE], gave two
        // errors, where every other provider's stream ends at the first.
        let body = b"data: {\"error\":{\"message\":\"overloaded\"}}\n\ndata: {\"choices\":[]}\n\n";
        let reads = futures::stream::iter([Ok(Bytes::from_static(body))]);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let items: Vec<_> = translate_body(reads, deadline, false).collect().await;
        assert_eq!(items.len(), 1, "{items:?}");
        assert!(matches!(items[0], Err(ProviderError::Status { .. })));
    }

    #[test]
    fn turns_an_error_event_into_an_error() {
        let out = to_stream_events(event(r#"{"error":{"message":"overloaded"}}"#), false).unwrap();
        assert!(matches!(&out[0], Err(ProviderError::Status { .. })));
    }
}
