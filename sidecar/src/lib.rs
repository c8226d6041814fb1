//! The Sluice sidecar: an OpenAI-compatible gateway on loopback that routes each model call
//! to a provider, under the routes, limits and budgets of its config.
//!
//! The modules follow the request path: [`listener`] accepts and dispatches, [`request`]
//! parses, [`route`] resolves the model and orders its backends, [`limits`] admits, [`cache`]
//! answers repeats, [`pipeline`] runs the stages in order, [`failover`] runs the attempts under
//! each backend's [`circuit`], [`providers`] speak
//! each upstream's protocol, [`accounting`] counts usage and cost. [`config`] holds the active
//! snapshot that [`manifests`] (local mode) loads; [`admin`] serves probes. [`wire`] holds the
//! types every stage shares and imports nothing from the crate, so imports run one way
//! (`scripts/check-module-cycles` lists any cycle).

pub mod accounting;
pub mod admin;
pub mod budget;
pub mod cache;
pub mod circuit;
pub mod config;
pub mod control;
pub mod durable;
pub mod endpoints;
pub mod error;
pub mod failover;
pub mod formats;
pub mod limits;
pub mod listener;
pub mod log_fields;
pub mod log_line;
pub mod manifests;
pub mod metrics;
pub mod pipeline;
pub mod providers;
pub mod request;
pub mod response;
pub mod route;
pub mod sse;
pub mod telemetry;
pub mod tokenizer;
pub mod translate;
pub mod wire;
