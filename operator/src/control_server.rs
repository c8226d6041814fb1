//! The control server (DESIGN §6.1): HTTPS, every call authenticated by the pod's projected
//! ServiceAccount token. Serves the config stream, takes acks and usage reports. The protocol
//! itself is documented in `sluice_crds::control`.
//!
//! Every replica listens, but only the leader serves: a follower answers every call with 503
//! and a message saying so, and the sidecar, which treats any refusal like an unreachable
//! server, keeps serving its last snapshot and reconnects with backoff (to the next URL it was
//! given, or through the Service to whichever replica it reaches next). A refusal rather than
//! a proxy to the leader keeps followers free of state and of a second hop that could fail.

pub mod auth;
pub mod handlers;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use self::handlers::ControlServer;

/// Serves the control API on `listener` until `shutdown`; open streams are then closed after a
/// second (sidecars reconnect to the next leader).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<ControlServer>,
    shutdown: CancellationToken,
) {
    let handler = move |req| handlers::handle(req, server.clone());
    crate::serve::serve_https(listener, tls, handler, shutdown).await;
}
