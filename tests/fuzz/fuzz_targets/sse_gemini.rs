//! A Gemini upstream's `streamGenerateContent?alt=sse` body, cut into reads at fuzzer-chosen
//! points, through the SSE decoder and the translation to OpenAI chunks
//! (`providers::gemini::translate_body`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::{StreamInput, check_decoder_split_invariance, data_objects, drain, far_deadline, usage_count};
use sluice_sidecar::providers::gemini;

fuzz_target!(|data: &[u8]| {
    let Some(input) = StreamInput::parse(data) else { return };
    check_decoder_split_invariance(&input);
    let chunks = gemini::translate_body(
        input.body_stream(),
        far_deadline(),
        input.wants_usage,
        1,
        "m",
        "fallback",
    );
    let (items, error) = drain(chunks);
    for chunk in data_objects(&items) {
        assert_eq!(
            chunk.get("object").and_then(|o| o.as_str()),
            Some("chat.completion.chunk")
        );
        assert!(chunk.get("choices").is_some_and(|c| c.is_array()), "{chunk:?}");
        if !input.wants_usage {
            assert!(!chunk.contains_key("usage"), "usage forwarded unasked: {chunk:?}");
        }
    }
    // Usage is cumulative: a whole answer reports its last counts at most once.
    if error.is_none() {
        assert!(
            usage_count(&items) <= 1,
            "a whole answer reports its usage at most once"
        );
    }
});
