//! The attempt loop: which backend gets the request, under which time bounds.

use std::sync::Arc;

use futures::StreamExt;
use tokio::time::Instant;

use crate::{
    providers::{ChunkStream, Complete, ProviderError, Reply, TimeoutPhase},
    route::{BackendRuntime, Route},
};

/// An answer and who gave it.
#[derive(Debug)]
pub struct Served<T> {
    /// The answer; a stream has already yielded its first event.
    pub reply: T,
    /// The backend that answered.
    pub backend: Arc<BackendRuntime>,
    /// Attempts made, this one included.
    pub attempts: u32,
}

/// The last failure and who failed.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong.
    pub error: ProviderError,
    /// The backend tried last, if any.
    pub backend: Option<Arc<BackendRuntime>>,
    /// Attempts made.
    pub attempts: u32,
}

/// An answer that can be held back until its first byte is known good.
pub trait Answer: Sized + Send {
    /// Waits until the answer has produced something the client may see.
    fn first_byte(self) -> impl Future<Output = Result<Self, ProviderError>> + Send;
}

impl Answer for Complete {
    async fn first_byte(self) -> Result<Self, ProviderError> {
        Ok(self)
    }
}

impl Answer for Reply {
    async fn first_byte(self) -> Result<Self, ProviderError> {
        match self {
            Self::Stream(stream) => peek(stream).await.map(Self::Stream),
            complete @ Self::Complete(_) => Ok(complete),
        }
    }
}

/// Sends the request to the route's first backend in strategy order, bounded by its
/// `firstByte` and `total` timeouts. A stream's first event is awaited here, before anything
/// reaches the client, so that a failure up to that point is still reported as an error
/// status (and, once the retry policy runs, moved to another backend).
pub async fn serve<T, F, Fut>(route: &Route, started: Instant, call: F) -> Result<Served<T>, Failed>
where
    T: Answer,
    F: Fn(Arc<BackendRuntime>, Instant) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>> + Send,
{
    let Some(backend) = route.backends.first().cloned() else {
        let error = ProviderError::Connect("the route has no backends".into());
        return Err(Failed {
            error,
            backend: None,
            attempts: 0,
        });
    };
    let deadline = started + backend.timeouts.total.get();
    let first_byte = (Instant::now() + backend.timeouts.first_byte.get()).min(deadline);
    let phase = if first_byte < deadline {
        TimeoutPhase::FirstByte
    } else {
        TimeoutPhase::Total
    };
    let attempt = async { call(backend.clone(), deadline).await?.first_byte().await };
    let result = tokio::time::timeout_at(first_byte, attempt)
        .await
        .unwrap_or(Err(ProviderError::Timeout(phase)));
    match result {
        Ok(reply) => Ok(Served {
            reply,
            backend,
            attempts: 1,
        }),
        Err(error) => Err(Failed {
            error,
            backend: Some(backend),
            attempts: 1,
        }),
    }
}

/// Waits for a stream's first event and puts it back in front.
async fn peek(mut stream: ChunkStream) -> Result<ChunkStream, ProviderError> {
    match stream.next().await {
        Some(Ok(first)) => Ok(Box::pin(futures::stream::once(async { Ok(first) }).chain(stream))),
        Some(Err(e)) => Err(e),
        None => Err(ProviderError::Interrupted("the upstream stream was empty".into())),
    }
}
