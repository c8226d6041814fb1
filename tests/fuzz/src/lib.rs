//! Shared pieces of the fuzz targets: how an input is split into network reads, how a chunk
//! stream is driven to its end, and the invariants every translated stream keeps.

use std::{cell::RefCell, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use sluice_sidecar::{
    providers::{ChunkStream, ProviderError, StreamEvent},
    sse::{SseDecoder, SseError, SseEvent},
};

/// A streaming input: the client's `include_usage` choice and an upstream body cut into reads.
#[derive(Debug)]
pub struct StreamInput<'a> {
    /// Whether the client asked for the usage chunk.
    pub wants_usage: bool,
    /// The body, as the reads that deliver it.
    pub reads: Vec<&'a [u8]>,
    /// The whole body.
    pub body: &'a [u8],
}

impl<'a> StreamInput<'a> {
    /// Decodes `[flags, n, len_1 … len_n, body…]`: bit 0 of `flags` is `wants_usage`; the body
    /// is cut into reads of `len_i + 1` bytes, cycling through the lengths (one read when n = 0).
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&flags, rest) = data.split_first()?;
        let (&n, rest) = rest.split_first()?;
        let n = usize::from(n % 16).min(rest.len());
        let (lengths, body) = rest.split_at(n);
        let mut reads = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < body.len() {
            let len = match lengths.get(i % lengths.len().max(1)) {
                Some(&l) => usize::from(l) + 1,
                None => body.len(),
            };
            let end = (at + len).min(body.len());
            reads.push(&body[at..end]);
            at = end;
            i += 1;
        }
        Some(Self {
            wants_usage: flags & 1 == 1,
            reads,
            body,
        })
    }

    /// The reads as an upstream body stream, ending cleanly after the last one.
    pub fn body_stream(&self) -> impl futures::Stream<Item = Result<Bytes, ProviderError>> + Send + 'static {
        let reads: Vec<_> = self.reads.iter().map(|r| Ok(Bytes::copy_from_slice(r))).collect();
        futures::stream::iter(reads)
    }
}

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// Runs a future on this thread's current-thread runtime (with timers, which the decoder's
/// deadline needs).
pub fn block_on<F: Future>(future: F) -> F::Output {
    RUNTIME.with(|cell| {
        let mut slot = cell.borrow_mut();
        let runtime = slot.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a current-thread runtime builds")
        });
        runtime.block_on(future)
    })
}

/// A deadline no fuzz input reaches.
pub fn far_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(3600)
}

/// Drives a chunk stream to its end, asserting that nothing follows an error.
pub fn drain(stream: ChunkStream) -> (Vec<StreamEvent>, Option<ProviderError>) {
    block_on(async move {
        let mut stream = stream;
        let mut items = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => items.push(event),
                Err(e) => {
                    // The error says why the answer ended: nothing may follow it.
                    assert!(stream.next().await.is_none(), "an item followed the stream's error");
                    // Errors render (the client and the logs see them).
                    let _ = e.to_string();
                    return (items, Some(e));
                }
            }
        }
        (items, None)
    })
}

/// The `data:` payloads of a translated stream, each asserted to be one JSON object.
pub fn data_objects(items: &[StreamEvent]) -> Vec<serde_json::Map<String, Value>> {
    items
        .iter()
        .filter_map(|item| match item {
            StreamEvent::Data(bytes) => match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(map)) => Some(map),
                other => panic!("a forwarded chunk is not a JSON object: {other:?} from {bytes:?}"),
            },
            StreamEvent::Usage(_) => None,
        })
        .collect()
}

/// How many usage reports a stream carried.
pub fn usage_count(items: &[StreamEvent]) -> usize {
    items.iter().filter(|i| matches!(i, StreamEvent::Usage(_))).count()
}

/// Asserts that the SSE decoder finds the same events however the body is cut into reads.
pub fn check_decoder_split_invariance(input: &StreamInput<'_>) {
    let whole = decode(&[input.body], usize::MAX);
    let split = decode(&input.reads, usize::MAX);
    assert_eq!(whole, split, "the events depend on where the reads were cut");
    // A small bound must refuse, never panic or grow.
    let _ = decode(&input.reads, 64);
}

type Decoded = (Vec<Result<SseEvent, SseError>>, bool);

fn decode(reads: &[&[u8]], max: usize) -> Decoded {
    let mut decoder = SseDecoder::new(max);
    let mut events = Vec::new();
    for read in reads {
        decoder.push(read);
        while let Some(event) = decoder.next_event() {
            events.push(event);
        }
    }
    (events, decoder.has_partial())
}

/// The error statuses an upstream answers with, picked by one input byte.
pub fn error_status(byte: u8) -> http::StatusCode {
    const STATUSES: [u16; 10] = [400, 401, 403, 404, 408, 413, 429, 500, 503, 529];
    http::StatusCode::from_u16(STATUSES[usize::from(byte) % STATUSES.len()]).unwrap_or(http::StatusCode::BAD_GATEWAY)
}
