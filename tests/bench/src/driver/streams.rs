//! The driver's own streaming client: time to first token and per-chunk time of SSE answers,
//! and many slow streams held open at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::apis::RequestKind;

/// How long one streamed answer took.
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    /// From sending the request to the first body bytes holding an event.
    pub first_token: Duration,
    /// From sending the request to the end of the body.
    pub total: Duration,
    /// `data:` events received.
    pub events: usize,
}

/// A client connection: its sender and the task driving it (which ends once the sender is
/// dropped and the last answer read).
#[derive(Debug)]
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

async fn connect(addr: SocketAddr) -> Result<Conn> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender, driver })
}

fn request(addr: SocketAddr, kind: &RequestKind, headers: &[(String, String)]) -> Result<Request<Full<Bytes>>> {
    let mut req = Request::post(kind.path)
        .header(header::HOST, addr.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-sluice-user", "bench-user");
    for (name, value) in headers {
        req = req.header(name.as_str(), value.as_str());
    }
    Ok(req.body(Full::new(kind.body.clone()))?)
}

/// Sends `warmup + count` streamed `kind` requests (with `headers`) one after another on one keep-alive
/// connection; returns the timings of the last `count`.
pub async fn time_streams(
    addr: SocketAddr,
    kind: &RequestKind,
    headers: &[(String, String)],
    warmup: usize,
    count: usize,
) -> Result<Vec<StreamTiming>> {
    let mut conn = connect(addr).await?;
    let mut timings = Vec::with_capacity(count);
    for i in 0..warmup + count {
        conn.sender.ready().await?;
        let started = Instant::now();
        let resp = conn.sender.send_request(request(addr, kind, headers)?).await?;
        if resp.status() != StatusCode::OK {
            bail!("{addr} answered {} to a streamed request", resp.status());
        }
        let mut body_in = resp.into_body();
        let mut first_token = None;
        let mut events = 0;
        while let Some(frame) = body_in.frame().await {
            let Ok(data) = frame?.into_data() else { continue };
            let n = count_events(&data);
            if n > 0 && first_token.is_none() {
                first_token = Some(started.elapsed());
            }
            events += n;
        }
        let total = started.elapsed();
        if i >= warmup {
            timings.push(StreamTiming {
                first_token: first_token.context("a stream ended without an event")?,
                total,
                events,
            });
        }
    }
    Ok(timings)
}

/// `data:` events in one frame (events never straddle frames here: each is written whole).
fn count_events(data: &[u8]) -> usize {
    data.windows(5).filter(|w| w == b"data:").count()
}

/// Streams held open: dropped, they close.
#[derive(Debug, Default)]
pub struct Held {
    streams: Vec<(Conn, Incoming)>,
}

impl Held {
    /// How many streams are open.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for (conn, _) in &self.streams {
            conn.driver.abort();
        }
    }
}

/// Opens `count` streams of `kind` (with `headers`) to `addr`, each on its own connection, and
/// waits until each has delivered its first event.
pub async fn hold_streams(
    addr: SocketAddr,
    kind: &RequestKind,
    headers: &[(String, String)],
    count: usize,
) -> Result<Held> {
    let opened: Vec<(Conn, Incoming)> = futures::stream::iter(0..count)
        .map(|_| open_one(addr, kind, headers))
        .buffer_unordered(64)
        .try_collect()
        .await?;
    Ok(Held { streams: opened })
}

async fn open_one(addr: SocketAddr, kind: &RequestKind, headers: &[(String, String)]) -> Result<(Conn, Incoming)> {
    let mut conn = connect(addr).await?;
    let resp = conn.sender.send_request(request(addr, kind, headers)?).await?;
    if resp.status() != StatusCode::OK {
        bail!("{addr} answered {} to a held stream", resp.status());
    }
    let mut body_in = resp.into_body();
    loop {
        let frame = body_in.frame().await.context("a held stream ended early")??;
        if frame.data_ref().is_some_and(|d| count_events(d) > 0) {
            break;
        }
    }
    Ok((conn, body_in))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_by_their_data_field() {
        assert_eq!(count_events(b"data: {}\n\ndata: {}\n\n"), 2);
        assert_eq!(count_events(b": keep-alive\n\n"), 0);
    }
}
