//! Wire-format tests against fixtures in Gemini's real formats (`../fixtures/gemini/`): each
//! asserts the exact translation.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

use super::normalize;
use crate::{
    formats::gemini::{BatchEmbedContentsResponse, GenerateContentResponse},
    request::{parse_chat, parse_embeddings},
    translate::{
        gemini_to_openai::{self, stream::Translator},
        openai_to_gemini::{self, EmbedRequest},
        testing,
    },
    wire::{ProviderError, Usage},
};

const CREATED: u64 = 1_700_000_000;

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Runs an SSE transcript through the stream translator, then its clean end: the chunks as
/// JSON, the metered usage, and the error that ended it, if one did.
fn translate_transcript(transcript: &str, wants_usage: bool) -> (Vec<Value>, Vec<Usage>, Option<ProviderError>) {
    let translator = Translator::new(wants_usage, CREATED, "gemini-2.5-flash", "fallback");
    testing::translate_transcript(translator, transcript)
}

fn status_and_body(error: ProviderError) -> (StatusCode, Option<Duration>, Value) {
    match error {
        ProviderError::Status {
            status,
            retry_after,
            body,
        } => (status, retry_after, serde_json::from_slice(&body).unwrap()),
        other => panic!("expected an error status, got {other:?}"),
    }
}

#[test]
fn openai_request_becomes_the_gemini_request_with_roles_functions_images_and_config() {
    let request = parse_chat(include_str!("../fixtures/gemini/openai_request.json").as_bytes()).unwrap();

    let translated = openai_to_gemini::request(&request).unwrap();

    assert_eq!(
        serde_json::to_value(&translated).unwrap(),
        json_of(include_str!("../fixtures/gemini/gemini_request.json"))
    );
}

#[test]
fn tool_choice_modes_map_to_function_calling_modes() {
    for (choice, config) in [
        (json!("auto"), json!({"mode": "AUTO"})),
        (json!("none"), json!({"mode": "NONE"})),
        (json!("required"), json!({"mode": "ANY"})),
    ] {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": choice});
        let request = parse_chat(body.to_string().as_bytes()).unwrap();
        let translated = serde_json::to_value(openai_to_gemini::request(&request).unwrap()).unwrap();
        assert_eq!(translated["toolConfig"]["functionCallingConfig"], config, "{choice}");
    }
}

#[test]
fn a_tool_message_for_an_unknown_call_is_refused() {
    let request = parse_chat(
        br#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"call_x","content":"42"}]}"#,
    )
    .unwrap();

    let error = openai_to_gemini::request(&request).unwrap_err();

    assert!(error.0.contains("call_x"), "{error}");
}

#[test]
fn a_function_call_answer_becomes_tool_calls_with_ids_signatures_reasoning_and_usage() {
    let answer: GenerateContentResponse =
        serde_json::from_str(include_str!("../fixtures/gemini/response_function_call.json")).unwrap();

    let completion = gemini_to_openai::response(answer, "gemini-2.5-flash", CREATED, "fallback").unwrap();

    assert_eq!(
        serde_json::to_value(&completion).unwrap(),
        json_of(include_str!("../fixtures/gemini/response_function_call_openai.json"))
    );
}

#[test]
fn a_signature_from_an_answer_goes_back_with_its_call() {
    let answer: GenerateContentResponse =
        serde_json::from_str(include_str!("../fixtures/gemini/response_function_call.json")).unwrap();
    let completion = gemini_to_openai::response(answer, "gemini-2.5-flash", CREATED, "fallback").unwrap();
    let message = serde_json::to_value(&completion.choices[0].message).unwrap();
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "weather?"},
        message,
        {"role": "tool", "tool_call_id": "call_mZ1oaKe9Ld6jz7IPn7rXkQg_0", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_mZ1oaKe9Ld6jz7IPn7rXkQg_1", "content": "rain"}
    ]});
    let request = parse_chat(body.to_string().as_bytes()).unwrap();

    let translated = serde_json::to_value(openai_to_gemini::request(&request).unwrap()).unwrap();

    let model_turn = &translated["contents"][1];
    assert_eq!(model_turn["parts"][0], json!({"text": "Let me look that up."}));
    assert_eq!(model_turn["parts"][1]["thoughtSignature"], "CiQB0e2Kb7sig");
    assert!(model_turn["parts"][2].get("thoughtSignature").is_none());
    assert_eq!(
        translated["contents"][2]["parts"][1],
        json!({"functionResponse": {"name": "get_weather", "response": {"result": "rain"}}})
    );
}

