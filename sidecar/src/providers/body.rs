//! Reading upstream answers: whole bodies within a bound and a deadline, server-sent events as
//! they arrive, and a provider's events translated into the sidecar's chunk stream.

use std::{collections::VecDeque, pin::Pin};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::{ChunkStream, MAX_UPSTREAM_BODY, ProviderError, StreamEvent, TimeoutPhase, client::Response};
use crate::{
    sse::{SseDecoder, SseEvent},
    translate::StreamTranslator,
};

/// Reads a whole body, refusing one larger than `limit` or slower than the deadline.
pub(super) async fn read_body(resp: Response, limit: usize, deadline: Instant) -> Result<Bytes, ProviderError> {
    let mut body = resp.into_body();
    // Most answers arrive in one chunk: it is kept as it came, copied only when a second follows.
    let mut first: Option<Bytes> = None;
    let mut out = bytes::BytesMut::new();
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| ProviderError::Timeout(TimeoutPhase::Total))?;
        let chunk = match frame {
            None => break,
            Some(Err(e)) => return Err(ProviderError::Interrupted(crate::wire::with_causes(&e))),
            // Trailers carry no body.
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => chunk,
                Err(_) => continue,
            },
        };
        let held = first.as_ref().map_or(0, Bytes::len) + out.len();
        if held + chunk.len() > limit {
            return Err(ProviderError::InvalidResponse(format!(
                "answer larger than {limit} bytes"
            )));
        }
        match first.take() {
            None if out.is_empty() => first = Some(chunk),
            None => out.extend_from_slice(&chunk),
            Some(earlier) => {
                out.reserve(earlier.len() + chunk.len());
                out.extend_from_slice(&earlier);
                out.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| out.freeze()))
}

/// [`read_body`] for an identity exchange's answer (reqwest's).
pub(super) async fn read_identity_body(
    mut resp: reqwest::Response,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, ProviderError> {
    let mut out = bytes::BytesMut::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .map_err(|_| ProviderError::Timeout(TimeoutPhase::Total))?
            .map_err(|e| ProviderError::Interrupted(crate::wire::with_causes(&e)))?;
        let Some(chunk) = chunk else { return Ok(out.freeze()) };
        if out.len() + chunk.len() > limit {
            return Err(ProviderError::InvalidResponse(format!(
                "answer larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
}

/// An upstream body as it arrives: chunks of bytes, or why the connection broke.
pub trait BodyStream: Stream<Item = Result<Bytes, ProviderError>> + Send + 'static {}

impl<S: Stream<Item = Result<Bytes, ProviderError>> + Send + 'static> BodyStream for S {}

/// The body of an upstream response as a [`BodyStream`].
pub(super) fn body_stream(resp: Response) -> impl BodyStream {
    resp.into_body()
        .into_data_stream()
        .map(|chunk| chunk.map_err(|e| ProviderError::Interrupted(crate::wire::with_causes(&e))))
}

/// The upstream's events, decoded as they arrive, bounded in size and by the deadline.
/// The stream ends after the event for which `is_last` holds; ending earlier is an error.
pub(super) fn sse_events(
    body: impl BodyStream,
    deadline: Instant,
    is_last: fn(&SseEvent) -> bool,
) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send {
    decoded_events(body, deadline, Some(is_last))
}

/// Like [`sse_events`] for upstreams without a final event (Gemini): the stream ends when the
/// connection closes cleanly, and the provider's translator judges whether the answer was whole.
pub(super) fn sse_events_until_close(
    body: impl BodyStream,
    deadline: Instant,
) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send {
    decoded_events(body, deadline, None)
}

fn decoded_events(
    body: impl BodyStream,
    deadline: Instant,
    is_last: Option<fn(&SseEvent) -> bool>,
) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send {
    struct State {
        body: Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>,
        decoder: SseDecoder,
        finished: bool,
    }
    let state = State {
        body: Box::pin(body),
        decoder: SseDecoder::new(MAX_UPSTREAM_BODY),
        finished: false,
    };
    futures::stream::unfold(state, move |mut s| async move {
        if s.finished {
            return None;
        }
        loop {
            if let Some(event) = s.decoder.next_event() {
                let item = event.map_err(|e| ProviderError::InvalidResponse(e.to_string()));
                s.finished = item.as_ref().map_or(true, |e| is_last.is_some_and(|last| last(e)));
                return Some((item, s));
            }
            let next = tokio::time::timeout_at(deadline, s.body.next()).await;
            let failure = match next {
                Err(_) => ProviderError::Timeout(TimeoutPhase::Total),
                Ok(Some(Ok(bytes))) => {
                    s.decoder.push(bytes);
                    continue;
                }
                Ok(Some(Err(e))) => e,
                Ok(None) if s.decoder.has_partial() => {
                    ProviderError::Interrupted("the connection closed in the middle of an event".into())
                }
                Ok(None) if is_last.is_none() => return None,
                Ok(None) => ProviderError::Interrupted("the stream ended before its final event".into()),
            };
            s.finished = true;
            return Some((Err(failure), s));
        }
    })
}

/// The chunk stream of a translated upstream stream: the translator's items in order, ending
/// after the first error.
pub(super) fn translate_stream<S, T>(events: S, translator: T) -> ChunkStream
where
    S: Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static,
    T: StreamTranslator,
{
    struct State<S, T> {
        events: Pin<Box<S>>,
        translator: T,
        pending: VecDeque<StreamEvent>,
        done: bool,
    }
    let state = State {
        events: Box::pin(events),
        translator,
        pending: VecDeque::new(),
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(item) = s.pending.pop_front() {
                return Some((Ok(item), s));
            }
            if s.done {
                return None;
            }
            let produced = match s.events.next().await {
                Some(Ok(event)) => s.translator.event(&event.data),
                Some(Err(e)) => Err(e),
                None => {
                    s.done = true;
                    s.translator.end()
                }
            };
            match produced {
                Ok(items) => s.pending.extend(items),
                Err(e) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
            }
        }
    }))
}
