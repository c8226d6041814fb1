//! The admin listener: probes, metrics, budgets and the active config, never a secret.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::{
    config::ConfigStore,
    error::ApiError,
    response::{self, Response},
    wire::error_body,
};

/// Serves `/healthz`, `/readyz`, `/config`, `/metrics` and `/budgets`.
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
            Some(active) => response::json(StatusCode::OK, active.view()),
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
        "/metrics" => match config.recorder().metrics.encode(config.budgets()) {
            Ok(text) => response::typed(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text),
            Err(_) => response::text(StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be encoded\n"),
        },
        "/budgets" => {
            let now = jiff::Timestamp::now();
            let views: Vec<_> = config.budgets().all().iter().map(|a| a.view(now)).collect();
            response::json(StatusCode::OK, serde_json::to_vec_pretty(&views).unwrap_or_default())
        }
        _ => ApiError::UnknownEndpoint {
            method: "GET".into(),
            path: path.to_owned(),
        }
        .into_response(),
    }
}
