//! A client's `POST /v1/chat/completions` body: the parse and checks the endpoint runs
//! (`request::parse_chat`), the error response a refusal becomes, and what an accepted request
//! becomes on its way upstream (OpenAI as is, translated for Anthropic and Gemini).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sidecar::{
    request::parse_chat,
    translate::{openai_to_anthropic, openai_to_gemini},
};

fuzz_target!(|data: &[u8]| {
    let request = match parse_chat(data) {
        Ok(r) => r,
        Err(e) => {
            let response = e.into_response();
            assert!(response.status().is_client_error(), "{}", response.status());
            return;
        }
    };
    let _ = (
        request.prompt_chars(),
        request.completion_cap(),
        request.is_stream(),
        request.wants_stream_usage(),
    );
    // The request as the OpenAI upstream gets it must read back as the same kind of request.
    let upstream = serde_json::to_vec(&request).expect("an accepted request serializes");
    if let Err(e) = parse_chat(&upstream) {
        panic!("the upstream body of an accepted request does not parse: {e:?}");
    }
    if let Ok(body) = openai_to_anthropic::request(&request, "m") {
        serde_json::to_vec(&body).expect("an Anthropic request serializes");
    }
    if let Ok(body) = openai_to_gemini::request(&request) {
        serde_json::to_vec(&body).expect("a Gemini request serializes");
    }
});
