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
pub mod sessions;

use std::{convert::Infallible, sync::Arc, time::Duration};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Debug)]
pub struct ControlServer {
    /// The operator's state.
    pub ctx: Arc<Context>,
    /// Token reviews.
    pub auth: auth::Authenticator,
    /// True while this replica leads (only then are calls served).
    pub leading: watch::Receiver<bool>,
}

/// Serves the control API on `listener` until `shutdown`; open streams are then closed after a
/// second (sidecars reconnect to the next leader).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<ControlServer>,
    shutdown: CancellationToken,
) {
    let handler = move |req| handlers::handle(req, server.clone());
    serve_https(listener, tls, handler, shutdown).await;
}

/// Serves HTTPS on `listener` with `handler` until `shutdown`, then closes what is open after a
/// second; shared by the control API and the admission webhook.
pub async fn serve_https<H, F>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(http::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = http::Response<handlers::Body>> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder.http2().timer(TokioTimer::new());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let response = handler(req);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let connection = builder.serve_connection(TokioIo::new(tls), service).into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}
