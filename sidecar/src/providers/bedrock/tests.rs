//! Wire tests against fixtures in Bedrock's real formats (`../fixtures/bedrock/`): the Converse
//! request, a recorded answer with a tool call, and an event-stream transcript framed by the
//! field's encoder; each asserts the exact translation.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::time::{Duration, Instant};

use super::{converse_url, credentials::parse_credentials_file, parse_answer, translate_body};
use crate::{
    request::parse_chat,
    translate::{bedrock_to_openai, openai_to_bedrock},
    wire::{ProviderError, StreamEvent, Usage},
};

const CREATED: u64 = 1_700_000_000;
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const ID: &str = "chatcmpl-bedrock-test";

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// One event-stream message as Bedrock frames it: its type in headers, its JSON payload (with
/// the `p` padding Bedrock adds to every event).
fn event_frame(kind: &str, payload: &Value) -> Vec<u8> {
    let mut payload = payload.clone();
    payload["p"] = json!("abcdefghijklmnopqrstuvwxyzABCDEF");
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(":event-type", HeaderValue::String(kind.to_owned().into())))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())));
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap();
    out
}

/// An exception message, as Bedrock sends one mid-stream.
fn exception_frame(kind: &str, text: &str) -> Vec<u8> {
    let message = Message::new(Bytes::from(json!({"message": text}).to_string()))
        .add_header(Header::new(
            ":exception-type",
            HeaderValue::String(kind.to_owned().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(":message-type", HeaderValue::String("exception".into())));
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap();
    out
}

/// The binary transcript of a JSON-lines file of `{eventType: payload}` events.
fn transcript(lines: &str) -> Vec<u8> {
    lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|line| {
            let event: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
            let (kind, payload) = event.into_iter().next().unwrap();
            event_frame(&kind, &payload)
        })
        .collect()
}

/// Runs a binary body, cut into `piece`-byte chunks, through the provider's stream reading: the
/// chunks as JSON, the metered usage, and the error that ended it, if one did.
async fn run_stream(body: Vec<u8>, piece: usize) -> (Vec<Value>, Vec<Usage>, Option<ProviderError>) {
    let chunks: Vec<Result<Bytes, ProviderError>> = body.chunks(piece).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stream = translate_body(futures::stream::iter(chunks), deadline, true, CREATED, MODEL, ID);
    let (mut out, mut usage) = (Vec::new(), Vec::new());
    while let Some(item) = stream.next().await {
        match item {
            Ok(StreamEvent::Data(bytes)) => out.push(serde_json::from_slice(&bytes).unwrap()),
            Ok(StreamEvent::Usage(u)) => usage.push(u),
            Err(e) => return (out, usage, Some(e)),
        }
    }
    (out, usage, None)
}

#[test]
fn a_chat_with_system_image_tools_and_a_tool_result_becomes_the_converse_request() {
    let request = parse_chat(include_str!("../fixtures/bedrock/openai_request.json").as_bytes()).unwrap();

    let translated = openai_to_bedrock::request(&request).unwrap();

    assert_eq!(
        serde_json::to_value(&translated).unwrap(),
        json_of(include_str!("../fixtures/bedrock/converse_request.json"))
    );
}

#[test]
fn a_remote_image_url_is_refused_since_converse_takes_bytes() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let request = parse_chat(body.to_string().as_bytes()).unwrap();

    let error = openai_to_bedrock::request(&request).unwrap_err();

    assert!(error.0.contains("data: URLs only"), "{error}");
}

#[test]
fn tool_choice_modes_map_to_auto_any_and_tool() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    for (choice, expected) in [
        (json!("auto"), json!({"auto": {}})),
        (json!("required"), json!({"any": {}})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"tool": {"name": "f"}}),
        ),
    ] {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": choice});
        let request = parse_chat(body.to_string().as_bytes()).unwrap();
        let translated = serde_json::to_value(openai_to_bedrock::request(&request).unwrap()).unwrap();
        assert_eq!(translated["toolConfig"]["toolChoice"], expected, "{choice}");
    }
    let body =
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": "none"});
    let request = parse_chat(body.to_string().as_bytes()).unwrap();
    let translated = serde_json::to_value(openai_to_bedrock::request(&request).unwrap()).unwrap();
    assert_eq!(translated.get("toolConfig"), None);
}

#[test]
fn a_recorded_converse_answer_with_a_tool_use_becomes_the_openai_completion() {
    let answer = parse_answer(include_bytes!("../fixtures/bedrock/converse_tool_use.json")).unwrap();

    let completion = bedrock_to_openai::response(answer, MODEL, CREATED, ID);

    assert_eq!(
        serde_json::to_value(&completion).unwrap(),
        json_of(include_str!("../fixtures/bedrock/converse_tool_use_openai.json"))
    );
}

#[test]
fn stop_reasons_map_to_finish_reasons() {
    for (reason, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ] {
        assert_eq!(bedrock_to_openai::finish_reason(reason), finish, "{reason}");
    }
}

