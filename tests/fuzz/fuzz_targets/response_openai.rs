//! An OpenAI(-compatible) upstream's whole answer: the chat/embeddings body check and its usage
//! (`providers::openai::parse_complete`); when it is a chat completion, the `/v1/messages`
//! endpoint's translation of it to an Anthropic message; and the body as an error answer.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_fuzz::error_status;
use sluice_sidecar::providers::{
    ProviderError, anthropic::translate::openai_response_to_anthropic, format::ChatCompletion, openai,
};

fuzz_target!(|data: &[u8]| {
    let Some((&status, body)) = data.split_first() else { return };
    let body = Bytes::copy_from_slice(body);
    if let Ok(complete) = openai::parse_complete(body.clone()) {
        // What passes is forwarded as is: one JSON object.
        let value: serde_json::Value = serde_json::from_slice(&complete.body).expect("a passed answer is JSON");
        assert!(value.is_object());
        if let Ok(completion) = serde_json::from_slice::<ChatCompletion>(&complete.body) {
            let message = openai_response_to_anthropic(completion);
            serde_json::to_vec(&message).expect("an Anthropic message serializes");
        }
    }
    // An error answer's message is read from its body for the client and the logs.
    let error = ProviderError::Status {
        status: error_status(status),
        retry_after: None,
        body,
    };
    let _ = error.to_string();
});
