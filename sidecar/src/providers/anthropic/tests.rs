//! Wire-format tests against fixtures in Anthropic's real formats (`../fixtures/anthropic/`):
//! each asserts the exact translation, both ways.

use http::StatusCode;
use serde_json::{Value, json};

use super::normalize;
use crate::{
    formats::{
        anthropic::{MessagesRequest, MessagesResponse},
        openai::ChatCompletion,
    },
    providers::{ProviderError, StreamEvent},
    request::parse_chat,
    translate::{
        StreamTranslator,
        anthropic_to_openai::{self, stream::Translator},
        openai_to_anthropic::{self, DEFAULT_MAX_TOKENS},
        testing,
    },
};

const CREATED: u64 = 1_700_000_000;

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Runs a transcript through the stream translator: the chunks as JSON, the usage, the error.
fn translate_transcript(
    transcript: &str,
    wants_usage: bool,
) -> (Vec<Value>, Vec<crate::wire::Usage>, Option<ProviderError>) {
    testing::translate_transcript(Translator::new(wants_usage, CREATED), transcript)
}

#[test]
fn openai_request_becomes_the_anthropic_request_with_system_tools_images_and_merged_tool_results() {
    let request = parse_chat(include_str!("../fixtures/anthropic/openai_request.json").as_bytes()).unwrap();

    let translated = openai_to_anthropic::request(&request, "claude-sonnet-4-5").unwrap();

    assert_eq!(
        serde_json::to_value(&translated).unwrap(),
        json_of(include_str!("../fixtures/anthropic/anthropic_request.json"))
    );
}

#[test]
fn a_request_without_a_cap_gets_the_default_max_tokens_and_a_plain_system_string() {
    let request = parse_chat(
        br#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"max_completion_tokens":null}"#,
    )
    .unwrap();

    let translated = serde_json::to_value(openai_to_anthropic::request(&request, "claude").unwrap()).unwrap();

    assert_eq!(
        translated,
        json!({"model": "claude", "max_tokens": DEFAULT_MAX_TOKENS, "system": "Be brief.",
               "messages": [{"role": "user", "content": "hi"}]})
    );
}

#[test]
fn requests_anthropic_cannot_take_are_refused_with_the_reason() {
    for (body, reason) in [
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2}"#,
            "n must be 1",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AA==","format":"wav"}}]}]}"#,
            "audio",
        ),
        (
            r#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{not json"}}]}]}"#,
            "not JSON",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}"#,
            "http(s) URL",
        ),
    ] {
        let request = parse_chat(body.as_bytes()).unwrap();
        let error = openai_to_anthropic::request(&request, "claude").unwrap_err();
        assert!(error.0.contains(reason), "{body}: {error}");
    }
}

#[test]
fn a_tool_use_message_becomes_a_completion_with_tool_calls_reasoning_and_cache_usage() {
    let message: MessagesResponse =
        serde_json::from_str(include_str!("../fixtures/anthropic/message_tool_use.json")).unwrap();

    let completion = anthropic_to_openai::response(message, CREATED);

    assert_eq!(
        serde_json::to_value(&completion).unwrap(),
        json_of(include_str!("../fixtures/anthropic/message_tool_use_openai.json"))
    );
    let usage = completion.usage.unwrap().to_usage();
    // 412 uncached + 2048 read + 1024 written: the prompt, with the writes counted apart.
    assert_eq!(
        (
            usage.input.0,
            usage.cached_input.0,
            usage.cache_write_input.0,
            usage.output.0
        ),
        (3484, 2048, 1024, 87)
    );
}

#[test]
fn a_streamed_answer_counts_cache_writes_from_message_start_and_message_delta() {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let start = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "model": "claude", "content": [], "stop_reason": null,
        "usage": {"input_tokens": 10, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 20,
            "output_tokens": 1}}});
    let stop = json!({"type": "message_stop"});
    let delta = |usage: Value| json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage});

    // Writes only in message_start: kept when message_delta leaves them out.
    let transcript = [
        event("message_start", start.clone()),
        event("message_delta", delta(json!({"output_tokens": 7}))),
        event("message_stop", stop.clone()),
    ]
    .concat();
    let (_, usage, error) = translate_transcript(&transcript, false);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        (
            usage[0].input.0,
            usage[0].cached_input.0,
            usage[0].cache_write_input.0,
            usage[0].output.0
        ),
        (330, 20, 300, 7)
    );

    // message_delta's counts are cumulative: they replace message_start's.
    let transcript = [
        event("message_start", start),
        event(
            "message_delta",
            delta(
                json!({"output_tokens": 7, "input_tokens": 10, "cache_creation_input_tokens": 400,
                "cache_read_input_tokens": 20}),
            ),
        ),
        event("message_stop", stop),
    ]
    .concat();
    let (_, usage, error) = translate_transcript(&transcript, false);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        (
            usage[0].input.0,
            usage[0].cached_input.0,
            usage[0].cache_write_input.0,
            usage[0].output.0
        ),
        (430, 20, 400, 7)
    );
}

