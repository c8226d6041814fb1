//! The benchmark upstream served in-process ([`crate::upstream::handle`]), counting what
//! reaches it per kind, and able to close every connection at the end so the sidecar's pooled
//! upstream connections go away and its descriptor count can be compared with the start.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::Kind;
use crate::upstream;

/// What reached the upstream.
#[derive(Debug, Default)]
pub struct Counts {
    /// Chat requests on `/plain/…`.
    pub plain: AtomicU64,
    /// Chat requests on `/stream/…`.
    pub stream: AtomicU64,
    /// Streamed answers whose last event was sent.
    pub streams_finished: AtomicU64,
    /// Anything else (neither prefix): should stay zero.
    pub other: AtomicU64,
}

impl Counts {
    /// Requests of `kind` received.
    pub fn received(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Plain => self.plain.load(Ordering::Relaxed),
            Kind::Stream => self.stream.load(Ordering::Relaxed),
        }
    }
}

/// The running upstream.
#[derive(Debug)]
pub struct CountedUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What reached it.
    pub counts: Arc<Counts>,
    close: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl CountedUpstream {
    /// Listens on a free loopback port and serves until [`CountedUpstream::close`].
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the upstream")?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let (close, closed) = oneshot::channel();
        let task = tokio::spawn(serve(listener, counts.clone(), closed));
        Ok(Self {
            addr,
            counts,
            close: Some(close),
            task,
        })
    }

    /// Stops accepting and closes every connection once its answer in progress (if any) is
    /// sent; waits up to `within` for that.
    pub async fn close(mut self, within: Duration) {
        if let Some(close) = self.close.take() {
            let _ = close.send(());
        }
        let _ = tokio::time::timeout(within, &mut self.task).await;
    }
}

impl Drop for CountedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, counts: Arc<Counts>, mut closed: oneshot::Receiver<()>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors, most likely: wait for connections to close rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let counts = counts.clone();
                let service = service_fn(move |req| {
                    let counts = counts.clone();
                    async move { Ok::<_, Infallible>(answer(req, &counts).await) }
                });
                let conn = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                let watched = graceful.watch(conn);
                tokio::spawn(async move {
                    // A peer that goes away mid-request is not an error worth reporting here.
                    let _ = watched.await;
                });
            }
            _ = &mut closed => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn answer(req: Request<Incoming>, counts: &Arc<Counts>) -> Response<CountedBody> {
    let path = req.uri().path();
    let finished = if path.starts_with("/plain/") {
        counts.plain.fetch_add(1, Ordering::Relaxed);
        None
    } else if path.starts_with("/stream/") {
        counts.stream.fetch_add(1, Ordering::Relaxed);
        Some(counts.clone())
    } else {
        counts.other.fetch_add(1, Ordering::Relaxed);
        None
    };
    upstream::handle(req).await.map(|inner| CountedBody { inner, finished })
}

/// An upstream body that counts itself when its last frame has been taken.
pub struct CountedBody {
    inner: upstream::Body,
    finished: Option<Arc<Counts>>,
}

impl std::fmt::Debug for CountedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedBody")
            .field("counted", &self.finished.is_some())
            .finish_non_exhaustive()
    }
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = <upstream::Body as Body>::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled
            && let Some(counts) = self.finished.take()
        {
            counts.streams_finished.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
