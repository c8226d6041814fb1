//! The mutating admission webhook that injects the sidecar (DESIGN §7): the pure patch builder
//! ([`inject`]) and the flags that configure it ([`args`]). The HTTPS handler sits on top.

pub mod args;
pub mod inject;
