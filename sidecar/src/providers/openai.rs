//! OpenAI and OpenAI-compatible upstreams: the body passes through with `model` rewritten.

pub mod responses;

use std::borrow::Cow;

use bytes::Bytes;
use futures::StreamExt;
use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, Visitor},
};
use serde_json::{Value, value::RawValue};
use sluice_crds::ApiKey;

use super::{
    BodyStream, ChatCall, ChunkStream, Complete, CompletionsCall, EmbeddingsCall, MAX_UPSTREAM_BODY, ProviderError,
    Reply, ResponsesCall, StreamEvent, body_stream, error_from_response, read_body, replayed_stream, sse_events,
    transport_error,
};
use crate::{
    formats::openai::{self, StreamOptions, usage::openai_usage},
    sse::SseEvent,
    wire::Usage,
};

/// An OpenAI-protocol upstream at one API root.
#[derive(Debug)]
pub struct OpenAi {
    client: reqwest::Client,
    /// Parsed once: reqwest would parse a `&str` again on every request. A URL that does not
    /// parse is kept as text, for reqwest to refuse as before.
    chat_url: Result<reqwest::Url, String>,
    embeddings_url: Result<reqwest::Url, String>,
    /// Boxed: the legacy endpoint is rarely used and keeps the provider enum small.
    completions_url: Box<Result<reqwest::Url, String>>,
    /// Boxed like `completions_url`: used only for `openai` backends' Responses pass-through.
    responses_url: Box<Result<reqwest::Url, String>>,
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
            completions_url: Box::new(parsed(format!("{base}/completions"))),
            responses_url: Box::new(parsed(format!("{base}/responses"))),
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
                openai::completion_as_stream(&whole.body, client_wants_usage, whole.usage).ok_or_else(|| {
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

    /// Sends a legacy completion, streaming or not, with usage asked for as for chat.
    pub async fn completions(&self, call: &CompletionsCall<'_>) -> Result<Reply, ProviderError> {
        let mut body = call.request.clone();
        body.model = call.model.to_string();
        let client_wants_usage = call.request.wants_stream_usage();
        if call.request.is_stream() {
            body.stream_options
                .get_or_insert_with(StreamOptions::default)
                .include_usage = Some(true);
        }
        let resp = self.send(&self.completions_url, &body).await?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp, call.deadline, self.api_key.as_ref()).await);
        }
        if !call.request.is_stream() {
            return complete(resp, call.deadline).await.map(Reply::Complete);
        }
        if is_json(&resp) {
            return Err(ProviderError::InvalidResponse(
                "the upstream answered a streamed completions request with one JSON document".to_owned(),
            ));
        }
        // Completion chunks carry `usage` and `choices` as chat chunks do: the same reading applies.
        Ok(Reply::Stream(translate_body(
            body_stream(resp),
            call.deadline,
            client_wants_usage,
        )))
    }

    /// Passes a Responses request through to OpenAI's own `/responses`, `model` rewritten.
    pub async fn responses(&self, call: &ResponsesCall<'_>) -> Result<Reply, ProviderError> {
        let body = responses::body(call.body, call.model.as_str());
        let resp = self.send(&self.responses_url, &body).await?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp, call.deadline, self.api_key.as_ref()).await);
        }
        if !call.stream || is_json(&resp) {
            return responses::complete(resp, call.deadline).await.map(Reply::Complete);
        }
        Ok(Reply::Stream(responses::events(resp, call.deadline)))
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
        super::traced(request).send().await.map_err(|e| transport_error(&e))
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
    let usage = openai_usage(&body).map_err(|e| ProviderError::InvalidResponse(e.to_string()))?;
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
    let Ok(chunk) = Chunk::parse(&event.data) else {
        return Some(vec![Err(ProviderError::InvalidResponse(
            "a stream event is not a JSON object".into(),
        ))]);
    };
    if let Some(error) = chunk.member("error") {
        let body = Bytes::from(format!(r#"{{"error":{}}}"#, error.get()));
        let status = http::StatusCode::BAD_GATEWAY;
        return Some(vec![Err(ProviderError::Status {
            status,
            retry_after: None,
            body,
        })]);
    }
    let usage_member = chunk.member("usage");
    let usage = usage_member
        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        .and_then(|usage| Usage::from_openai(&usage));
    let mut out = Vec::with_capacity(2);
    if let Some(u) = usage {
        out.push(Ok(StreamEvent::Usage(u)));
    }
    let forward = if client_wants_usage {
        Some(Bytes::from(event.data))
    } else if usage.is_some() && chunk.has_no_choices() {
        None
    } else if usage_member.is_some() {
        match chunk.without("usage") {
            Ok(stripped) => Some(stripped),
            Err(e) => return Some(vec![Err(ProviderError::InvalidResponse(e.to_string()))]),
        }
    } else {
        Some(Bytes::from(event.data))
    };
    out.extend(forward.map(|b| Ok(StreamEvent::Data(b))));
    Some(out)
}

/// A stream chunk's top-level members, borrowed from its text in order: what a chunk needs
/// (its `error`, its `usage`, whether it has choices, itself less `usage`) without building
/// the tree of maps and strings a [`Value`] would be for every chunk of every stream.
struct Chunk<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Chunk<'a> {
    /// The members of `data` when it is one JSON object; the same verdict as parsing a [`Value`].
    fn parse(data: &'a str) -> Result<Self, serde_json::Error> {
        // Raw values check escapes but not that surrogates pair up, which a `Value` refuses.
        if openai::usage::escapes_a_surrogate(data.as_bytes()) {
            serde_json::from_str::<Value>(data)?;
        }
        serde_json::from_str(data)
    }

    /// The value of `key`; the last one when a key repeats, as in a parsed [`Value`].
    fn member(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Whether `choices` is missing, not an array, or empty (a usage-only chunk).
    fn has_no_choices(&self) -> bool {
        self.member("choices").is_none_or(|raw| {
            let text = raw.get();
            !text.starts_with('[') || text[1..].trim_start().starts_with(']')
        })
    }

    /// The chunk's text without any `key` member, the others as they came.
    fn without(&self, key: &str) -> Result<Bytes, serde_json::Error> {
        let mut out = Vec::with_capacity(self.0.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum());
        out.push(b'{');
        for (k, v) in self.0.iter().filter(|(k, _)| k != key) {
            if out.len() > 1 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, k.as_ref())?;
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
        Ok(Bytes::from(out))
    }
}

impl<'de> Deserialize<'de> for Chunk<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ChunkVisitor)
    }
}

