//! OpenAI-protocol upstreams (OpenAI, OpenAI-compatible servers, Azure OpenAI): the body passes
//! through with `model` rewritten. Where each API lives ([`Endpoints`]) and how the caller is
//! named ([`Auth`]) are all that differ between them.

pub mod auth;
mod chunk;
pub mod responses;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use sluice_crds::ApiKey;

pub use self::auth::Auth;
use self::chunk::Chunk;

use super::{
    BodyStream, ChatCall, ChunkStream, Complete, CompletionsCall, EmbeddingsCall, MAX_UPSTREAM_BODY, ProviderError,
    Reply, ResponsesCall, StreamEvent, body_stream,
    client::{self, Response, UpstreamClient},
    error_from_response, read_body, replayed_stream, sse_events,
};
use crate::{
    formats::openai::{
        self, ChatRequest, CompletionsRequest, EmbeddingsRequest, StreamOptions,
        splice::{Edits, RawBody, upstream_body},
        usage::openai_usage,
    },
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
        let request = call.request;
        let client_wants_usage = request.wants_stream_usage();
        let body = streamed_body(
            &request.raw,
            call.model.as_str(),
            request.is_stream(),
            request.stream_options.as_ref(),
            |stream_options| ChatRequest {
                model: call.model.to_string(),
                stream_options,
                ..request.clone()
            },
        )?;
        let resp = self.send(&self.endpoints.chat, body, call.deadline).await?;
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
        let request = call.request;
        let client_wants_usage = request.wants_stream_usage();
        let body = streamed_body(
            &request.raw,
            call.model.as_str(),
            request.is_stream(),
            request.stream_options.as_ref(),
            |stream_options| CompletionsRequest {
                model: call.model.to_string(),
                stream_options,
                ..request.clone()
            },
        )?;
        let resp = self.send(&self.endpoints.completions, body, call.deadline).await?;
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
        let body = responses::body(call.body, model).map_err(unencodable)?;
        let resp = self.send(&self.endpoints.responses, body, call.deadline).await?;
        if !call.stream || is_json(&resp) {
            return responses::complete(resp, call.deadline).await.map(Reply::Complete);
        }
        Ok(Reply::Stream(responses::events(resp, call.deadline)))
    }

    /// Sends an embeddings request.
    pub async fn embeddings(&self, call: &EmbeddingsCall<'_>) -> Result<Complete, ProviderError> {
        let edits = Edits {
            model: call.model.as_str(),
            stream_options: None,
        };
        let body = upstream_body(&call.request.raw, edits, || EmbeddingsRequest {
            model: call.model.to_string(),
            ..call.request.clone()
        })
        .map_err(unencodable)?;
        let resp = self.send(&self.endpoints.embeddings, body, call.deadline).await?;
        complete(resp, call.deadline).await
    }

    /// Sends `body` to `url` and returns a successful answer, or the failure with the secret it
    /// carried blanked out. A 401 for a token that has since expired is tried once more.
    async fn send(&self, url: &Target, body: Bytes, deadline: tokio::time::Instant) -> Result<Response, ProviderError> {
        let (mut resp, mut sent) = self.send_once(url, body.clone()).await?;
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

    async fn send_once(&self, url: &Target, body: Bytes) -> Result<(Response, Option<ApiKey>), ProviderError> {
        let url = url.as_ref().map_err(|text| client::bad_url(text))?;
        let (request, sent) = self.auth.apply(client::post(url, body)?).await?;
        let resp = self.client.send(request).await?;
        Ok((resp, sent))
    }
}

/// The `stream_options` to send when they must change: a stream whose client did not ask for
/// usage asks for it all the same, so that it is accounted (the client gets it only if it asked).
fn usage_asked(stream: bool, asked: Option<&StreamOptions>) -> Option<StreamOptions> {
    let wants_usage = asked.and_then(|o| o.include_usage) == Some(true);
    (stream && !wants_usage).then(|| StreamOptions {
        include_usage: Some(true),
        ..asked.cloned().unwrap_or_default()
    })
}

/// The body of a request that may stream (chat, legacy completions): the client's bytes with the
/// backend's `model` spliced in and, for a stream, the `stream_options` that ask for usage; or,
/// without bytes to splice into, what `rebuild` makes of the stream options to send, serialized.
fn streamed_body<T: serde::Serialize>(
    raw: &RawBody,
    model: &str,
    stream: bool,
    asked: Option<&StreamOptions>,
    rebuild: impl FnOnce(Option<StreamOptions>) -> T,
) -> Result<Bytes, ProviderError> {
    let options = usage_asked(stream, asked);
    let edits = Edits {
        model,
        stream_options: options.as_ref(),
    };
    upstream_body(raw, edits, || rebuild(options.clone().or_else(|| asked.cloned()))).map_err(unencodable)
}

/// A body that could not be encoded (no parsed request fails to): the call ends as reqwest
/// ended one whose body failed to encode.
fn unencodable(e: serde_json::Error) -> ProviderError {
    ProviderError::Interrupted(format!("the request could not be encoded: {e}"))
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

/// At most two items one event yields: its usage, then its chunk (or one error); no allocation.
type EventItems = std::iter::Chain<
    std::option::IntoIter<Result<StreamEvent, ProviderError>>,
    std::option::IntoIter<Result<StreamEvent, ProviderError>>,
>;

fn one_error(e: ProviderError) -> EventItems {
    Some(Err(e)).into_iter().chain(None)
}

/// Maps one upstream event to what goes on: `None` at `[DONE]`, usage split out, and the
/// `usage` field removed from chunks when the client did not ask for it.
fn to_stream_events(event: Result<SseEvent, ProviderError>, client_wants_usage: bool) -> Option<EventItems> {
    let event = match event {
        Ok(e) if e.data == "[DONE]" => return None,
        Ok(e) => e,
        Err(e) => return Some(one_error(e)),
    };
    let Ok(chunk) = Chunk::parse(&event.data) else {
        return Some(one_error(ProviderError::InvalidResponse(
            "a stream event is not a JSON object".into(),
        )));
    };
    if let Some(error) = chunk.error() {
        let body = Bytes::from(format!(r#"{{"error":{}}}"#, error.get()));
        let status = http::StatusCode::BAD_GATEWAY;
        return Some(one_error(ProviderError::Status {
            status,
            retry_after: None,
            body,
        }));
    }
    let usage_member = chunk.usage();
    let usage = usage_member
        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        .and_then(|usage| Usage::from_openai(&usage));
    // The chunk is forwarded as the bytes it came in unless its usage must go.
    let forward = if client_wants_usage {
        Some(event.data.clone().into_inner())
    } else if usage.is_some() && chunk.has_no_choices() {
        None
    } else if usage_member.is_some() {
        match chunk.without_usage() {
            Ok(stripped) => Some(Bytes::from(stripped)),
            Err(e) => return Some(one_error(ProviderError::InvalidResponse(e.to_string()))),
        }
    } else {
        Some(event.data.clone().into_inner())
    };
    let usage = usage.map(|u| Ok(StreamEvent::Usage(u)));
    Some(usage.into_iter().chain(forward.map(|b| Ok(StreamEvent::Data(b)))))
}

#[cfg(test)]
mod tests;
