//! `POST /v1/chat/completions`: OpenAI in, OpenAI out.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::{COST_HEADER, refused_response, set_served_by, sse_body::SseBody};
use crate::{
    config::ActiveConfig,
    pipeline::{self, ChatServed},
    providers::Reply,
    request::parse_chat_body,
    response::{self, Response},
};

/// Serves one chat completion, plain or streamed.
pub async fn handle(config: &ActiveConfig, headers: &HeaderMap, body: &Bytes) -> Response {
    let request = match parse_chat_body(body.clone()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match pipeline::chat(config, &request, headers, "chat").await {
        Ok(served) => openai_answer(served),
        Err(refused) => refused_response(refused),
    }
}

/// An answer already in OpenAI's format, as it goes to the client: whole with its cost, or
/// streamed as server-sent events; with the headers that say who served it.
pub(super) fn openai_answer(served: ChatServed) -> Response {
    let mut resp = match served.reply {
        Reply::Complete(complete) => {
            let mut resp = response::json(StatusCode::OK, complete.body);
            let cost = served.served.cost(complete.usage);
            if let Some(v) = cost.and_then(|c| HeaderValue::try_from(c.to_string()).ok()) {
                resp.headers_mut().insert(COST_HEADER, v);
            }
            resp
        }
        Reply::Stream(stream) => response::event_stream(SseBody::new(stream).boxed()),
    };
    set_served_by(&mut resp, &served.served);
    resp
}
