//! `POST /v1/embeddings`.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::{refused_response, set_served_by};
use crate::{
    config::ActiveConfig,
    pipeline,
    request::parse_embeddings_body,
    response::{self, Response},
};

/// Serves one embeddings request.
pub async fn handle(config: &ActiveConfig, headers: &HeaderMap, body: &Bytes) -> Response {
    let request = match parse_embeddings_body(body.clone()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match pipeline::embeddings(config, &request, headers).await {
        Ok(served) => {
            let mut resp = response::json(StatusCode::OK, served.reply.body);
            set_served_by(&mut resp, &served.served);
            resp
        }
        Err(refused) => refused_response(refused),
    }
}