#[test]
fn stop_reasons_map_to_finish_reasons() {
    let base: Value = json_of(include_str!("../fixtures/anthropic/message_max_tokens.json"));
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("pause_turn", "stop"),
        ("some_future_reason", "stop"),
    ] {
        let mut message = base.clone();
        message["stop_reason"] = json!(stop);
        let message: MessagesResponse = serde_json::from_value(message).unwrap();
        let completion = anthropic_to_openai::response(message, CREATED);
        assert_eq!(completion.choices[0].finish_reason.as_deref(), Some(finish), "{stop}");
    }
}

#[test]
fn a_streamed_tool_use_becomes_chunks_with_argument_deltas_finish_and_usage() {
    let (chunks, usage, error) = translate_transcript(include_str!("../fixtures/anthropic/stream_tool_use.sse"), true);

    assert!(error.is_none(), "{error:?}");
    let expected: Vec<Value> = include_str!("../fixtures/anthropic/stream_tool_use_openai.jsonl")
        .lines()
        .map(json_of)
        .collect();
    assert_eq!(chunks, expected);
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (usage[0].input.0, usage[0].cached_input.0, usage[0].output.0),
        (768, 256, 41)
    );
}

#[test]
fn a_streamed_answer_leaves_usage_out_of_the_chunks_unless_asked() {
    let (chunks, usage, _) = translate_transcript(include_str!("../fixtures/anthropic/stream_tool_use.sse"), false);

    assert_eq!(chunks.len(), 7, "no usage chunk");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(usage.len(), 1, "usage is still metered");
}

#[test]
fn an_overloaded_error_event_fails_the_stream_before_any_chunk_with_529() {
    let (chunks, _, error) = translate_transcript(include_str!("../fixtures/anthropic/stream_overloaded.sse"), false);

    assert!(chunks.is_empty(), "the role chunk waits for content: {chunks:?}");
    match error {
        Some(ProviderError::Status { status, body, .. }) => {
            assert_eq!(status.as_u16(), 529);
            assert_eq!(
                json_of(std::str::from_utf8(&body).unwrap()),
                json!({"error": {"message": "Overloaded", "type": "upstream_error", "code": "overloaded_error", "param": null}})
            );
        }
        other => panic!("expected a 529, got {other:?}"),
    }
}

#[test]
fn a_stream_ending_at_an_event_named_message_stop_whose_data_is_not_the_stop_is_interrupted() {
    // Found by fuzzing: the decoder ends the stream at the event *named* message_stop (or error),
    // so a ping under that name used to end a "whole" answer with no usage at all.
    let transcript = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\
        \"model\":\"claude\",\"usage\":{\"input_tokens\":3,\"output_tokens\":0}}}\n\n\
        event: message_stop\ndata: {\"type\":\"ping\"}\n\n";
    let (_, usage, error) = translate_transcript(transcript, false);

    assert!(usage.is_empty());
    assert!(matches!(error, Some(ProviderError::Interrupted(_))), "{error:?}");
}

#[test]
fn a_messages_request_whose_messages_are_all_empty_is_refused_not_sent_with_no_messages() {
    // Found by fuzzing (request_messages): an empty content list became no chat message at all,
    // a request the chat endpoint itself refuses.
    let request: MessagesRequest = serde_json::from_value(json!({
        "model": "m", "max_tokens": 10, "system": "be brief",
        "messages": [{"role": "user", "content": []}],
    }))
    .unwrap();
    let error = anthropic_to_openai::request(request).unwrap_err();
    assert!(error.to_string().contains("at least one message"), "{error}");
}

#[test]
fn an_event_after_message_stop_fails_instead_of_reporting_usage_twice() {
    let mut translator = Translator::new(false, CREATED);
    let stop = r#"{"type":"message_stop"}"#;
    let first = translator.event(stop).unwrap();
    assert_eq!(first.iter().filter(|i| matches!(i, StreamEvent::Usage(_))).count(), 1);
    assert!(matches!(translator.event(stop), Err(ProviderError::InvalidResponse(_))));
}

