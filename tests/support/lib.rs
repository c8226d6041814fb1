//! Support for cross-process tests.
pub mod cluster;
pub mod sidecar;
pub mod upstream;
