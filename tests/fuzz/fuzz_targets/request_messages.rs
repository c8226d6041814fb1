//! A client's `POST /v1/messages` (Anthropic) body: the parse the endpoint runs
//! (`request::parse_json::<MessagesRequest>`), its translation to the OpenAI request the pipeline
//! serves (`anthropic_request_to_openai`), and that request on to each provider's format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sidecar::{
    providers::{
        anthropic::{
            translate::{anthropic_request_to_openai, openai_to_anthropic},
            wire::MessagesRequest,
        },
        gemini::translate::openai_to_gemini,
    },
    request::{parse_chat, parse_json},
};

fuzz_target!(|data: &[u8]| {
    let request: MessagesRequest = match parse_json(data) {
        Ok(r) => r,
        Err(e) => {
            let response = e.into_response();
            assert!(response.status().is_client_error(), "{}", response.status());
            return;
        }
    };
    let Ok(chat) = anthropic_request_to_openai(request) else {
        return;
    };
    let _ = (chat.prompt_chars(), chat.completion_cap(), chat.is_stream());
    // The translated request reaches OpenAI upstreams as JSON that the sidecar itself accepts.
    let upstream = serde_json::to_vec(&chat).expect("a translated request serializes");
    if let Err(e) = parse_chat(&upstream) {
        panic!("a translated request is not a valid chat request: {e:?}");
    }
    if let Ok(body) = openai_to_anthropic(&chat, "m") {
        serde_json::to_vec(&body).expect("an Anthropic request serializes");
    }
    if let Ok(body) = openai_to_gemini(&chat) {
        serde_json::to_vec(&body).expect("a Gemini request serializes");
    }
});
