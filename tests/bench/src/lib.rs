//! The benchmark harness of `tests/bench/run`: a fast upstream, the floor (a bare forwarding
//! proxy) and the driver that measures the real sidecar beside a direct call and the floor.
//!
//! Nothing here is a test: the driver measures and reports, it never fails on a timing.

pub mod budget;
pub mod collector;
pub mod driver;
pub mod fanout;
pub mod floor;
pub mod serve;
pub mod soak;
pub mod upstream;
