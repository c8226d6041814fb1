//! `POST /v1/responses`: OpenAI's Responses API through the same routes and pipeline as every
//! request, whichever provider answers. An `openai` backend takes the request as it is (model
//! rewritten) and its answer comes back as OpenAI wrote it; for every other backend the request
//! is translated to a chat request (`translate::responses_to_openai`) and the answer (whole or
//! streamed) back to a Response or its events (`translate::openai_to_responses`). The sidecar
//! stores nothing: `previous_response_id` is served only by an `openai` backend, and `GET` /
//! `DELETE /v1/responses/{id}` say so with a 404.

mod passthrough;
pub mod stream;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};

use super::{COST_HEADER, refused_response, set_served_by};
use crate::{
    config::ActiveConfig,
    error::ApiError,
    formats::{
        openai::ChatCompletion,
        responses::{ResponsesRequest, Status},
    },
    pipeline::{self, ChatServed, Passthrough},
    providers::{ProviderError, Reply},
    request::parse_json,
    response::{self, Response},
    translate::{openai_to_responses, responses_to_openai},
};

/// Serves one Responses request, plain or streamed.
pub async fn handle(config: &ActiveConfig, headers: &HeaderMap, body: &Bytes) -> Response {
    // Boxed: inline, this endpoint's future (the largest of all) would set the size of every
    // request's handler future, which the listener boxes whole on each request.
    Box::pin(serve(config, headers, body)).await.unwrap_or_else(|resp| resp)
}

/// An `openai` backend's own answer, as it wrote it: the Response, or its events framed with
/// their names.
fn passed_through(served: ChatServed) -> Response {
    let mut resp = match served.reply {
        Reply::Complete(complete) => {
            let mut resp = response::json(StatusCode::OK, complete.body);
            let cost = served.served.cost(complete.usage);
            if let Some(v) = cost.and_then(|c| HeaderValue::try_from(c.to_string()).ok()) {
                resp.headers_mut().insert(COST_HEADER, v);
            }
            resp
        }
        Reply::Stream(events) => response::event_stream(passthrough::PassedThroughSseBody::new(events).boxed()),
    };
    set_served_by(&mut resp, &served.served);
    resp
}

/// `GET` or `DELETE /v1/responses/{id}`: nothing was stored, so there is nothing to read or delete.
pub fn stored(id: &str) -> Response {
    ApiError::NotStored { id: id.to_owned() }.into_response()
}

async fn serve(config: &ActiveConfig, headers: &HeaderMap, body: &Bytes) -> Result<Response, Response> {
    let request: ResponsesRequest = parse_json(body).map_err(ApiError::into_response)?;
    let required = request.previous_response_id.is_some();
    if required {
        let route = config.routes.resolve(&request.model).map_err(ApiError::into_response)?;
        if !route
            .backends
            .iter()
            .any(|b| pipeline::passes_responses_through(b.provider))
        {
            let message = format!(
                "previous_response_id names a response stored by OpenAI, and route {} has no openai backend \
                 (this gateway stores no responses); send the whole conversation in input instead",
                route.key
            );
            return Err(ApiError::bad_request(message, Some("previous_response_id")).into_response());
        }
    }
    // The chat form is what rules and limits read, and what other backends are sent; a request
    // that continues a stored response is read without that reference (only OpenAI serves it).
    let mut readable = request.clone();
    readable.previous_response_id = None;
    let chat = responses_to_openai::request(&readable)
        .map_err(|e| ApiError::bad_request(e.to_string(), None).into_response())?;
    let passthrough = Passthrough {
        // The parse above checked it is one JSON object: it goes to an `openai` backend as it came.
        body,
        stream: request.is_stream(),
        required,
    };
    let served = pipeline::responses(config, &chat, passthrough, headers)
        .await
        .map_err(refused_response)?;
    if served.passed_through {
        return Ok(passed_through(served));
    }
    let mut resp = match served.reply {
        Reply::Complete(complete) => {
            let completion: ChatCompletion = serde_json::from_slice(&complete.body).map_err(|e| {
                let invalid = ProviderError::InvalidResponse(format!("the answer is not a chat completion: {e}"));
                let mut resp = ApiError::Upstream(invalid).into_response();
                set_served_by(&mut resp, &served.served);
                resp
            })?;
            let mut answer = openai_to_responses::response(completion, &request);
            if answer.usage.is_none() {
                answer.usage = complete
                    .usage
                    .map(|u| openai_to_responses::usage(&crate::formats::openai::CompletionUsage::of(&u)));
            }
            let mut resp = if request.is_stream() {
                // An answer that arrived whole (a cache hit, say) is still streamed as asked.
                let events = stream::encode(&openai_to_responses::stream::response_events(&answer));
                response::event_stream(Full::new(events).boxed_unsync())
            } else {
                let status = if answer.status == Status::Failed {
                    StatusCode::BAD_GATEWAY
                } else {
                    StatusCode::OK
                };
                response::json(status, serde_json::to_vec(&answer).unwrap_or_default())
            };
            let cost = served.served.cost(complete.usage);
            if let Some(v) = cost.and_then(|c| HeaderValue::try_from(c.to_string()).ok()) {
                resp.headers_mut().insert(COST_HEADER, v);
            }
            resp
        }
        Reply::Stream(chunks) => response::event_stream(stream::body(chunks, request).boxed()),
    };
    set_served_by(&mut resp, &served.served);
    Ok(resp)
}
