//! An OpenAI(-compatible) upstream's event stream, cut into reads at fuzzer-chosen points,
//! through the SSE decoder and the OpenAI stream translation (`providers::openai::translate_body`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::{StreamInput, check_decoder_split_invariance, data_objects, drain, far_deadline};
use sluice_sidecar::providers::openai;

fuzz_target!(|data: &[u8]| {
    let Some(input) = StreamInput::parse(data) else { return };
    check_decoder_split_invariance(&input);
    let chunks = openai::translate_body(input.body_stream(), far_deadline(), input.wants_usage);
    let (items, _error) = drain(chunks);
    for chunk in data_objects(&items) {
        // Usage the client did not ask for is accounted, never forwarded.
        if !input.wants_usage {
            assert!(!chunk.contains_key("usage"), "usage forwarded unasked: {chunk:?}");
        }
    }
});
