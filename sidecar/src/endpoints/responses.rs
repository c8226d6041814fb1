//! `POST /v1/responses`: OpenAI's Responses API through the same routes and pipeline as every
//! request, whichever provider answers. The request is translated to a chat request
//! (`translate::responses_to_openai`), the answer (whole or streamed) back to a Response or its
//! events (`translate::openai_to_responses`). Nothing is stored: `GET` and `DELETE
//! /v1/responses/{id}` say so with a 404.

pub mod stream;
#[cfg(test)]
mod tests;

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
    pipeline,
    providers::{ProviderError, Reply},
    request::parse_json,
    response::{self, Response},
    translate::{openai_to_responses, responses_to_openai},
};

/// Serves one Responses request, plain or streamed.
pub async fn handle(config: &ActiveConfig, headers: &HeaderMap, body: &[u8]) -> Response {
    serve(config, headers, body).await.unwrap_or_else(|resp| resp)
}

/// `GET` or `DELETE /v1/responses/{id}`: nothing was stored, so there is nothing to read or delete.
pub fn stored(id: &str) -> Response {
    ApiError::NotStored { id: id.to_owned() }.into_response()
}

async fn serve(config: &ActiveConfig, headers: &HeaderMap, body: &[u8]) -> Result<Response, Response> {
    let request: ResponsesRequest = parse_json(body).map_err(ApiError::into_response)?;
    let chat = responses_to_openai::request(&request).map_err(|e| {
        let param = if request.previous_response_id.is_some() {
            Some("previous_response_id")
        } else {
            None
        };
        ApiError::bad_request(e.to_string(), param).into_response()
    })?;
    let served = pipeline::chat(config, &chat, headers, "responses")
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
        Reply::Stream(chunks) => response::event_stream(stream::ResponsesSseBody::new(chunks, request).boxed()),
    };
    set_served_by(&mut resp, &served.served);
    Ok(resp)
}
