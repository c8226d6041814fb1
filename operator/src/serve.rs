//! The operator's serving settings, the same for every listener (control server, webhook,
//! admin); serving itself (the accept loop, the TLS handshake, HTTP/1.1 and HTTP/2, the
//! graceful shutdown that gives open connections a second to finish once told to stop) is
//! `sluice_serve`. Handlers are plain async functions from a request to a response.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use sluice_serve::{Options, Tls};
use tokio::net::TcpListener;
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
    let tls = Tls {
        config: tls,
        handshake_timeout: HANDSHAKE_WITHIN,
    };
    sluice_serve::serve(listener, handler, options(Some(tls)), shutdown).await;
}

/// Serves plain HTTP on `listener` with `handler` until `shutdown` (the admin listener).
pub async fn serve_http<H, F>(listener: TcpListener, handler: H, shutdown: CancellationToken)
where
    H: Fn(http::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = http::Response<Body>> + Send + 'static,
{
    sluice_serve::serve(listener, handler, options(None), shutdown).await;
}

/// The same for every listener. hyper's own bounds on the request head and on HTTP/2 streams,
/// and no `TCP_NODELAY`, as the operator always served.
fn options(tls: Option<Tls>) -> Options {
    Options {
        tls,
        header_read_timeout: Duration::from_secs(30),
        max_head_bytes: None,
        max_concurrent_streams: None,
        nodelay: false,
        grace: DRAIN_WITHIN,
    }
}
