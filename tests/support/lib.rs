//! Support for cross-process tests.
pub mod addresses;
pub mod cluster;
pub mod http;
pub mod node;
pub mod operator;
pub mod otlp;
pub mod sidecar;
pub mod sse;
pub mod upstream;
