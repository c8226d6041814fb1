//! What an upstream answered, as every stage after the provider sees it.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

use super::{ProviderError, Usage};

/// A whole answer in OpenAI's format.
#[derive(Debug)]
pub struct Complete {
    /// The body to send to the client.
    pub body: Bytes,
    /// Usage from the answer, if it had any.
    pub usage: Option<Usage>,
}

/// What an upstream answered to a chat request.
pub enum Reply {
    /// A whole JSON document.
    Complete(Complete),
    /// Chunks of a streamed answer, as they arrive.
    Stream(ChunkStream),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Complete(c) => c.fmt(f),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// A streamed answer: OpenAI `chat.completion.chunk` payloads and usage, ending or failing.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// One item of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A JSON payload to forward as one `data:` event.
    Data(Bytes),
    /// Usage reported by the upstream, for accounting; not forwarded by itself.
    Usage(Usage),
}

/// How the cache took part in a request: the `x-sluice-cache` response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Answered from the cache; no upstream call.
    Hit,
    /// Cacheable, not cached yet: answered upstream (and stored).
    Miss,
    /// Not cacheable: no cache on the route, a non-deterministic request, or the client said `bypass`.
    Bypass,
}

impl CacheStatus {
    /// `hit`, `miss` or `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}
