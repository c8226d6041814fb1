//! The client side of a streamed answer: chunks framed as SSE as they arrive, `[DONE]` at
//! the end, or one error event if the upstream breaks off.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use sluice_crds::ObjectKey;
use tokio::time::Instant;

use crate::{
    accounting::Usage,
    error::error_body,
    providers::{ChunkStream, ProviderError, StreamEvent},
    response,
    route::BackendRuntime,
    sse,
};

/// A streamed chat answer as an HTTP body.
pub struct SseBody {
    stream: Option<ChunkStream>,
    route: ObjectKey,
    backend: Arc<BackendRuntime>,
    started: Instant,
    usage: Option<Usage>,
    chunks: u64,
}

impl SseBody {
    /// Wraps a stream whose first event has already been received.
    pub fn new(stream: ChunkStream, route: ObjectKey, backend: Arc<BackendRuntime>, started: Instant) -> Self {
        Self {
            stream: Some(stream),
            route,
            backend,
            started,
            usage: None,
            chunks: 0,
        }
    }

    /// As the sidecar's response body type.
    pub fn boxed(self) -> response::Body {
        BodyExt::boxed_unsync(self)
    }

    fn finish(&mut self, error: Option<&ProviderError>) {
        self.stream = None;
        let usage = self.usage.unwrap_or_default();
        let cost = self.backend.pricing.as_ref().map(|p| usage.cost(p));
        tracing::info!(target: "sluice::access", route = %self.route, backend = %self.backend.name,
            model = %self.backend.model, status = 200, stream = true, chunks = self.chunks,
            latency_ms = self.started.elapsed().as_millis() as u64,
            input_tokens = usage.input.0, output_tokens = usage.output.0, usage_reported = self.usage.is_some(),
            cost_usd = %cost.map(|c| c.to_string()).unwrap_or_default(),
            error = error.map(ToString::to_string).unwrap_or_default(), "chat completion stream");
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            let frame = match std::task::ready!(stream.as_mut().poll_next(cx)) {
                Some(Ok(StreamEvent::Usage(u))) => {
                    this.usage = Some(u);
                    continue;
                }
                Some(Ok(StreamEvent::Data(payload))) => {
                    this.chunks += 1;
                    sse::encode_data(&payload)
                }
                Some(Err(e)) => {
                    // Headers are gone already: the error travels as an event the SDKs raise on.
                    let code = match e {
                        ProviderError::Timeout(_) => "upstream_timeout",
                        _ => "upstream_error",
                    };
                    let event = sse::encode_data(&error_body(&e.to_string(), "upstream_error", Some(code), None));
                    this.finish(Some(&e));
                    event
                }
                None => {
                    this.finish(None);
                    Bytes::from_static(sse::DONE)
                }
            };
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none()
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        if self.stream.is_some() {
            // The client went away mid-stream; record what was used so far.
            let gone = ProviderError::Interrupted("the client disconnected".into());
            self.finish(Some(&gone));
        }
    }
}
