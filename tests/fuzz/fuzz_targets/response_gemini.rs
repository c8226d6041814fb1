//! A Gemini upstream's whole answers: `generateContent` translated to an OpenAI chat completion
//! (`providers::gemini::{parse_answer, complete_answer}`), `embedContent` and
//! `batchEmbedContents` translated to OpenAI's embeddings list, and the body as an error answer
//! rewritten into OpenAI's error shape (`providers::gemini::normalize`).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_fuzz::error_status;
use sluice_sidecar::{
    formats::{
        gemini::{BatchEmbedContentsResponse, EmbedContentResponse, GenerateContentResponse},
        openai::ChatCompletion,
    },
    providers::{ProviderError, gemini},
    translate::gemini_to_openai,
};

fuzz_target!(|data: &[u8]| {
    let Some((&status, body)) = data.split_first() else {
        return;
    };
    if let Ok(answer) = gemini::parse_answer::<GenerateContentResponse>(body)
        && let Ok(complete) = gemini::complete_answer(answer, "m", 1, "fallback")
    {
        let completion: ChatCompletion =
            serde_json::from_slice(&complete.body).expect("a translated answer is a chat completion");
        assert!(!completion.choices.is_empty());
        assert!(complete.usage.is_some() == completion.usage.is_some());
    }
    let vectors = match gemini::parse_answer::<EmbedContentResponse>(body) {
        Ok(one) => Some(vec![one.embedding]),
        Err(_) => gemini::parse_answer::<BatchEmbedContentsResponse>(body)
            .ok()
            .map(|b| b.embeddings),
    };
    if let Some(vectors) = vectors {
        let base64 = status & 1 == 1;
        let list = gemini_to_openai::embeddings_response(vectors, "m", base64, 3);
        let value: serde_json::Value = serde_json::from_slice(&list).expect("the embeddings list is JSON");
        assert!(value.get("data").is_some_and(|d| d.is_array()));
    }
    let error = ProviderError::Status {
        status: error_status(status),
        retry_after: None,
        body: Bytes::copy_from_slice(body),
    };
    let normalized = gemini::normalize(error);
    let ProviderError::Status { status, body, .. } = &normalized else {
        panic!("normalizing a status error gave {normalized:?}")
    };
    assert!(status.is_client_error() || status.is_server_error(), "{status}");
    let value: serde_json::Value = serde_json::from_slice(body).expect("the error body is JSON");
    assert!(
        value.pointer("/error/message").is_some_and(|m| m.is_string()),
        "{value}"
    );
    let _ = normalized.to_string();
});
