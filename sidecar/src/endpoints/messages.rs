//! `POST /v1/messages`: Anthropic in, Anthropic out, through the same routes and pipeline as
//! every request, whichever provider answers. The request is translated to OpenAI's format, the
//! answer (whole or streamed) back to Anthropic's; errors keep their status and take Anthropic's
//! shape, `{"type": "error", "error": {"type", "message"}}`.

pub mod count_tokens;
pub mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::{COST_HEADER, refused_response, set_served_by};
use crate::{
    config::ActiveConfig,
    error::ApiError,
    formats::{
        anthropic::{ErrorBody, ErrorObject, MessagesRequest, error_type_for},
        openai::ChatCompletion,
    },
    pipeline,
    providers::{ProviderError, Reply},
    request::parse_json,
    response::{self, Response},
    translate::{anthropic_to_openai, openai_to_anthropic},
};

/// Serves one Messages request, plain or streamed.
pub async fn handle(config: &ActiveConfig, headers: &HeaderMap, body: &[u8]) -> Response {
    // Boxed: inline, this endpoint's future (the largest after the Responses one) would set the
    // size of every request's handler future, which the listener boxes whole on each request.
    match Box::pin(serve(config, headers, body)).await {
        Ok(resp) => resp,
        Err(openai_shaped) => anthropic_error(openai_shaped).await,
    }
}

/// The response for a request the listener refused before [`handle`] (body too large, no
/// config yet), in Anthropic's shape.
pub async fn with_anthropic_errors(result: Result<Response, ApiError>) -> Response {
    match result {
        Ok(resp) => resp,
        Err(e) => anthropic_error(e.into_response()).await,
    }
}

/// Serves the request; a refusal comes back as the sidecar's usual (OpenAI-shaped) response.
async fn serve(config: &ActiveConfig, headers: &HeaderMap, body: &[u8]) -> Result<Response, Response> {
    let request: MessagesRequest = parse_json(body).map_err(ApiError::into_response)?;
    let request = anthropic_to_openai::request(request)
        .map_err(|e| ApiError::bad_request(e.to_string(), None).into_response())?;
    let served = pipeline::chat(config, &request, headers, "messages")
        .await
        .map_err(refused_response)?;
    let mut resp = match served.reply {
        Reply::Complete(complete) => {
            let completion: ChatCompletion = serde_json::from_slice(&complete.body).map_err(|e| {
                let invalid = ProviderError::InvalidResponse(format!("the answer is not a chat completion: {e}"));
                let mut resp = ApiError::Upstream(invalid).into_response();
                set_served_by(&mut resp, &served.served);
                resp
            })?;
            let message = openai_to_anthropic::response(completion);
            let mut resp = if request.is_stream() {
                // An answer that arrived whole (a cache hit, say) is still streamed as asked.
                let events = stream::encode(&openai_to_anthropic::stream::message_events(&message));
                let events = Full::new(events).boxed_unsync();
                response::event_stream(events)
            } else {
                response::json(StatusCode::OK, serde_json::to_vec(&message).unwrap_or_default())
            };
            let cost = served.served.cost(complete.usage);
            if let Some(v) = cost.and_then(|c| HeaderValue::try_from(c.to_string()).ok()) {
                resp.headers_mut().insert(COST_HEADER, v);
            }
            resp
        }
        Reply::Stream(chunks) => response::event_stream(stream::body(chunks).boxed()),
    };
    set_served_by(&mut resp, &served.served);
    Ok(resp)
}

/// The sidecar's OpenAI-shaped error response as Anthropic's: same status and headers
/// (`Retry-After`, `x-sluice-*`), the message kept, the type Anthropic's for the status.
async fn anthropic_error(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    // The error bodies are whole in memory; collecting them cannot fail or wait.
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_else(|e| match e {});
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    let body = ErrorBody {
        kind: "error".into(),
        error: ErrorObject {
            kind: error_type_for(parts.status.as_u16()).into(),
            message,
        },
    };
    let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    http::Response::from_parts(parts, Full::new(bytes).boxed_unsync())
}
