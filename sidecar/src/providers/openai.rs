//! OpenAI-protocol upstreams (OpenAI, OpenAI-compatible servers, Azure OpenAI): the body passes
//! through with `model` rewritten. Where each API lives ([`Endpoints`]) and how the caller is
//! named ([`Auth`]) are all that differ between them.

pub mod auth;
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

pub use self::auth::Auth;

use super::{
    BodyStream, ChatCall, ChunkStream, Complete, CompletionsCall, EmbeddingsCall, MAX_UPSTREAM_BODY, ProviderError,
    Reply, ResponsesCall, StreamEvent, body_stream,
    client::{self, Response, UpstreamClient},
    error_from_response, read_body, replayed_stream, sse_events,
};
use crate::{
    formats::openai::{self, StreamOptions, usage::openai_usage},
    sse::SseEvent,
    wire::Usage,
};

/// Where an upstream takes a request: a parsed URL, or (when it does not parse) its text, for
/// every call to be refused as reqwest refused any bad URL.
pub type Target = Result<http::Uri, String>;

/// Where an OpenAI-protocol upstream serves each API.
#[derive(Debug)]
pub struct Endpoints {
    /// Chat Completions.
    pub chat: Target,
    /// Embeddings.
    pub embeddings: Target,
    /// Legacy completions.
    pub completions: Target,
    /// Responses, for the pass-through.
    pub responses: Target,
    /// The `model` a Responses body names when it is not the backend's (an Azure deployment).
    pub responses_model: Option<String>,
}

impl Endpoints {
    /// OpenAI's layout: every API directly under `base_url` (e.g. `https://api.openai.com/v1`).
    pub fn under(base_url: &str) -> Self {
        let base = base_url.trim_end_matches('/');
        Self {
            chat: parsed(format!("{base}/chat/completions")),
            embeddings: parsed(format!("{base}/embeddings")),
            completions: parsed(format!("{base}/completions")),
            responses: parsed(format!("{base}/responses")),
            responses_model: None,
        }
    }
}

/// An OpenAI-protocol upstream.
#[derive(Debug)]
pub struct OpenAi {
    client: UpstreamClient,
    /// Parsed once, not again on every request. Boxed: it keeps the provider enum small.
    endpoints: Box<Endpoints>,
    auth: Auth,
}

impl OpenAi {
    /// An upstream at `base_url` (e.g. `https://api.openai.com/v1`) sent `api_key` as a bearer token.
    pub fn new(base_url: &str, api_key: Option<ApiKey>, client: UpstreamClient) -> Self {
        Self::with(Endpoints::under(base_url), Auth::bearer(api_key), client)
    }

    /// An upstream with its own layout and credentials.
    pub fn with(endpoints: Endpoints, auth: Auth, client: UpstreamClient) -> Self {
        Self {
            client,
            endpoints: Box::new(endpoints),
            auth,
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
        let resp = self.send(&self.endpoints.chat, &body, call.deadline).await?;
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
        let resp = self.send(&self.endpoints.completions, &body, call.deadline).await?;
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
        let model = self.endpoints.responses_model.as_deref().unwrap_or(call.model.as_str());
        let body = responses::body(call.body, model);
        let resp = self.send(&self.endpoints.responses, &body, call.deadline).await?;
        if !call.stream || is_json(&resp) {
            return responses::complete(resp, call.deadline).await.map(Reply::Complete);
        }
        Ok(Reply::Stream(responses::events(resp, call.deadline)))
    }

    /// Sends an embeddings request.
    pub async fn embeddings(&self, call: &EmbeddingsCall<'_>) -> Result<Complete, ProviderError> {
        let mut body = call.request.clone();
        body.model = call.model.to_string();
        let resp = self.send(&self.endpoints.embeddings, &body, call.deadline).await?;
        complete(resp, call.deadline).await
    }

    /// Sends `body` to `url` and returns a successful answer, or the failure with the secret it
    /// carried blanked out. A 401 for a token that has since expired is tried once more.
    async fn send(
        &self,
        url: &Target,
        body: &impl serde::Serialize,
        deadline: tokio::time::Instant,
    ) -> Result<Response, ProviderError> {
        let (mut resp, mut sent) = self.send_once(url, body).await?;
        if resp.status() == http::StatusCode::UNAUTHORIZED
            && let Some(rejected) = &sent
            && self.auth.renew(rejected)
        {
            (resp, sent) = self.send_once(url, body).await?;
        }
        if !resp.status().is_success() {
            return Err(error_from_response(resp, deadline, sent.as_ref()).await);
        }
        Ok(resp)
    }

    async fn send_once(
        &self,
        url: &Target,
        body: &impl serde::Serialize,
    ) -> Result<(Response, Option<ApiKey>), ProviderError> {
        let url = url.as_ref().map_err(|text| client::bad_url(text))?;
        let (request, sent) = self.auth.apply(client::post_json(url, body)?).await?;
        let resp = self.client.send(request).await?;
        Ok((resp, sent))
    }
}

/// `url` parsed (as a URL first, which normalizes it as reqwest did), or its text when it does
/// not parse.
pub fn parsed(url: String) -> Target {
    match reqwest::Url::parse(&url) {
        Ok(parsed) => http::Uri::try_from(parsed.as_str()).map_err(|_| url),
        Err(_) => Err(url),
    }
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
fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"))
}

async fn complete(resp: Response, deadline: tokio::time::Instant) -> Result<Complete, ProviderError> {
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
mod tests;