struct ChunkVisitor;

impl<'de> Visitor<'de> for ChunkVisitor {
    type Value = Chunk<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Chunk<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<MemberKey<'de>>()? {
            members.push((key.0, map.next_value()?));
        }
        Ok(Chunk(members))
    }
}

/// An object key, borrowed unless it had escapes (serde's own `Cow<str>` always copies).
struct MemberKey<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for MemberKey<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = MemberKey<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
                Ok(MemberKey(Cow::Borrowed(key)))
            }

            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
                Ok(MemberKey(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
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

    fn assert_usage_5_in_7_out(item: &Result<StreamEvent, ProviderError>) {
        assert!(
            matches!(
                item,
                Ok(StreamEvent::Usage(Usage {
                    input: Tokens(5),
                    output: Tokens(7),
                    ..
                }))
            ),
            "{item:?}"
        );
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
    fn strips_a_null_usage_from_every_chunk_and_keeps_the_rest_as_sent() {
        // OpenAI puts `"usage": null` on every chunk once usage is asked for.
        let chunk = r#"{"id":"1", "usage": null, "choices":[ {"index":0,"delta":{"content":"h\u00e9"}} ],"x\"y":1}"#;
        let out = to_stream_events(event(chunk), false).unwrap();
        assert_eq!(
            data_of(&out),
            vec![r#"{"id":"1","choices":[ {"index":0,"delta":{"content":"h\u00e9"}} ],"x\"y":1}"#]
        );
    }

    #[test]
    fn a_repeated_usage_key_is_stripped_whole_and_counted_by_its_last_value() {
        let chunk = r#"{"choices":[],"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":5,"completion_tokens":7}}"#;
        let out = to_stream_events(event(chunk), false).unwrap();
        assert!(data_of(&out).is_empty());
        assert_usage_5_in_7_out(&out[0]);
    }

    #[test]
    fn choices_that_are_not_an_array_make_a_usage_only_chunk() {
        let chunk = r#"{"choices":null,"usage":{"prompt_tokens":5,"completion_tokens":7}}"#;
        let out = to_stream_events(event(chunk), false).unwrap();
        assert!(data_of(&out).is_empty());
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_chunk_with_an_unpaired_surrogate_is_refused_as_a_parsed_value_would_be() {
        let out = to_stream_events(event(r#"{"choices":[{"delta":{"content":"\ud800"}}]}"#), false).unwrap();
        assert!(matches!(out[0], Err(ProviderError::InvalidResponse(_))));
        let paired = r#"{"choices":[{"delta":{"content":"\ud83d\ude00"}}]}"#;
        let out = to_stream_events(event(paired), false).unwrap();
        assert_eq!(data_of(&out), vec![paired]);
    }

    #[test]
    fn a_chunk_that_is_not_one_object_is_refused() {
        for data in ["[1]", "\"text\"", "{} {}", "{\"a\":}", "null"] {
            let out = to_stream_events(event(data), false).unwrap();
            assert!(matches!(out[0], Err(ProviderError::InvalidResponse(_))), "{data}");
        }
    }

    #[test]
    fn drops_the_usage_chunk_but_keeps_its_counts() {
        let chunk = r#"{"id":"1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#;
        let out = to_stream_events(event(chunk), false).unwrap();
        assert!(data_of(&out).is_empty());
        assert_usage_5_in_7_out(&out[0]);
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
