//! The admin listener: probes and the active config, never a secret.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::{
    config::ConfigStore,
    error::{ApiError, error_body},
    response::{self, Response},
};

/// Serves `/healthz`, `/readyz` and `/config`.
pub async fn handle(req: Request<Incoming>, config: Arc<ConfigStore>) -> Response {
    let path = req.uri().path();
    if req.method() != Method::GET {
        return ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            path: path.to_owned(),
        }
        .into_response();
    }
    match path {
        "/healthz" => response::text(StatusCode::OK, "ok\n"),
        "/readyz" => match config.current() {
            Some(_) => response::text(StatusCode::OK, "ready\n"),
            None => response::text(StatusCode::SERVICE_UNAVAILABLE, "no configuration loaded yet\n"),
        },
        "/config" => match config.current() {
            Some(active) => response::json(StatusCode::OK, active.view.clone()),
            None => response::json(
                StatusCode::SERVICE_UNAVAILABLE,
                error_body(
                    "no configuration loaded yet",
                    "service_unavailable",
                    Some("not_ready"),
                    None,
                ),
            ),
        },
        _ => ApiError::UnknownEndpoint {
            method: "GET".into(),
            path: path.to_owned(),
        }
        .into_response(),
    }
}
