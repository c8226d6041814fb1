//! An Anthropic upstream's whole answer: a Messages response translated to an OpenAI chat
//! completion (`providers::anthropic::parse_message`), and the body as an error answer rewritten
//! into OpenAI's error shape (`providers::anthropic::normalize`).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_fuzz::error_status;
use sluice_sidecar::{
    formats::openai::ChatCompletion,
    providers::{ProviderError, anthropic},
};

fuzz_target!(|data: &[u8]| {
    let Some((&status, body)) = data.split_first() else {
        return;
    };
    if let Ok(complete) = anthropic::parse_message(body, 1) {
        let completion: ChatCompletion =
            serde_json::from_slice(&complete.body).expect("a translated answer is a chat completion");
        assert_eq!(completion.object, "chat.completion");
        assert!(complete.usage.is_some() == completion.usage.is_some());
    }
    let error = ProviderError::Status {
        status: error_status(status),
        retry_after: None,
        body: Bytes::copy_from_slice(body),
    };
    check_openai_error(anthropic::normalize(error));
});

/// A normalized error keeps an error status and carries an OpenAI-shaped body.
fn check_openai_error(error: ProviderError) {
    let ProviderError::Status { status, body, .. } = &error else {
        panic!("normalizing a status error gave {error:?}")
    };
    assert!(status.is_client_error() || status.is_server_error(), "{status}");
    let value: serde_json::Value = serde_json::from_slice(body).expect("the error body is JSON");
    assert!(
        value.pointer("/error/message").is_some_and(|m| m.is_string()),
        "{value}"
    );
    let _ = error.to_string();
}
