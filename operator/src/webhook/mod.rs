//! The mutating admission webhook that injects the sidecar (DESIGN §7): the pure patch builder
//! ([`inject`]), the flags that configure it ([`args`]) and its HTTPS endpoint ([`server`]).

pub mod args;
pub mod inject;
pub mod server;
