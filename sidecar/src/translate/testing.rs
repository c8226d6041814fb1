//! What the translation tests share: an SSE transcript run through a stream translator.

use serde_json::Value;

use super::StreamTranslator;
use crate::{
    sse::SseDecoder,
    wire::{ProviderError, StreamEvent, Usage},
};

/// Runs an SSE transcript through `translator`, then its clean end: the chunks as JSON, the
/// metered usage, and the error that ended it, if one did.
pub fn translate_transcript(
    mut translator: impl StreamTranslator,
    transcript: &str,
) -> (Vec<Value>, Vec<Usage>, Option<ProviderError>) {
    let mut decoder = SseDecoder::new(1 << 20);
    decoder.push(bytes::Bytes::copy_from_slice(transcript.as_bytes()));
    let mut results: Vec<_> = std::iter::from_fn(|| decoder.next_event())
        .map(|e| translator.event(&e.unwrap().data))
        .collect();
    results.push(translator.end());
    let (mut chunks, mut usage) = (Vec::new(), Vec::new());
    for result in results {
        match result {
            Ok(items) => {
                for item in items {
                    match item {
                        StreamEvent::Data(bytes) => chunks.push(serde_json::from_slice(&bytes).unwrap()),
                        StreamEvent::Usage(u) => usage.push(u),
                    }
                }
            }
            Err(e) => return (chunks, usage, Some(e)),
        }
    }
    (chunks, usage, None)
}
