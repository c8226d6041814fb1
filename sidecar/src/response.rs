//! Response bodies the sidecar sends: whole JSON documents or server-sent events.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

/// The body type of every sidecar response.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;
/// A sidecar response.
pub type Response = http::Response<Body>;

/// A complete response of the given content type.
pub fn typed(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut resp = http::Response::new(Full::new(body.into()).boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A complete JSON response.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
    typed(status, "application/json", body)
}

/// A plain-text response, for probes.
pub fn text(status: StatusCode, body: &'static str) -> Response {
    typed(status, "text/plain; charset=utf-8", body)
}

/// A streaming `text/event-stream` response over the given body.
pub fn event_stream(body: Body) -> Response {
    let mut resp = http::Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