#[test]
fn upstream_error_bodies_take_openai_shape_keeping_status_and_retry_after() {
    let raw = ProviderError::Status {
        status: StatusCode::TOO_MANY_REQUESTS,
        retry_after: Some(std::time::Duration::from_secs(7)),
        body: include_str!("../fixtures/anthropic/error_rate_limit.json").into(),
    };

    match normalize(raw) {
        ProviderError::Status {
            status,
            retry_after,
            body,
        } => {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(retry_after, Some(std::time::Duration::from_secs(7)));
            assert_eq!(
                json_of(std::str::from_utf8(&body).unwrap()),
                json!({"error": {"message": "Number of request tokens has exceeded your per-minute rate limit",
                    "type": "rate_limit_error", "code": "rate_limit_error", "param": null}})
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_inbound_messages_request_becomes_the_openai_request() {
    let request: MessagesRequest =
        serde_json::from_str(include_str!("../fixtures/anthropic/inbound_request.json")).unwrap();
    assert!(
        request.rest.contains_key("thinking"),
        "unknown fields are kept when parsed"
    );

    let translated = anthropic_to_openai::request(request).unwrap();

    assert_eq!(
        serde_json::to_value(&translated).unwrap(),
        json_of(include_str!("../fixtures/anthropic/inbound_request_openai.json"))
    );
}

#[test]
fn an_openai_completion_becomes_the_anthropic_message() {
    let completion: ChatCompletion =
        serde_json::from_str(include_str!("../fixtures/anthropic/inbound_completion.json")).unwrap();

    let message = openai_to_anthropic::response(completion);

    assert_eq!(
        serde_json::to_value(&message).unwrap(),
        json_of(include_str!("../fixtures/anthropic/inbound_message.json"))
    );
}

#[test]
fn a_message_survives_the_round_trip_through_the_openai_format() {
    let original: MessagesResponse =
        serde_json::from_str(include_str!("../fixtures/anthropic/message_tool_use.json")).unwrap();

    let back = openai_to_anthropic::response(anthropic_to_openai::response(original.clone(), CREATED));

    assert_eq!(back.id, original.id);
    assert_eq!(back.model, original.model);
    assert_eq!(back.stop_reason, original.stop_reason);
    assert_eq!(
        back.content[1..],
        original.content[1..],
        "text and tool calls unchanged"
    );
    assert_eq!(
        (back.usage.input_tokens, back.usage.output_tokens),
        (original.usage.input_tokens, original.usage.output_tokens)
    );
    assert_eq!(
        back.usage.cache_read_input_tokens,
        original.usage.cache_read_input_tokens
    );
    assert_eq!(
        back.usage.cache_creation_input_tokens,
        original.usage.cache_creation_input_tokens
    );
}

#[test]
fn inbound_requests_that_cannot_be_translated_are_refused() {
    for (body, reason) in [
        (
            json!({"model": "m", "max_tokens": 5, "messages": []}),
            "at least one message",
        ),
        (
            json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}),
            "at least 1",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                   "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "server tools",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "url", "url": "https://x/doc.pdf"}}]}]}),
            "inline",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "search_result", "source": "x", "title": "t", "content": []}]}]}),
            "cannot translate",
        ),
    ] {
        let request: MessagesRequest = serde_json::from_value(body.clone()).unwrap();
        let error = anthropic_to_openai::request(request).unwrap_err();
        assert!(error.0.contains(reason), "{body}: {error}");
    }
}

#[test]
fn usage_counts_at_the_top_of_u64_saturate_both_ways() {
    let most = crate::formats::anthropic::Usage {
        input_tokens: u64::MAX,
        output_tokens: u64::MAX,
        cache_creation_input_tokens: Some(u64::MAX),
        cache_read_input_tokens: Some(u64::MAX),
        ..crate::formats::anthropic::Usage::default()
    };
    let openai = anthropic_to_openai::usage(&most);
    assert_eq!((openai.prompt_tokens, openai.total_tokens), (u64::MAX, u64::MAX));
    let back = openai_to_anthropic::usage(&openai);
    assert_eq!((back.input_tokens, back.output_tokens), (0, u64::MAX));
}

// ---------------------------------------------------------------------------------------------
// Reasoning effort and structured output

/// The Anthropic request for a chat request of `body`, as JSON.
fn anthropic_request(body: Value) -> Value {
    let request = parse_chat(body.to_string().as_bytes()).unwrap();
    serde_json::to_value(openai_to_anthropic::request(&request, "claude").unwrap()).unwrap()
}

