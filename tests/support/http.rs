//! The parts of the in-process HTTP servers tests start (the fake upstream, the test app): one
//! accept loop for HTTP/1 and HTTP/2, and the responses they send — whole, or sent in steps that
//! pause or break the connection on command.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// A response body.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// How long a body that breaks off waits after its last bytes before the connection drops, so
/// that those bytes reach the peer first.
const BEFORE_CUT: Duration = Duration::from_millis(10);

/// Accepts connections on `listener` for ever, answering each request (HTTP/1 or HTTP/2) with
/// `handle`. Dropping the future drops its `JoinSet`, which aborts every connection.
pub async fn serve_connections<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        connections.spawn(async move {
            // A connection that ends in error (a dropped stream, a client that went away) is expected here.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service_fn(handle))
                .await;
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    raw_response(status, "application/json", &body.to_string())
}

/// A response with a fixed body.
pub fn raw_response(status: StatusCode, content_type: &'static str, body: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_owned()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response
}

/// One step of a body sent in steps.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes.
    Send(Bytes),
    /// Pause.
    Wait(Duration),
    /// Fail the body, which makes hyper drop the connection.
    Cut,
}

/// How a body sent in steps ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// After its last bytes, as promised.
    Clean,
    /// The connection drops after the last bytes.
    Cut,
}

/// Steps that send each of `frames`, `interval` apart, and end as `end` says.
pub fn steps(frames: impl IntoIterator<Item = impl Into<Bytes>>, interval: Duration, end: End) -> VecDeque<Step> {
    let mut steps = VecDeque::new();
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 && !interval.is_zero() {
            steps.push_back(Step::Wait(interval));
        }
        steps.push_back(Step::Send(frame.into()));
    }
    if end == End::Cut {
        steps.push_back(Step::Wait(BEFORE_CUT));
        steps.push_back(Step::Cut);
    }
    steps
}

/// A `200` whose body is sent step by step.
pub fn stream_response(steps: VecDeque<Step>, content_type: &'static str) -> Response<Body> {
    let frames = stream::unfold(steps, |mut steps| async move {
        loop {
            match steps.pop_front()? {
                Step::Wait(d) => tokio::time::sleep(d).await,
                Step::Send(bytes) => return Some((Ok(Frame::data(bytes)), steps)),
                Step::Cut => {
                    let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the mock drops the connection");
                    return Some((Err(cut), steps));
                }
            }
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    response
}

/// A server-sent-events `200` of `events` (each already framed), `interval` apart.
pub fn sse_response(events: impl IntoIterator<Item = String>, interval: Duration, end: End) -> Response<Body> {
    stream_response(steps(events, interval, end), "text/event-stream")
}

/// A JSON body promised whole (its `Content-Length` set) of which only half is sent before the
/// connection drops.
pub fn cut_json_response(whole: &Value) -> Response<Body> {
    let whole = whole.to_string();
    let half = whole.as_bytes()[..whole.len() / 2].to_vec();
    let steps = steps([half], Duration::ZERO, End::Cut);
    let mut response = stream_response(steps, "application/json");
    if let Ok(length) = whole.len().to_string().parse() {
        response.headers_mut().insert(header::CONTENT_LENGTH, length);
    }
    response
}
