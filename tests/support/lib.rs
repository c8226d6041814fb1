//! Support for cross-process tests.
pub mod addresses;
pub mod anthropic_upstream;
pub mod cluster;
pub mod gemini_upstream;
pub mod mock_server;
pub mod node;
pub mod operator;
pub mod sidecar;
pub mod upstream;
