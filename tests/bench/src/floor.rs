//! The floor: a bare forwarding proxy with no features — the least any proxy adds.
//!
//! Each request goes to the one upstream through a pooled keep-alive client, path and query
//! kept, bodies streamed both ways without being read. No parsing, no routing, no limits, no
//! logging: whatever the sidecar adds beyond this is the price of its features.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::serve;

type Body = Either<Incoming, Full<Bytes>>;

#[derive(Debug)]
struct Floor {
    client: Client<HttpConnector, Incoming>,
    /// `http://host:port` of the upstream.
    authority: http::uri::Authority,
    host: header::HeaderValue,
}

/// Serves the floor on `addr`, forwarding to `upstream` (`http://127.0.0.1:PORT`), writing where
/// it listens to `address_file` once bound (see [`serve::bind`]).
pub async fn run(addr: SocketAddr, address_file: Option<&Path>, upstream: &Uri) -> Result<()> {
    let authority = upstream
        .authority()
        .cloned()
        .context("the upstream URL has no host:port")?;
    let host = header::HeaderValue::from_str(authority.as_str()).context("upstream host")?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .build(connector);
    let floor = Arc::new(Floor {
        client,
        authority,
        host,
    });
    // Bound only once the upstream is known to be usable, so a launcher never reads an address
    // file from a floor about to exit.
    let listener = serve::bind(addr, address_file).await?;
    serve::http1(listener, move |req| {
        let floor = Arc::clone(&floor);
        async move { Ok::<_, Infallible>(floor.forward(req).await) }
    })
    .await
}

impl Floor {
    async fn forward(&self, req: Request<Incoming>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = match Uri::from_parts(uri) {
            Ok(u) => u,
            Err(_) => return error(StatusCode::BAD_REQUEST),
        };
        parts.headers.insert(header::HOST, self.host.clone());
        parts.headers.remove(header::CONNECTION);
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => resp.map(Either::Left),
            Err(_) => error(StatusCode::BAD_GATEWAY),
        }
    }
}

fn error(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
    *resp.status_mut() = status;
    resp
}
