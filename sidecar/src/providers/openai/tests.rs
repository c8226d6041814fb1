//! The stream reading of OpenAI-protocol answers.

use super::*;
use sluice_crds::Tokens;

fn event(data: &str) -> Result<SseEvent, ProviderError> {
    Ok(SseEvent {
        event: None,
        data: data.into(),
    })
}

/// What one event yields, gathered.
fn items(
    event: Result<SseEvent, ProviderError>,
    client_wants_usage: bool,
) -> Option<Vec<Result<StreamEvent, ProviderError>>> {
    to_stream_events(event, client_wants_usage).map(Iterator::collect)
}

fn data_of(items: &[Result<StreamEvent, ProviderError>]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            Ok(StreamEvent::Data(b)) => Some(String::from_utf8(b.to_vec()).unwrap()),
            _ => None,
        })
        .collect()
}

fn assert_usage_5_in_7_out(item: &Result<StreamEvent, ProviderError>) {
    assert!(
        matches!(
            item,
            Ok(StreamEvent::Usage(Usage {
                input: Tokens(5),
                output: Tokens(7),
                ..
            }))
        ),
        "{item:?}"
    );
}

#[test]
fn strips_usage_the_client_did_not_ask_for() {
    let chunk = r#"{"id":"1","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}"#;
    let out = items(event(chunk), false).unwrap();
    assert_eq!(
        data_of(&out),
        vec![r#"{"id":"1","choices":[{"index":0,"delta":{"content":"hi"}}]}"#]
    );
}

#[test]
fn strips_a_null_usage_from_every_chunk_and_keeps_the_rest_as_sent() {
    // OpenAI puts `"usage": null` on every chunk once usage is asked for.
    let chunk = r#"{"id":"1", "usage": null, "choices":[ {"index":0,"delta":{"content":"h\u00e9"}} ],"x\"y":1}"#;
    let out = items(event(chunk), false).unwrap();
    assert_eq!(
        data_of(&out),
        vec![r#"{"id":"1",  "choices":[ {"index":0,"delta":{"content":"h\u00e9"}} ],"x\"y":1}"#]
    );
}

#[test]
fn strips_a_usage_that_comes_last_or_alone_with_its_comma() {
    let strip = |chunk: &str| data_of(&items(event(chunk), false).unwrap());
    assert_eq!(
        strip(r#"{"id":"1","choices":[{"delta":{}}] , "usage" : null }"#),
        vec![r#"{"id":"1","choices":[{"delta":{}}]  }"#]
    );
    assert_eq!(strip(r#"{ "usage":null }"#), vec![r#"{  }"#]);
    assert_eq!(
        strip(r#"{"us\u0061ge":null,"choices":[{"delta":{}}]}"#),
        vec![r#"{"choices":[{"delta":{}}]}"#]
    );
    assert_eq!(
        strip(r#"{"usage":null,"choices":[{"delta":{}}],"usage":null}"#),
        vec![r#"{"choices":[{"delta":{}}]}"#]
    );
}

#[test]
fn a_repeated_usage_key_is_stripped_whole_and_counted_by_its_last_value() {
    let chunk = r#"{"choices":[],"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":5,"completion_tokens":7}}"#;
    let out = items(event(chunk), false).unwrap();
    assert!(data_of(&out).is_empty());
    assert_usage_5_in_7_out(&out[0]);
}

#[test]
fn choices_that_are_not_an_array_make_a_usage_only_chunk() {
    let chunk = r#"{"choices":null,"usage":{"prompt_tokens":5,"completion_tokens":7}}"#;
    let out = items(event(chunk), false).unwrap();
    assert!(data_of(&out).is_empty());
    assert_eq!(out.len(), 1);
}

#[test]
fn a_chunk_with_an_unpaired_surrogate_is_refused_as_a_parsed_value_would_be() {
    let out = items(event(r#"{"choices":[{"delta":{"content":"\ud800"}}]}"#), false).unwrap();
    assert!(matches!(out[0], Err(ProviderError::InvalidResponse(_))));
    let paired = r#"{"choices":[{"delta":{"content":"\ud83d\ude00"}}]}"#;
    let out = items(event(paired), false).unwrap();
    assert_eq!(data_of(&out), vec![paired]);
}

#[test]
fn a_chunk_that_is_not_one_object_is_refused() {
    for data in ["[1]", "\"text\"", "{} {}", "{\"a\":}", "null"] {
        let out = items(event(data), false).unwrap();
        assert!(matches!(out[0], Err(ProviderError::InvalidResponse(_))), "{data}");
    }
}

#[test]
fn drops_the_usage_chunk_but_keeps_its_counts() {
    let chunk = r#"{"id":"1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#;
    let out = items(event(chunk), false).unwrap();
    assert!(data_of(&out).is_empty());
    assert_usage_5_in_7_out(&out[0]);
}

#[test]
fn forwards_the_usage_chunk_verbatim_when_asked() {
    let chunk = r#"{"id":"1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#;
    let out = items(event(chunk), true).unwrap();
    assert_eq!(data_of(&out), vec![chunk]);
}

#[test]
fn ends_at_done_and_fails_on_garbage() {
    assert!(items(event("[DONE]"), false).is_none());
    let out = items(event("{not json"), false).unwrap();
    assert!(matches!(out[0], Err(ProviderError::InvalidResponse(_))));
}

#[tokio::test]
async fn the_stream_ends_at_its_first_error() {
    // Found by fuzzing: an error event, then the connection closing without [DONE], gave two
    // errors, where every other provider's stream ends at the first.
    let body = b"data: {\"error\":{\"message\":\"overloaded\"}}\n\ndata: {\"choices\":[]}\n\n";
    let reads = futures::stream::iter([Ok(Bytes::from_static(body))]);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let items: Vec<_> = translate_body(reads, deadline, false).collect().await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(matches!(items[0], Err(ProviderError::Status { .. })));
}

#[test]
fn turns_an_error_event_into_an_error() {
    let out = items(event(r#"{"error":{"message":"overloaded"}}"#), false).unwrap();
    assert!(matches!(&out[0], Err(ProviderError::Status { .. })));
}
