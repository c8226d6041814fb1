//! The exact-match response cache (DESIGN §5.6), with identical requests in flight coalesced.
//!
//! Only deterministic requests are cached (`temperature: 0` or a `seed`), keyed by the route and
//! the normalized body ([`key`]). Entries are bounded by bytes and expire after the route's
//! `ttl`. The first request for a key leads: it goes upstream while identical requests wait for
//! its answer instead of calling upstream too; if it fails, the next one leads. Answers are
//! kept as they came (a whole document or the stream's chunks) and replayed in whichever form
//! the client asks for ([`replay`]).

pub mod key;
pub mod record;
pub mod replay;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use sluice_crds::{BackendName, CachePolicy};
use tokio::{sync::watch, time::Instant};

use crate::wire::Usage;
pub use key::Key;
pub use record::Recorder;

/// Bytes an entry costs beyond its answer: key, bookkeeping, the map's own node.
const ENTRY_OVERHEAD: usize = 128;

/// One route's cache.
#[derive(Debug)]
pub struct Cache {
    ttl: Duration,
    max_bytes: u64,
    entries: moka::sync::Cache<Key, Arc<Entry>>,
    flights: Mutex<HashMap<Key, Flight>>,
    next_flight: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug)]
struct Flight {
    id: u64,
    done: watch::Sender<()>,
}

/// A stored answer.
#[derive(Debug)]
pub struct Entry {
    /// The backend that gave it.
    pub backend: BackendName,
    /// The answer as it came.
    pub answer: Stored,
    /// Its usage, as the provider reported it.
    pub usage: Option<Usage>,
    stored_at: Instant,
    weight: u32,
}

/// An answer in the form it arrived.
#[derive(Debug)]
pub enum Stored {
    /// A `chat.completion` document.
    Complete(Bytes),
    /// The `chat.completion.chunk` payloads of a stream, without usage.
    Chunks(Vec<Bytes>),
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh answer.
    Hit(Arc<Entry>),
    /// Nothing: go upstream and fill the cache with the answer.
    Miss(Fill),
}

/// The duty to store the answer of a missed lookup. While it lives, identical requests wait
/// for it; dropping it unfilled (the request failed) lets the next one lead.
#[derive(Debug)]
pub struct Fill {
    cache: Arc<Cache>,
    key: Key,
    flight: Option<u64>,
}

/// Entries and traffic, for `/config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLevel {
    /// Entries held.
    pub entries: u64,
    /// Bytes held (as weighed).
    pub bytes: u64,
    /// The bound.
    pub max_bytes: u64,
    /// Lookups answered.
    pub hits: u64,
    /// Lookups that went upstream.
    pub misses: u64,
}

impl Cache {
    /// An empty cache under `policy`.
    pub fn new(policy: CachePolicy) -> Self {
        let ttl = policy.ttl.get();
        let max_bytes = policy.max_bytes.bytes();
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &Key, e: &Arc<Entry>| e.weight)
            .time_to_live(ttl.max(Duration::from_millis(1)))
            .build();
        Self {
            ttl,
            max_bytes,
            entries,
            flights: Mutex::new(HashMap::new()),
            next_flight: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Finds `key`'s answer, waiting (until `wait_until` at most) for an identical request in
    /// flight rather than going upstream beside it.
    pub async fn lookup(self: &Arc<Self>, key: Key, wait_until: Instant) -> Lookup {
        loop {
            if let Some(entry) = self.fresh(&key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Lookup::Hit(entry);
            }
            let mut done = {
                let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
                match flights.get(&key) {
                    Some(flight) => flight.done.subscribe(),
                    None => {
                        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
                        let (done, _) = watch::channel(());
                        flights.insert(key, Flight { id, done });
                        self.misses.fetch_add(1, Ordering::Relaxed);
                        return Lookup::Miss(self.fill(key, Some(id)));
                    }
                }
            };
            // The leader's `Fill` drops its sender when it is done either way; then look again.
            if tokio::time::timeout_at(wait_until, done.changed()).await.is_err() {
                // The leader is slower than this request may wait: go upstream on our own.
                self.misses.fetch_add(1, Ordering::Relaxed);
                return Lookup::Miss(self.fill(key, None));
            }
        }
    }

    /// Entries and traffic now.
    pub fn level(&self) -> CacheLevel {
        self.entries.run_pending_tasks();
        CacheLevel {
            entries: self.entries.entry_count(),
            bytes: self.entries.weighted_size(),
            max_bytes: self.max_bytes,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn fill(self: &Arc<Self>, key: Key, flight: Option<u64>) -> Fill {
        Fill {
            cache: self.clone(),
            key,
            flight,
        }
    }

    /// An entry younger than the TTL by tokio's clock (moka's own expiry keeps memory bounded;
    /// this check makes expiry exact and testable with a paused clock).
    fn fresh(&self, key: &Key) -> Option<Arc<Entry>> {
        let entry = self.entries.get(key)?;
        if Instant::now().saturating_duration_since(entry.stored_at) < self.ttl {
            return Some(entry);
        }
        self.entries.invalidate(key);
        None
    }

    fn insert(&self, key: Key, backend: BackendName, answer: Stored, usage: Option<Usage>) {
        let bytes = match &answer {
            Stored::Complete(body) => body.len(),
            Stored::Chunks(chunks) => chunks.iter().map(Bytes::len).sum(),
        };
        let weight = bytes.saturating_add(ENTRY_OVERHEAD);
        if weight as u64 > self.max_bytes {
            return;
        }
        let entry = Entry {
            backend,
            answer,
            usage,
            stored_at: Instant::now(),
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
        };
        self.entries.insert(key, Arc::new(entry));
    }
}

impl Fill {
    /// Stores a whole answer.
    pub fn complete(self, backend: BackendName, body: Bytes, usage: Option<Usage>) {
        self.cache.insert(self.key, backend, Stored::Complete(body), usage);
    }

    /// Records a streamed answer as it passes; stored once it ends cleanly.
    pub fn record(self, backend: BackendName) -> Recorder {
        Recorder::new(self, backend)
    }

    fn store_chunks(self, backend: BackendName, chunks: Vec<Bytes>, usage: Option<Usage>) {
        self.cache.insert(self.key, backend, Stored::Chunks(chunks), usage);
    }

    fn max_bytes(&self) -> u64 {
        self.cache.max_bytes
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        let Some(id) = self.flight else { return };
        let mut flights = self.cache.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(&self.key).is_some_and(|f| f.id == id) {
            // Dropping the sender wakes every waiter; the answer is in the cache by now if any.
            flights.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests;
