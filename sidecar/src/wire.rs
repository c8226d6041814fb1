//! The types every stage of a request shares: usage, the upstream's reply and stream events,
//! why an upstream call failed, whether the cache took part, and the error body.
//!
//! A leaf: it imports nothing from the crate, so providers, routing, accounting, the pipeline
//! and the endpoints can all use it without importing each other. Imports run one way:
//! `wire` ← `providers` ← `route` ← `accounting` ← `pipeline` ← `endpoints` ← `listener`
//! (`sidecar/scripts/check-module-cycles` checks it).

mod fault;
mod reply;
mod usage;

pub use self::{
    fault::{ProviderError, TimeoutPhase, error_body, is_client_fault, with_causes},
    reply::{CacheStatus, ChunkStream, Complete, Reply, StreamEvent},
    usage::{Usage, estimate_tokens},
};
