//! Recording a streamed answer for the cache while it passes to the client.

use bytes::Bytes;
use serde_json::Value;
use sluice_crds::BackendName;

use super::Fill;
use crate::wire::Usage;

/// Keeps a stream's chunks, normalized, until it ends; stored only if it ends cleanly.
#[derive(Debug)]
pub struct Recorder {
    /// Dropped as soon as nothing will be stored, so waiting requests go upstream at once.
    fill: Option<Fill>,
    backend: BackendName,
    chunks: Vec<Bytes>,
    bytes: u64,
    usage: Option<Usage>,
}

impl Recorder {
    pub(super) fn new(fill: Fill, backend: BackendName) -> Self {
        Self {
            fill: Some(fill),
            backend,
            chunks: Vec::new(),
            bytes: 0,
            usage: None,
        }
    }

    /// Keeps one forwarded chunk, without usage: the replay adds usage only for clients that
    /// ask for it.
    pub fn chunk(&mut self, payload: &Bytes) {
        let Some(max_bytes) = self.fill.as_ref().map(Fill::max_bytes) else {
            return;
        };
        let Ok(Value::Object(mut chunk)) = serde_json::from_slice::<Value>(payload) else {
            self.abandon();
            return;
        };
        let usage_only =
            chunk.contains_key("usage") && chunk.get("choices").and_then(Value::as_array).is_none_or(Vec::is_empty);
        if usage_only {
            return;
        }
        let stored = if chunk.remove("usage").is_some() {
            Bytes::from(Value::Object(chunk).to_string())
        } else {
            payload.clone()
        };
        self.bytes += stored.len() as u64;
        if self.bytes > max_bytes {
            self.abandon();
            return;
        }
        self.chunks.push(stored);
    }

    /// Notes the usage the upstream reported.
    pub fn usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
    }

    /// The stream ended cleanly: store it.
    pub fn finish(self) {
        if let Some(fill) = self.fill
            && !self.chunks.is_empty()
        {
            fill.store_chunks(self.backend, self.chunks, self.usage);
        }
    }

    fn abandon(&mut self) {
        self.fill = None;
        self.chunks = Vec::new();
    }
}