#[test]
fn an_answer_stopped_for_safety_finishes_with_content_filter() {
    let answer: GenerateContentResponse =
        serde_json::from_str(include_str!("../fixtures/gemini/response_safety.json")).unwrap();

    let completion = gemini_to_openai::response(answer, "gemini-2.5-flash", CREATED, "fallback").unwrap();

    assert_eq!(completion.choices[0].finish_reason.as_deref(), Some("content_filter"));
    assert_eq!(completion.choices[0].message.content.as_deref(), Some(""));
}

#[test]
fn a_blocked_prompt_is_a_400_content_filter_error() {
    let answer: GenerateContentResponse =
        serde_json::from_str(include_str!("../fixtures/gemini/prompt_blocked.json")).unwrap();

    let (status, _, body) = status_and_body(gemini_to_openai::response(answer, "m", CREATED, "f").unwrap_err());

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "content_filter");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("SAFETY"));
}

#[test]
fn finish_reasons_map_to_openai() {
    for (reason, finish) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("OTHER", "stop"),
    ] {
        let answer: GenerateContentResponse = serde_json::from_value(json!({
            "candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": reason, "index": 0}]
        }))
        .unwrap();
        let completion = gemini_to_openai::response(answer, "m", CREATED, "f").unwrap();
        assert_eq!(completion.choices[0].finish_reason.as_deref(), Some(finish), "{reason}");
        assert_eq!(
            completion.id, "chatcmpl-f",
            "without a responseId the fallback names the answer"
        );
    }
}

#[test]
fn a_streamed_function_call_becomes_chunks_with_the_whole_call_finish_and_usage() {
    let (chunks, usage, error) =
        translate_transcript(include_str!("../fixtures/gemini/stream_function_call.sse"), true);

    assert!(error.is_none(), "{error:?}");
    let expected: Vec<Value> = include_str!("../fixtures/gemini/stream_function_call_openai.jsonl")
        .lines()
        .map(json_of)
        .collect();
    assert_eq!(chunks, expected);
    assert_eq!(
        usage
            .iter()
            .map(|u| (u.input.0, u.cached_input.0, u.output.0))
            .collect::<Vec<_>>(),
        [(40, 0, 30)]
    );
}

#[test]
fn a_stream_stopped_for_safety_ends_with_content_filter() {
    let (chunks, _, error) = translate_transcript(include_str!("../fixtures/gemini/stream_safety.sse"), false);

    assert!(error.is_none(), "{error:?}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Here is how to");
}

#[test]
fn a_stream_that_closes_before_a_finish_reason_is_interrupted() {
    let transcript = include_str!("../fixtures/gemini/stream_function_call.sse");
    let first_two: String = transcript.split_inclusive("\r\n\r\n").take(2).collect();

    let (chunks, usage, error) = translate_transcript(&first_two, false);

    assert_eq!(chunks.len(), 3, "role and two text chunks reached the client");
    assert!(usage.is_empty());
    assert!(matches!(error, Some(ProviderError::Interrupted(_))), "{error:?}");
}

#[test]
fn an_error_event_mid_stream_fails_with_its_status() {
    let (chunks, _, error) = translate_transcript(include_str!("../fixtures/gemini/stream_error.sse"), false);

    assert_eq!(chunks.len(), 2);
    let (status, _, body) = status_and_body(error.unwrap());
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "unavailable");
}

#[test]
fn a_blocked_prompt_fails_the_stream_before_any_chunk() {
    let blocked = format!(
        "data: {}\r\n\r\n",
        include_str!("../fixtures/gemini/prompt_blocked.json").trim()
    );

    let (chunks, _, error) = translate_transcript(&blocked, false);

    assert!(chunks.is_empty());
    assert_eq!(status_and_body(error.unwrap()).0, StatusCode::BAD_REQUEST);
}

