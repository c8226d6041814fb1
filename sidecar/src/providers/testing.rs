//! A scripted upstream for wire tests: it answers each request with the next answer it was
//! given and records what it received (method, path and query, headers, body).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

use crate::response::{self, Response};

/// One answer: status, headers, body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its headers, `content-type` included.
    pub headers: Vec<(&'static str, String)>,
    /// Its body.
    pub body: Bytes,
}

impl Answer {
    /// A JSON answer.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: vec![("content-type", "application/json".into())],
            body: body.into(),
        }
    }

    /// An event stream.
    pub fn sse(body: impl Into<Bytes>) -> Self {
        Self {
            headers: vec![("content-type", "text/event-stream".into())],
            ..Self::json(200, body)
        }
    }

    /// This answer with one more header.
    pub fn with(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `POST`, …
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl Seen {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug, Default)]
struct Script {
    answers: VecDeque<Answer>,
    seen: Vec<Seen>,
}

/// The running upstream; it stops when dropped.
#[derive(Debug)]
pub struct Scripted {
    /// Where it listens.
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    stop: CancellationToken,
}

impl Scripted {
    /// Starts an upstream on a free loopback port that answers `answers` in order (then 500).
    pub async fn start(answers: impl IntoIterator<Item = Answer>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let script = Arc::new(Mutex::new(Script {
            answers: answers.into_iter().collect(),
            seen: Vec::new(),
        }));
        let stop = CancellationToken::new();
        let shared = Arc::clone(&script);
        let handler = move |req: http::Request<hyper::body::Incoming>| {
            let script = Arc::clone(&shared);
            async move { answer(req, &script).await }
        };
        tokio::spawn(crate::listener::serve(listener, handler, stop.clone(), Duration::ZERO));
        Self { addr, script, stop }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().expect("script lock").seen.clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn answer(req: http::Request<hyper::body::Incoming>, script: &Mutex<Script>) -> Response {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let next = {
        let mut script = script.lock().expect("script lock");
        script.seen.push(Seen {
            method: parts.method.to_string(),
            path: parts.uri.path_and_query().map_or_else(String::new, |p| p.to_string()),
            headers: parts.headers,
            body,
        });
        script.answers.pop_front()
    };
    let Some(next) = next else {
        return response::text(StatusCode::INTERNAL_SERVER_ERROR, "no answer scripted\n");
    };
    let mut resp = response::typed(next.status, "application/octet-stream", next.body);
    resp.headers_mut().remove(http::header::CONTENT_TYPE);
    for (name, value) in next.headers {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}
