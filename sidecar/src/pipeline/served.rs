//! What is known of one served request when its usage is recorded.

use std::sync::Arc;

use sluice_crds::MicroUsd;
use tokio::time::Instant;

use crate::{
    route::{BackendRuntime, Route},
    wire::{CacheStatus, Usage},
};

/// What is known of one served request when its usage is recorded.
#[derive(Debug, Clone)]
pub struct Served {
    /// The route (shared, not its key copied: a request is recorded and its headers written
    /// from it, and copying the key cost allocations on every request).
    pub route: Arc<Route>,
    /// The backend that answered.
    pub backend: Arc<BackendRuntime>,
    /// Attempts made.
    pub attempts: u32,
    /// When the request arrived.
    pub started: Instant,
    /// Which endpoint: `chat`, `embeddings`, `messages`.
    pub endpoint: &'static str,
    /// Whether the answer came from the cache (`x-sluice-cache`).
    pub cache: CacheStatus,
    /// The request's span when it is traced; it ends when the answer is recorded.
    pub trace: Option<opentelemetry::Context>,
}

impl Served {
    /// The cost of `usage` at this backend's prices, if it has any; a cache hit costs nothing.
    pub fn cost(&self, usage: Option<Usage>) -> Option<MicroUsd> {
        if self.cache == CacheStatus::Hit {
            return usage.map(|_| MicroUsd::ZERO);
        }
        usage.zip(self.backend.pricing.as_ref()).map(|(u, p)| u.cost(p))
    }
}