#[test]
fn google_errors_take_openai_shape_with_the_retry_delay() {
    let raw = ProviderError::Status {
        status: StatusCode::TOO_MANY_REQUESTS,
        retry_after: None,
        body: include_str!("../fixtures/gemini/error_resource_exhausted.json").into(),
    };

    let (status, retry_after, body) = status_and_body(normalize(raw));

    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after, Some(Duration::from_secs(37)));
    assert_eq!(
        body,
        json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "rate_limit_error", "code": "resource_exhausted", "param": null}})
    );
}

#[test]
fn a_retry_delay_too_large_for_a_duration_is_ignored_not_a_panic() {
    // `Duration::from_secs_f64` panicked on a finite delay beyond its range; the fuzz target
    // response_gemini keeps this input as a regression case.
    for delay in ["1e300s", "-5s", "NaNs", "infs"] {
        let body = json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}});
        let raw = ProviderError::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: None,
            body: body.to_string().into(),
        };
        let (status, retry_after, _) = status_and_body(normalize(raw));
        assert_eq!((status, retry_after), (StatusCode::TOO_MANY_REQUESTS, None), "{delay}");
    }
}

#[test]
fn a_google_error_in_an_array_is_read_too() {
    let raw = ProviderError::Status {
        status: StatusCode::BAD_REQUEST,
        retry_after: None,
        body: r#"[{"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}]"#.into(),
    };

    let (status, _, body) = status_and_body(normalize(raw));

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": {"message": "API key not valid.", "type": "invalid_request_error",
            "code": "invalid_argument", "param": null}})
    );
}

#[test]
fn several_texts_embed_in_one_batch_and_come_back_as_an_openai_list() {
    let request = parse_embeddings(
        br#"{"model":"embed","input":["hello world","bye"],"dimensions":3,"encoding_format":"float"}"#,
    )
    .unwrap();

    let EmbedRequest::Batch(batch) = openai_to_gemini::embeddings_request(&request, "gemini-embedding-001").unwrap()
    else {
        panic!("several texts go in one batch");
    };
    assert_eq!(
        serde_json::to_value(&batch).unwrap(),
        json_of(include_str!("../fixtures/gemini/batch_embed_request.json"))
    );

    let answer: BatchEmbedContentsResponse =
        serde_json::from_str(include_str!("../fixtures/gemini/batch_embed_response.json")).unwrap();
    let body = gemini_to_openai::embeddings_response(answer.embeddings, "gemini-embedding-001", false, 4);
    assert_eq!(
        json_of(std::str::from_utf8(&body).unwrap()),
        json!({"object": "list", "model": "gemini-embedding-001",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]},
                     {"object": "embedding", "index": 1, "embedding": [1.5, 0.0, -2.0]}],
            "usage": {"prompt_tokens": 4, "total_tokens": 4}})
    );
}

