//! `POST /v1/completions`: OpenAI's legacy completions (fill-in-the-middle on vLLM and others),
//! passed through to the route's OpenAI-protocol backends, plain or streamed, accounted like
//! chat; a route with no such backend refuses with 400 `unsupported_for_backend`.

use bytes::Bytes;
use http::HeaderMap;

use super::{chat::openai_answer, refused_response};
use crate::{config::ActiveConfig, pipeline, request::parse_completions_body, response::Response};

/// Serves one completions request, plain or streamed.
pub async fn handle(config: &ActiveConfig, headers: &HeaderMap, body: &Bytes) -> Response {
    let request = match parse_completions_body(body.clone()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match pipeline::completions(config, &request, headers).await {
        Ok(served) => openai_answer(served),
        Err(refused) => refused_response(refused),
    }
}
