//! An Anthropic upstream's event stream, cut into reads at fuzzer-chosen points, through the SSE
//! decoder and the translation to OpenAI chunks (`providers::anthropic::translate_body`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::{StreamInput, check_decoder_split_invariance, data_objects, drain, far_deadline, usage_count};
use sluice_sidecar::providers::anthropic;

fuzz_target!(|data: &[u8]| {
    let Some(input) = StreamInput::parse(data) else { return };
    check_decoder_split_invariance(&input);
    let chunks = anthropic::translate_body(input.body_stream(), far_deadline(), input.wants_usage, 1);
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
    // A whole answer ended at message_stop, which reports the usage exactly once.
    if error.is_none() {
        assert_eq!(usage_count(&items), 1, "a whole answer reports its usage once");
    }
});
