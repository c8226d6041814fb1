//! The HTTP listeners: the sidecar's serving settings (accepting and draining are
//! `sluice_serve`'s), bounded request bodies, dispatch to endpoints.

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::ConfigStore,
    endpoints::{chat, completions, embeddings, messages, models, responses},
    error::ApiError,
    response::Response,
};

/// Default bound on a request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 << 20;

/// Bound on an HTTP/1 request head (request line and headers): a larger one gets 431 instead of
/// hyper's default of ~400 KiB being buffered per connection.
pub const MAX_HEAD_BYTES: usize = 64 << 10;

/// What the API listener needs to serve a request.
#[derive(Debug)]
pub struct ApiState {
    /// The active configuration.
    pub config: Arc<ConfigStore>,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
}

/// Serves connections on `listener` until `shutdown` fires, then lets in-flight requests
/// (streams included) finish for up to `grace` and closes the connections that remain.
pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: CancellationToken, grace: Duration)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let options = sluice_serve::Options {
        tls: None,
        // A client that trickles its headers (slowloris) is cut off instead of holding a task forever.
        header_read_timeout: Duration::from_secs(30),
        max_head_bytes: Some(MAX_HEAD_BYTES),
        max_concurrent_streams: Some(256),
        nodelay: true,
        grace,
    };
    sluice_serve::serve(listener, handler, options, shutdown).await;
}

/// Routes one API request to its endpoint; every failure becomes the OpenAI error shape.
pub async fn api(req: Request<Incoming>, state: Arc<ApiState>) -> Response {
    match crate::telemetry::start_request(req.method(), req.uri().path(), req.headers()) {
        Some(trace) => crate::telemetry::serve(trace, dispatch_or_refuse(req, &state)).await,
        None => dispatch_or_refuse(req, &state).await,
    }
}

async fn dispatch_or_refuse(req: Request<Incoming>, state: &ApiState) -> Response {
    dispatch(req, state).await.unwrap_or_else(ApiError::into_response)
}

async fn dispatch(req: Request<Incoming>, state: &ApiState) -> Result<Response, ApiError> {
    let path = req.uri().path();
    // SDKs configured with a base URL without `/v1` call the bare paths; accept both.
    let endpoint = path.strip_prefix("/v1").unwrap_or(path);
    let method = req.method().clone();
    match (endpoint, &method) {
        ("/chat/completions", &Method::POST) => {
            let (parts, body) = read_body(req, state.max_body_bytes).await?;
            let config = active(state)?;
            Ok(chat::handle(&config, &parts.headers, &body).await)
        }
        ("/embeddings", &Method::POST) => {
            let (parts, body) = read_body(req, state.max_body_bytes).await?;
            let config = active(state)?;
            Ok(embeddings::handle(&config, &parts.headers, &body).await)
        }
        ("/messages", &Method::POST) => {
            // Anthropic's SDKs expect Anthropic-shaped errors, the listener's own refusals included.
            let served = async {
                let (parts, body) = read_body(req, state.max_body_bytes).await?;
                let config = active(state)?;
                Ok(messages::handle(&config, &parts.headers, &body).await)
            };
            Ok(messages::with_anthropic_errors(served.await).await)
        }
        ("/messages/count_tokens", &Method::POST) => {
            let served = async {
                let (parts, body) = read_body(req, state.max_body_bytes).await?;
                let config = active(state)?;
                messages::count_tokens::handle(&config, &parts.headers, &body).await
            };
            Ok(messages::with_anthropic_errors(served.await).await)
        }
        ("/completions", &Method::POST) => {
            let (parts, body) = read_body(req, state.max_body_bytes).await?;
            let config = active(state)?;
            Ok(completions::handle(&config, &parts.headers, &body).await)
        }
        ("/responses", &Method::POST) => {
            let (parts, body) = read_body(req, state.max_body_bytes).await?;
            let config = active(state)?;
            Ok(responses::handle(&config, &parts.headers, &body).await)
        }
        (stored, &Method::GET | &Method::DELETE) if stored.starts_with("/responses/") => {
            let id = stored.trim_start_matches("/responses/");
            Ok(responses::stored(id))
        }
        ("/models", &Method::GET) => {
            let config = active(state)?;
            Ok(models::handle(&config))
        }
        (
            "/chat/completions"
            | "/completions"
            | "/embeddings"
            | "/messages"
            | "/messages/count_tokens"
            | "/models"
            | "/responses",
            _,
        ) => Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_owned(),
        }),
        _ => Err(ApiError::UnknownEndpoint {
            method: method.to_string(),
            path: path.to_owned(),
        }),
    }
}

fn active(state: &ApiState) -> Result<Arc<crate::config::ActiveConfig>, ApiError> {
    state.config.current().ok_or(ApiError::NotReady)
}

/// Reads a request body, refusing one over `limit` bytes before or while reading it.
async fn read_body(req: Request<Incoming>, limit: usize) -> Result<(http::request::Parts, Bytes), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        drain(req.into_body()).await;
        return Err(ApiError::BodyTooLarge { limit });
    }
    let (parts, body) = req.into_parts();
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::BodyTooLarge { limit }),
        Err(e) => Err(ApiError::bad_request(
            format!("could not read the request body: {e}"),
            None,
        )),
    }
}

/// Reads and discards a refused body for a moment, so that a client still writing it gets to
/// read the 413 instead of a broken pipe; bounded in bytes and time, after which hyper closes.
async fn drain(body: Incoming) {
    const MAX_DRAIN_BYTES: usize = 64 << 20;
    let discard = Limited::new(body, MAX_DRAIN_BYTES).collect();
    let _ = tokio::time::timeout(Duration::from_secs(5), discard).await;
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Sends `request` to a listener serving 404s and returns the status line of its answer.
    async fn status_line(request: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let handler = |req: Request<Incoming>| async move {
            ApiError::UnknownEndpoint {
                method: req.method().to_string(),
                path: req.uri().path().to_owned(),
            }
            .into_response()
        };
        let server = tokio::spawn(serve(listener, handler, shutdown.clone(), Duration::from_secs(1)));
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The server may answer before it has read everything.
        let _ = socket.write_all(&request).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
        shutdown.cancel();
        let _ = server.await;
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.lines().next().unwrap_or_default().to_owned()
    }

    fn with_header_of(len: usize) -> Vec<u8> {
        format!(
            "GET /x HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\nx-big: {}\r\n\r\n",
            "a".repeat(len)
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn a_request_head_over_64_kib_is_refused_with_431() {
        assert_eq!(
            status_line(with_header_of(MAX_HEAD_BYTES)).await,
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[tokio::test]
    async fn a_request_head_of_32_kib_is_served() {
        assert_eq!(status_line(with_header_of(32 << 10)).await, "HTTP/1.1 404 Not Found");
    }
}
