//! Serving HTTP and HTTPS for every listener of both binaries: the sidecar's API and admin
//! listeners, the operator's control server, webhook and admin listener.
//!
//! It exists because every listener needs the same accept loop with the same protections, and
//! the two binaries each had a copy of it that had begun to drift. Here, once:
//!
//! - accepting, with a short back-off when accepting fails (out of file descriptors and the
//!   like) instead of spinning;
//! - TLS when asked, the handshake bounded in time;
//! - HTTP/1.1 and HTTP/2 on one port (hyper-util's auto builder), with a bounded time to send a
//!   request head (slowloris), a bounded head size (431 beyond it) and a bounded number of
//!   concurrent HTTP/2 streams per connection;
//! - graceful shutdown: stop accepting, let what is in flight (streams included) finish for a
//!   grace period, then close the connections that remain.
//!
//! Each binary states its settings in one [`Options`] value. A handler is a plain async function
//! from a request to a response; nothing here knows what it serves. Every request carries the
//! address of the connection's peer as a [`Peer`] extension, for a handler that answers some
//! paths only to some peers (the sidecar's admin listener keeps `/config` to its own pod).

mod shutdown;
#[cfg(test)]
mod tests;

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::shutdown::Phase;

/// How long the accept loop waits after accepting failed before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How a listener serves; the same for every connection it accepts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Serve HTTPS with this; `None` serves plain HTTP.
    pub tls: Option<Tls>,
    /// How long an HTTP/1 client may take to send a request head before it is cut off.
    pub header_read_timeout: Duration,
    /// The largest HTTP/1 request head read, a larger one gets 431; `None`: hyper's (~400 KiB).
    pub max_head_bytes: Option<usize>,
    /// The most concurrent HTTP/2 streams on one connection; `None`: hyper's default (200).
    pub max_concurrent_streams: Option<u32>,
    /// Whether accepted sockets send small writes at once (`TCP_NODELAY`) instead of batching.
    pub nodelay: bool,
    /// How long in-flight requests (streams included) may run on after shutdown before their
    /// connections are closed.
    pub grace: Duration,
}

/// Serving HTTPS.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The certificate chain, its key and the ALPN protocols offered.
    pub config: Arc<rustls::ServerConfig>,
    /// How long a client may take to finish the handshake before it is dropped.
    pub handshake_timeout: Duration,
}

/// The address of the client a request came from (the TCP peer of its connection), set by
/// [`serve`] as a request extension: `req.extensions().get::<Peer>()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// Serves `listener` with `handler` until `shutdown` fires; then stops accepting, lets in-flight
/// requests finish for up to `options.grace` and closes the connections that remain.
pub async fn serve<H, F, B>(listener: TcpListener, handler: H, options: Options, shutdown: CancellationToken)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let connections = Connections::new(handler, &options);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        if options.nodelay {
            let _ = tcp.set_nodelay(true);
        }
        connections.spawn(tcp, peer);
    }
    drop(listener);
    shutdown::drain(connections.phase, options.grace).await;
}

/// What the connections of one listener share.
struct Connections<H> {
    handler: H,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<(TlsAcceptor, Duration)>,
    /// Tells every open connection to drain, then to close.
    phase: watch::Sender<Phase>,
}

impl<H, F, B> Connections<H>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    fn new(handler: H, options: &Options) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let mut http1 = builder.http1();
        // A client that trickles its head (slowloris) is cut off instead of holding a task forever.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout);
        if let Some(max) = options.max_head_bytes {
            http1.max_buf_size(max);
        }
        let mut http2 = builder.http2();
        http2.timer(TokioTimer::new());
        if let Some(max) = options.max_concurrent_streams {
            http2.max_concurrent_streams(max);
        }
        let tls = options.tls.as_ref();
        let (phase, _) = watch::channel(Phase::Serving);
        Self {
            handler,
            builder,
            tls: tls.map(|tls| (TlsAcceptor::from(tls.config.clone()), tls.handshake_timeout)),
            phase,
        }
    }

    /// Serves one accepted connection in a task of its own, after the TLS handshake if any.
    fn spawn(&self, tcp: TcpStream, peer: SocketAddr) {
        let handler = self.handler.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            // Boxed: hyper keeps one allocation the size of this future for the connection's
            // whole life, a streamed answer's included; the sidecar's handler future is large
            // (~17 KiB with every stage of the pipeline) and is freed once the response head is out.
            let response = Box::pin(handler(req));
            async move { Ok::<_, Infallible>(response.await) }
        });
        let mut phase = self.phase.subscribe();
        let Some((acceptor, within)) = &self.tls else {
            let connection = self.builder.serve_connection(TokioIo::new(tcp), service).into_owned();
            tokio::spawn(shutdown::watch(connection, phase, peer));
            return;
        };
        let (acceptor, within, builder) = (acceptor.clone(), *within, self.builder.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(within, acceptor.accept(tcp));
            let tls = tokio::select! {
                finished = handshake => match finished {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                },
                // Shutting down before the client could ask anything: nothing to drain.
                _ = phase.changed() => return,
            };
            let connection = builder.serve_connection(TokioIo::new(tls), service).into_owned();
            shutdown::watch(connection, phase, peer).await;
        });
    }
}
