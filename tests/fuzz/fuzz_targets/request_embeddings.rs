//! A client's `POST /v1/embeddings` body: the parse and checks the endpoint runs
//! (`request::parse_embeddings`), the error response a refusal becomes, and what an accepted
//! request becomes upstream (OpenAI as is, Gemini's `embedContent`/`batchEmbedContents`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sidecar::{
    request::parse_embeddings,
    translate::openai_to_gemini::{self, EmbedRequest},
};

fuzz_target!(|data: &[u8]| {
    let request = match parse_embeddings(data) {
        Ok(r) => r,
        Err(e) => {
            let response = e.into_response();
            assert!(response.status().is_client_error(), "{}", response.status());
            return;
        }
    };
    let texts = request.input.texts();
    assert!(!texts.is_empty(), "an accepted request has something to embed");
    let upstream = serde_json::to_vec(&request).expect("an accepted request serializes");
    if let Err(e) = parse_embeddings(&upstream) {
        panic!("the upstream body of an accepted request does not parse: {e:?}");
    }
    match openai_to_gemini::embeddings_request(&request, "m") {
        Ok(EmbedRequest::One(body)) => drop(serde_json::to_vec(&body).expect("serializes")),
        Ok(EmbedRequest::Batch(body)) => drop(serde_json::to_vec(&body).expect("serializes")),
        Err(_) => {}
    }
});