#[tokio::test]
async fn an_event_stream_with_reasoning_and_a_tool_call_becomes_the_exact_openai_chunks() {
    let body = transcript(include_str!("../fixtures/bedrock/stream_tool_use.jsonl"));
    let expected: Vec<Value> = include_str!("../fixtures/bedrock/stream_tool_use_openai.jsonl")
        .lines()
        .map(json_of)
        .collect();

    // Cut into pieces smaller than a message, so that every frame spans several reads.
    let (chunks, usage, error) = run_stream(body, 7).await;

    assert!(error.is_none(), "{error:?}");
    assert_eq!(chunks, expected);
    assert_eq!(usage.len(), 1);
    let usage = usage[0];
    assert_eq!(
        (
            usage.input.0,
            usage.cached_input.0,
            usage.cache_write_input.0,
            usage.output.0
        ),
        (12, 4, 2, 5)
    );
}

#[tokio::test]
async fn a_throttling_exception_mid_stream_ends_the_stream_with_a_429() {
    let mut body = event_frame("messageStart", &json!({"role": "assistant"}));
    body.extend(event_frame(
        "contentBlockDelta",
        &json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
    ));
    body.extend(exception_frame("throttlingException", "Too many tokens, please wait."));

    let (chunks, usage, error) = run_stream(body, 64).await;

    assert_eq!(chunks.len(), 2, "the role chunk and the text before the exception");
    assert!(usage.is_empty());
    let Some(ProviderError::Status { status, body, .. }) = error else {
        panic!("expected an error status, got {error:?}");
    };
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"error": {"message": "Too many tokens, please wait.", "type": "rate_limit_error",
                         "code": "throttling_exception", "param": null}})
    );
}

#[tokio::test]
async fn a_stream_cut_inside_a_message_or_before_message_stop_is_an_interruption() {
    let whole = event_frame("messageStart", &json!({"role": "assistant"}));
    let (_, _, error) = run_stream(whole[..whole.len() - 3].to_vec(), 5).await;
    assert!(
        matches!(&error, Some(ProviderError::Interrupted(m)) if m.contains("middle of an event-stream message")),
        "{error:?}"
    );

    let (_, _, error) = run_stream(whole, 5).await;
    assert!(
        matches!(&error, Some(ProviderError::Interrupted(m)) if m.contains("messageStop")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_corrupted_frame_is_an_invalid_answer_not_a_panic() {
    let mut body = event_frame("messageStart", &json!({"role": "assistant"}));
    let last = body.len() - 1;
    body[last] ^= 0xff;

    let (_, _, error) = run_stream(body, 64).await;

    assert!(matches!(error, Some(ProviderError::InvalidResponse(_))), "{error:?}");
}

#[test]
fn model_ids_profiles_and_arns_are_one_escaped_path_segment() {
    let endpoint = "https://bedrock-runtime.us-east-1.amazonaws.com";
    assert_eq!(
        converse_url(endpoint, "anthropic.claude-3-5-sonnet-20240620-v1:0", false),
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(
        converse_url(endpoint, "us.anthropic.claude-sonnet-4-20250514-v1:0", true),
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/converse-stream"
    );
    assert_eq!(
        converse_url(
            endpoint,
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0",
            false
        ),
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.amazon.nova-pro-v1%3A0/converse"
    );
}

const CREDENTIALS_FILE: &str = "# team-a's Bedrock keys\n\
    [default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = default-secret\n\n\
    [ci]\naws_access_key_id=AKIDCI\naws_secret_access_key=ci-secret\naws_session_token=ci-token\n";

#[test]
fn the_credentials_file_gives_the_chosen_profile() {
    let default = parse_credentials_file(CREDENTIALS_FILE, "default").unwrap();
    assert_eq!(
        (
            default.access_key_id(),
            default.secret_access_key(),
            default.session_token()
        ),
        ("AKIDDEFAULT", "default-secret", None)
    );
    let ci = parse_credentials_file(CREDENTIALS_FILE, "ci").unwrap();
    assert_eq!(
        (ci.access_key_id(), ci.secret_access_key(), ci.session_token()),
        ("AKIDCI", "ci-secret", Some("ci-token"))
    );
}

#[test]
fn a_bad_credentials_file_is_refused_naming_the_profile_never_a_value() {
    let missing = parse_credentials_file(CREDENTIALS_FILE, "prod").unwrap_err();
    assert_eq!(missing.0, "the credentials file has no [prod] profile");

    let half = parse_credentials_file("[default]\naws_access_key_id = AKIDHALF\n", "default").unwrap_err();
    assert_eq!(
        half.0,
        "profile [default] of the credentials file lacks aws_secret_access_key"
    );

    let garbage = parse_credentials_file("[default]\nsecret-looking-garbage\n", "default").unwrap_err();
    assert!(!garbage.0.contains("garbage"), "{garbage}");
    assert!(garbage.0.contains("line 2"), "{garbage}");

    let orphan = parse_credentials_file("aws_secret_access_key = s3cr3t\n[default]\n", "default").unwrap_err();
    assert!(!orphan.0.contains("s3cr3t"), "{orphan}");
}
