//! The upstream's one request path: read the request, answer `/_requests` from the record,
//! record anything else and hand it to the wire whose endpoint it names.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{RecordedRequest, Shared, Wire};
use crate::http::{Body, json_response, raw_response, serve_connections};

/// Serves the upstream on `listener` for ever.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    serve_connections(listener, move |request| handle(request, Arc::clone(&shared))).await;
}

async fn handle(request: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let message = format!("could not read the body: {e}");
            return Ok(raw_response(StatusCode::BAD_REQUEST, "text/plain", &message));
        }
    };
    if parts.uri.path() == "/_requests" {
        return Ok(requests(&parts.method, &shared));
    }
    let request = RecordedRequest::new(parts.method.to_string(), path, &parts.headers, &bytes);
    let sequence = shared.requests.record(request.clone());
    let wire = shared.wire_for(&request.path);
    // Bedrock's requests are signed over their exact bytes, so they are checked here.
    if wire == Wire::Bedrock
        && parts.uri.path().starts_with("/model/")
        && let Some(denied) = shared
            .bedrock
            .check(parts.method.as_str(), &request.path, &parts.headers, &bytes)
    {
        return Ok(denied);
    }
    Ok(wire.answer(&request, sequence, &shared).await)
}

/// `GET /_requests` lists what was received; `DELETE /_requests` forgets it.
fn requests(method: &Method, shared: &Shared) -> Response<Body> {
    match *method {
        Method::GET => {
            let all = serde_json::to_value(shared.requests.all()).unwrap_or(Value::Null);
            json_response(StatusCode::OK, &all)
        }
        Method::DELETE => {
            shared.requests.clear();
            json_response(StatusCode::OK, &json!({"cleared": true}))
        }
        _ => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "use GET or DELETE on /_requests"}),
        ),
    }
}
