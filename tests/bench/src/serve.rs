//! One HTTP/1.1 accept loop shared by the upstream and the floor: keep-alive, `TCP_NODELAY`,
//! a task per connection; and the bind that reports where it listens (`--address-file`).

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Binds `addr` and, given `address_file`, writes `{"listen":"127.0.0.1:PORT"}` there once bound
/// (`sluice_crds::address_file`, the format the sidecar and the operator write). With port 0 in
/// `addr` the file is how whoever started the process learns the port: a port it probed free
/// and handed over could be taken by another process before this one bound it.
pub async fn bind(addr: SocketAddr, address_file: Option<&Path>) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    if let Some(path) = address_file {
        let bound = listener.local_addr().context("reading the bound address")?;
        sluice_crds::address_file::write(path, &[("listen".to_owned(), bound)].into())?;
    }
    Ok(listener)
}

/// Serves `handler` on `listener` until the process ends.
pub async fn http1<F, Fut, B>(listener: TcpListener, handler: F) -> Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let addr = listener.local_addr().context("reading the bound address")?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: wait for connections to close rather than spin.
                eprintln!("accept on {addr} failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(&handler);
            // A client that goes away mid-request is not an error worth reporting here.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A multi-threaded runtime with `threads` workers (0: one per core).
pub fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder.enable_all().build().context("building the tokio runtime")
}
