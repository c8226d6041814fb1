//! `GET /v1/models`: the model names this pod may use, in OpenAI's list format.

use http::StatusCode;
use serde_json::json;

use crate::{
    config::ActiveConfig,
    response::{self, Response},
};

/// Lists every model of every route.
pub fn handle(config: &ActiveConfig) -> Response {
    let data: Vec<_> = config
        .routes
        .models()
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "sluice"}))
        .collect();
    response::json(StatusCode::OK, json!({"object": "list", "data": data}).to_string())
}