#[test]
fn reasoning_effort_becomes_extended_thinking_within_the_cap_without_sampling_settings_it_forbids() {
    let messages = json!([{"role": "user", "content": "27 * 453?"}]);
    // No cap: room for the answer on top of the budget, temperature and top_k not sent, a
    // top_p below 0.95 not sent either.
    let sent = anthropic_request(json!({"model": "m", "messages": messages, "reasoning_effort": "high",
        "temperature": 0.2, "top_k": 5, "top_p": 0.5}));
    assert_eq!(sent["thinking"], json!({"type": "enabled", "budget_tokens": 4096}));
    assert_eq!(sent["max_tokens"], DEFAULT_MAX_TOKENS + 4096);
    for absent in ["temperature", "top_k", "top_p"] {
        assert!(sent.get(absent).is_none(), "{absent} sent: {sent}");
    }
    // A cap keeps its meaning: the budget fits below it.
    let sent = anthropic_request(json!({"model": "m", "messages": messages, "reasoning_effort": "high",
        "max_completion_tokens": 3000, "top_p": 0.97}));
    assert_eq!(sent["thinking"], json!({"type": "enabled", "budget_tokens": 2999}));
    assert_eq!(
        (sent["max_tokens"].clone(), sent["top_p"].clone()),
        (json!(3000), json!(0.97))
    );
    assert_eq!(
        anthropic_request(json!({"model": "m", "messages": messages, "reasoning_effort": "low"}))["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
}

#[test]
fn thinking_is_left_out_where_anthropic_would_refuse_it() {
    let messages = json!([{"role": "user", "content": "hi"}]);
    let tools = json!([{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}]);
    let cases = [
        json!({"model": "m", "messages": messages, "reasoning_effort": "none", "temperature": 0.2}),
        json!({"model": "m", "messages": messages, "reasoning_effort": "medium", "max_tokens": 800}),
        json!({"model": "m", "messages": messages, "reasoning_effort": "medium", "tools": tools,
               "tool_choice": "required"}),
    ];
    for body in &cases {
        let sent = anthropic_request(body.clone());
        assert!(sent.get("thinking").is_none(), "{body} → {sent}");
    }
    // Without thinking, temperature goes as asked.
    assert_eq!(anthropic_request(cases[0].clone())["temperature"], json!(0.2));
    let request = parse_chat(
        json!({"model": "m", "messages": messages, "reasoning_effort": "extreme"})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let refused = openai_to_anthropic::request(&request, "claude").unwrap_err();
    assert!(refused.0.contains("reasoning_effort"), "{refused:?}");
}

#[test]
fn a_json_schema_response_format_becomes_anthropics_structured_output() {
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                        "additionalProperties": false});
    let sent = anthropic_request(
        json!({"model": "m", "messages": [{"role": "user", "content": "Where?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "place", "strict": true, "schema": schema}}}),
    );
    assert_eq!(
        sent["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema}})
    );
    assert!(sent.get("response_format").is_none());
    let plain = anthropic_request(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_object"}}));
    assert!(plain.get("output_config").is_none(), "{plain}");
}

#[test]
fn a_responses_request_with_effort_and_a_schema_reaches_anthropic_as_thinking_and_structured_output() {
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    let request: crate::formats::responses::ResponsesRequest = serde_json::from_value(json!({
        "model": "m", "input": "27 * 453?", "reasoning": {"effort": "medium"},
        "text": {"format": {"type": "json_schema", "name": "product", "schema": schema, "strict": true}}}))
    .unwrap();
    let chat = crate::translate::responses_to_openai::request(&request).unwrap();
    let sent = serde_json::to_value(openai_to_anthropic::request(&chat, "claude").unwrap()).unwrap();
    assert_eq!(sent["thinking"], json!({"type": "enabled", "budget_tokens": 2048}));
    assert_eq!(sent["output_config"]["format"]["schema"], schema);
}

#[test]
fn streamed_thinking_comes_back_as_reasoning_never_as_answer_text() {
    let (chunks, usage, error) = translate_transcript(include_str!("../fixtures/anthropic/stream_thinking.sse"), true);
    assert!(error.is_none(), "{error:?}");
    let joined = |field: &str| -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][field].as_str())
            .collect()
    };
    assert_eq!(
        joined("reasoning_content"),
        "The user asks for 27 * 453. 27 * 453 = 12231."
    );
    assert_eq!(joined("content"), "27 × 453 = 12,231");
    assert_eq!(usage[0].output.0, 61);
}

#[test]
fn a_thinking_block_of_a_whole_message_is_reasoning_and_a_responses_reasoning_item() {
    let message: MessagesResponse = serde_json::from_value(json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "thinking", "thinking": "27 * 453 = 12231.", "signature": "EqQBCgIYAhIM"},
                    {"type": "text", "text": "12,231"}],
        "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": 42, "output_tokens": 61}}))
    .unwrap();
    let completion = anthropic_to_openai::response(message, CREATED);
    let answer = &completion.choices[0].message;
    assert_eq!(answer.reasoning_content.as_deref(), Some("27 * 453 = 12231."));
    assert_eq!(answer.content.as_deref(), Some("12,231"));
    let request: crate::formats::responses::ResponsesRequest =
        serde_json::from_value(json!({"model": "m", "input": "27 * 453?"})).unwrap();
    let response = serde_json::to_value(crate::translate::openai_to_responses::response(completion, &request)).unwrap();
    assert_eq!(response["output"][0]["type"], "reasoning", "{response}");
    assert_eq!(response["output"][1]["content"][0]["text"], "12,231");
}
