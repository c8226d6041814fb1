//! A client's `POST /v1/messages` (Anthropic) body: the parse the endpoint runs
//! (`request::parse_json::<MessagesRequest>`), its translation to the OpenAI request the pipeline
//! serves (`translate::anthropic_to_openai::request`), and that request on to each provider's format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sidecar::{
    formats::anthropic::MessagesRequest,
    request::{parse_chat, parse_json},
    translate::{anthropic_to_openai, openai_to_anthropic, openai_to_gemini},
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
    let Ok(chat) = anthropic_to_openai::request(request) else {
        return;
    };
    let _ = (chat.prompt_chars(), chat.completion_cap(), chat.is_stream());
    // The translated request reaches OpenAI upstreams as JSON that the sidecar itself accepts.
    let upstream = serde_json::to_vec(&chat).expect("a translated request serializes");
    if let Err(e) = parse_chat(&upstream) {
        panic!("a translated request is not a valid chat request: {e:?}");
    }
    if let Ok(body) = openai_to_anthropic::request(&chat, "m") {
        serde_json::to_vec(&body).expect("an Anthropic request serializes");
    }
    if let Ok(body) = openai_to_gemini::request(&chat) {
        serde_json::to_vec(&body).expect("a Gemini request serializes");
    }
});
