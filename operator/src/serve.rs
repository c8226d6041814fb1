//! Serving HTTP for every listener of the operator (control server, webhook, admin): the accept
//! loop, the TLS handshake (bounded in time), HTTP/1.1 and HTTP/2, and the graceful shutdown that
//! gives open connections a second to finish once told to stop. Handlers are plain async
//! functions from a request to a response; nothing here knows what they serve.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{
        conn::auto,
        graceful::{GracefulShutdown, Watcher},
    },
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A response body: whole or streamed.
pub type Body = BoxBody<Bytes, Infallible>;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);
/// How long open connections may take to finish after shutdown.
const DRAIN_WITHIN: Duration = Duration::from_secs(1);

/// Serves HTTPS on `listener` with `handler` until `shutdown`, then closes what is open after a
/// second.
pub async fn serve_https<H, F>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(http::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = http::Response<Body>> + Send + 'static,
{
    serve(listener, Some(TlsAcceptor::from(tls)), handler, shutdown).await;
}

/// Serves plain HTTP on `listener` with `handler` until `shutdown` (the admin listener).
pub async fn serve_http<H, F>(listener: TcpListener, handler: H, shutdown: CancellationToken)
where
    H: Fn(http::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = http::Response<Body>> + Send + 'static,
{
    serve(listener, None, handler, shutdown).await;
}

async fn serve<H, F>(listener: TcpListener, tls: Option<TlsAcceptor>, handler: H, shutdown: CancellationToken)
where
    H: Fn(http::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = http::Response<Body>> + Send + 'static,
{
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
        let connection = Connection {
            handler: handler.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            peer,
        };
        tokio::spawn(connection.run(tcp, tls.clone()));
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_WITHIN) => {}
    }
}

/// One accepted connection.
struct Connection<H> {
    handler: H,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    peer: SocketAddr,
}

impl<H, F> Connection<H>
where
    H: Fn(http::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = http::Response<Body>> + Send + 'static,
{
    async fn run(self, tcp: TcpStream, tls: Option<TlsAcceptor>) {
        let Some(acceptor) = tls else {
            return self.http(TokioIo::new(tcp)).await;
        };
        let peer = self.peer;
        match tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => self.http(TokioIo::new(tls)).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    async fn http<I>(self, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let handler = self.handler;
        let service = hyper::service::service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = self.builder.serve_connection(io, service).into_owned();
        if let Err(e) = self.watcher.watch(connection).await {
            tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
        }
    }
}
