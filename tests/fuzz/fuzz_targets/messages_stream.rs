//! An OpenAI(-compatible) upstream's event stream, cut into reads at fuzzer-chosen points,
//! translated to chunks (`providers::openai::translate_body`) and re-encoded as the Anthropic
//! events a `/v1/messages` client reads (`endpoints::messages::stream::MessagesSseBody`).
#![no_main]

use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sluice_fuzz::{StreamInput, block_on, far_deadline};
use sluice_sidecar::{endpoints::messages::stream::MessagesSseBody, providers::openai, sse::SseDecoder};

fuzz_target!(|data: &[u8]| {
    let Some(input) = StreamInput::parse(data) else { return };
    let chunks = openai::translate_body(input.body_stream(), far_deadline(), true);
    let body = block_on(MessagesSseBody::new(chunks).collect());
    let Ok(body) = body else { return };
    let bytes = body.to_bytes();

    // What the client reads is a well-formed Anthropic event stream: every event named and JSON,
    // opened by message_start, blocks opened and closed in order with rising indices, and ended
    // by exactly one message_stop or error event, with nothing after it.
    let mut decoder = SseDecoder::new(usize::MAX);
    decoder.push(&bytes);
    let mut names = Vec::new();
    let mut open: Option<u64> = None;
    let mut next_index = 0;
    while let Some(event) = decoder.next_event() {
        let event = event.unwrap_or_else(|e| panic!("an undecodable event: {e:?} in {bytes:?}"));
        let name = event
            .event
            .clone()
            .unwrap_or_else(|| panic!("an unnamed event in {bytes:?}"));
        let data: Value = serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(data["type"], name.as_str(), "the data's type names its event");
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "a block opened while another is open: {bytes:?}");
                let index = data["index"].as_u64().expect("a block index");
                assert_eq!(index, next_index, "block indices rise one by one");
                open = Some(index);
                next_index += 1;
            }
            "content_block_delta" => assert_eq!(data["index"].as_u64(), open, "a delta outside its block"),
            "content_block_stop" => {
                let closed = open.take().expect("a block closed while none is open");
                assert_eq!(data["index"].as_u64(), Some(closed), "the open block closes");
            }
            "message_delta" => assert!(open.is_none(), "message_delta with a block open"),
            _ => {}
        }
        names.push(name);
    }
    assert!(!decoder.has_partial(), "a half-written event at the end");
    let Some(last) = names.last() else { return };
    assert!(last == "message_stop" || last == "error", "the stream ends with {last}");
    assert_eq!(
        names.iter().filter(|n| *n == "message_stop" || *n == "error").count(),
        1,
        "one end: {names:?}"
    );
    if last == "message_stop" {
        assert_eq!(names.first().map(String::as_str), Some("message_start"), "{names:?}");
        assert_eq!(names.iter().filter(|n| *n == "message_start").count(), 1);
        assert_eq!(&names[names.len() - 2], "message_delta");
    }
});