#[test]
fn one_text_embeds_alone_and_base64_is_little_endian_f32() {
    let request = parse_embeddings(br#"{"model":"embed","input":"hello"}"#).unwrap();
    assert!(matches!(
        openai_to_gemini::embeddings_request(&request, "gemini-embedding-001").unwrap(),
        EmbedRequest::One(ref one) if one.model.is_none()
    ));

    let answer: BatchEmbedContentsResponse =
        serde_json::from_value(json!({"embeddings": [{"values": [1.0]}]})).unwrap();
    let body = gemini_to_openai::embeddings_response(answer.embeddings, "m", true, 1);
    assert_eq!(
        json_of(std::str::from_utf8(&body).unwrap())["data"][0]["embedding"],
        "AACAPw=="
    );
}

#[test]
fn token_array_input_is_refused() {
    let request = parse_embeddings(br#"{"model":"embed","input":[[1,2,3]]}"#).unwrap();
    assert!(openai_to_gemini::embeddings_request(&request, "m").is_err());
}

#[test]
fn usage_counts_at_the_top_of_u64_saturate() {
    let most: crate::formats::gemini::UsageMetadata = serde_json::from_value(json!({
        "promptTokenCount": u64::MAX, "toolUsePromptTokenCount": 1,
        "candidatesTokenCount": u64::MAX, "thoughtsTokenCount": 1}))
    .unwrap();
    let openai = gemini_to_openai::usage(&most);
    assert_eq!(
        (openai.prompt_tokens, openai.completion_tokens, openai.total_tokens),
        (u64::MAX, u64::MAX, u64::MAX)
    );
}

// ---------------------------------------------------------------------------------------------
// Reasoning effort and structured output

/// The Gemini request for a chat request of `body`, as JSON.
fn gemini_request(body: Value) -> Value {
    let request = parse_chat(body.to_string().as_bytes()).unwrap();
    serde_json::to_value(openai_to_gemini::request(&request).unwrap()).unwrap()
}

#[test]
fn reasoning_effort_becomes_a_thinking_budget_with_thought_summaries() {
    let messages = json!([{"role": "user", "content": "27 * 453?"}]);
    let sent = gemini_request(json!({"model": "m", "messages": messages, "reasoning_effort": "medium"}));
    assert_eq!(
        sent["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 2048, "includeThoughts": true})
    );
    let off = gemini_request(json!({"model": "m", "messages": messages, "reasoning_effort": "none"}));
    assert_eq!(off["generationConfig"]["thinkingConfig"], json!({"thinkingBudget": 0}));
    let unasked = gemini_request(json!({"model": "m", "messages": messages}));
    assert!(unasked.get("generationConfig").is_none(), "{unasked}");
}

#[test]
fn a_responses_request_with_effort_and_a_schema_reaches_gemini_as_thinking_and_a_response_schema() {
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    let request: crate::formats::responses::ResponsesRequest = serde_json::from_value(json!({
        "model": "m", "input": "27 * 453?", "reasoning": {"effort": "high"},
        "text": {"format": {"type": "json_schema", "name": "product", "schema": schema, "strict": true}}}))
    .unwrap();
    let chat = crate::translate::responses_to_openai::request(&request).unwrap();
    let sent = serde_json::to_value(openai_to_gemini::request(&chat).unwrap()).unwrap();
    let config = &sent["generationConfig"];
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(config["responseJsonSchema"], schema);
    assert_eq!(config["thinkingConfig"]["thinkingBudget"], 4096);
}

#[test]
fn streamed_thought_parts_come_back_as_reasoning_never_as_answer_text() {
    let (chunks, usage, error) = translate_transcript(include_str!("../fixtures/gemini/stream_thinking.sse"), true);
    assert!(error.is_none(), "{error:?}");
    let joined = |field: &str| -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][field].as_str())
            .collect()
    };
    assert_eq!(
        joined("reasoning_content"),
        "**Multiplying the numbers**\n\nThe user asks for 27 * 453, which is 12231."
    );
    assert_eq!(joined("content"), "27 × 453 = 12,231");
    // Thinking is billed as output, as Google bills it.
    assert_eq!(usage[0].output.0, 10 + 138);
}

#[test]
fn a_thought_part_of_a_whole_answer_is_reasoning_and_a_responses_reasoning_item() {
    let answer: GenerateContentResponse = serde_json::from_value(json!({
        "candidates": [{"content": {"parts": [{"text": "27 * 453 = 12231.", "thought": true}, {"text": "12,231"}],
                                    "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4, "thoughtsTokenCount": 138,
                          "totalTokenCount": 151},
        "modelVersion": "gemini-2.5-flash", "responseId": "q0EzaeKwG8Oz1e8PpNiR4Ak"}))
    .unwrap();
    let completion = gemini_to_openai::response(answer, "gemini-2.5-flash", CREATED, "fallback").unwrap();
    let message = &completion.choices[0].message;
    assert_eq!(message.reasoning_content.as_deref(), Some("27 * 453 = 12231."));
    assert_eq!(message.content.as_deref(), Some("12,231"));
    let request: crate::formats::responses::ResponsesRequest =
        serde_json::from_value(json!({"model": "m", "input": "27 * 453?"})).unwrap();
    let response = serde_json::to_value(crate::translate::openai_to_responses::response(completion, &request)).unwrap();
    assert_eq!(response["output"][0]["type"], "reasoning", "{response}");
    assert_eq!(response["output"][1]["content"][0]["text"], "12,231");
}
