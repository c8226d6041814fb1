use serde_json::{Value, json};

use super::{response, stream::Translator};
use crate::{
    formats::{openai::ChatCompletion, responses::ResponsesRequest},
    translate::{anthropic_to_openai, gemini_to_openai, testing::translate_transcript},
    wire::{ProviderError, Usage},
};

fn request(v: Value) -> ResponsesRequest {
    serde_json::from_value(v).unwrap()
}

fn plain_request() -> ResponsesRequest {
    request(json!({"model": "gpt-4.1", "input": "hi", "store": true}))
}

/// Runs chat chunks through the Responses translator; the events as JSON.
fn events(chunks: &[Value], metered: Option<Usage>, failure: Option<ProviderError>) -> Vec<Value> {
    let mut t = Translator::new(plain_request());
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(t.chunk(chunk.to_string().as_bytes()).unwrap());
    }
    if let Some(u) = metered {
        t.metered(u);
    }
    out.extend(match failure {
        Some(e) => t.fail(&e),
        None => t.finish(),
    });
    out.iter().map(|e| serde_json::to_value(e).unwrap()).collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[test]
fn a_whole_answer_becomes_a_completed_response_that_says_it_was_not_stored() {
    let completion: ChatCompletion = serde_json::from_value(json!({
        "id": "chatcmpl-abc", "object": "chat.completion", "created": 1741476542, "model": "gpt-4.1-2025-04-14",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Checking.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
        "usage": {"prompt_tokens": 36, "completion_tokens": 87, "total_tokens": 123,
                  "prompt_tokens_details": {"cached_tokens": 6}, "completion_tokens_details": {"reasoning_tokens": 5}}
    }))
    .unwrap();
    let got = serde_json::to_value(response(completion, &plain_request())).unwrap();
    assert_eq!(
        got,
        json!({
            "id": "resp_abc", "object": "response", "created_at": 1741476542, "status": "completed",
            "error": null, "incomplete_details": null, "instructions": null, "max_output_tokens": null,
            "model": "gpt-4.1-2025-04-14",
            "output": [
                {"type": "message", "id": "msg_abc", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
                {"type": "function_call", "id": "fc_abc_0", "call_id": "call_1", "name": "get_weather",
                 "arguments": "{\"city\":\"Oslo\"}", "status": "completed"}
            ],
            "parallel_tool_calls": true, "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null}, "store": false, "temperature": null,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": null,
            "truncation": "disabled",
            "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 6, "cache_write_tokens": 0},
                      "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 123},
            "user": null, "metadata": {}
        })
    );
}

#[test]
fn an_answer_cut_at_its_length_limit_is_incomplete_for_max_output_tokens() {
    let completion: ChatCompletion = serde_json::from_value(json!({
        "id": "chatcmpl-x", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Once upon"}}]
    }))
    .unwrap();
    let got = response(completion, &plain_request());
    let got = serde_json::to_value(got).unwrap();
    assert_eq!(got["status"], "incomplete");
    assert_eq!(got["incomplete_details"], json!({"reason": "max_output_tokens"}));
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 7, "model": "m",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

#[test]
fn streamed_text_becomes_the_event_sequence_openai_streams_with_numbers_ids_and_indexes() {
    let got = events(
        &[
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hel"}), Value::Null),
            chunk(json!({"content": "lo"}), Value::Null),
            chunk(json!({}), json!("stop")),
            json!({"id": "chatcmpl-s1", "created": 7, "model": "m", "choices": [],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
        ],
        None,
        None,
    );
    assert_eq!(
        types(&got),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let numbers: Vec<u64> = got.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..10).collect::<Vec<_>>());
    assert_eq!(got[0]["response"]["status"], "in_progress");
    assert_eq!(got[0]["response"]["id"], "resp_s1");
    assert_eq!(
        got[2]["item"],
        json!({"type": "message", "id": "msg_s1", "status": "in_progress", "role": "assistant", "content": []})
    );
    assert_eq!(
        got[4],
        json!({"type": "response.output_text.delta", "item_id": "msg_s1", "output_index": 0, "content_index": 0,
               "delta": "Hel", "logprobs": [], "sequence_number": 4})
    );
    assert_eq!(got[6]["text"], "Hello");
    assert_eq!(got[8]["item"]["status"], "completed");
    assert_eq!(got[8]["item"]["content"][0]["text"], "Hello");
    assert_eq!(got[9]["response"]["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(got[9]["response"]["usage"]["total_tokens"], 5);
    assert_eq!(got[9]["response"]["status"], "completed");
}

#[test]
fn a_failure_after_the_first_event_is_response_failed_with_the_output_so_far() {
    let got = events(
        &[chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null)],
        None,
        Some(ProviderError::Interrupted("connection reset".into())),
    );
    let last = got.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert!(
        last["response"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connection reset")
    );
    assert_eq!(last["response"]["output"][0]["status"], "incomplete");
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], "Hel");
}

#[test]
fn a_budget_cut_ends_with_response_failed_budget_exceeded_after_the_length_chunk() {
    let got = events(
        &[
            chunk(json!({"content": "Hel"}), Value::Null),
            chunk(json!({}), json!("length")),
        ],
        Some(Usage::default()),
        Some(ProviderError::BudgetSpent("budget b is exhausted".into())),
    );
    let last = got.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["error"]["code"], "budget_exceeded");
    assert_eq!(
        types(&got)
            .iter()
            .filter(|t| t.starts_with("response.completed"))
            .count(),
        0
    );
}

/// The Anthropic transcript of a text block and a tool call, through the Anthropic provider's
/// translation and then this one: what a Responses client of an Anthropic route sees.
#[test]
fn an_anthropic_stream_with_text_and_a_tool_call_becomes_a_message_then_a_function_call() {
    let transcript = include_str!("../../providers/fixtures/anthropic/stream_tool_use.sse");
    let (chunks, usage, error) =
        translate_transcript(anthropic_to_openai::stream::Translator::new(true, 7), transcript);
    assert!(error.is_none());
    let got = events(&chunks, usage.last().copied(), None);
    assert_eq!(
        types(&got),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(got[9]["output_index"], 1);
    assert_eq!(got[9]["item"]["call_id"], "toolu_01Hq2Lp6cT4v8Ns1xK7bZrQa");
    assert_eq!(got[9]["item"]["name"], "get_weather");
    assert_eq!(got[12]["arguments"], "{\"city\": \"Oslo\"}");
    assert_eq!(got[12]["name"], "get_weather");
    let done = &got[14]["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], "Checking Oslo now.");
    assert_eq!(done["output"][1]["status"], "completed");
    assert_eq!(done["usage"]["input_tokens_details"]["cached_tokens"], 256);
}

#[test]
fn a_gemini_stream_with_a_whole_function_call_becomes_its_items_and_usage() {
    let transcript = include_str!("../../providers/fixtures/gemini/stream_function_call.sse");
    let translator = gemini_to_openai::stream::Translator::new(true, 7, "gemini-2.5-flash", "fallback");
    let (chunks, usage, error) = translate_transcript(translator, transcript);
    assert!(error.is_none());
    let got = events(&chunks, usage.last().copied(), None);
    let last = got.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    let output = &last["response"]["output"];
    assert_eq!(output[0]["content"][0]["text"], "Checking Oslo.");
    assert_eq!(output[1]["type"], "function_call");
    assert_eq!(output[1]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(output[1]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Oslo"})
    );
    assert_eq!(
        last["response"]["usage"]["output_tokens_details"]["reasoning_tokens"],
        18
    );
    let numbers: Vec<u64> = got.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..got.len() as u64).collect::<Vec<_>>());
}

#[test]
fn a_whole_response_streams_as_the_events_a_translated_stream_of_it_has() {
    let streamed = events(
        &[
            chunk(json!({"role": "assistant", "content": "Hello"}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                        "function": {"name": "f", "arguments": "{}"}}]}),
                json!("tool_calls"),
            ),
        ],
        None,
        None,
    );
    let whole: crate::formats::responses::Response =
        serde_json::from_value(streamed.last().unwrap()["response"].clone()).unwrap();
    let replayed: Vec<Value> = super::stream::response_events(&whole)
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    assert_eq!(replayed, streamed);
}

#[test]
fn a_call_to_a_namespaced_function_comes_back_with_its_namespace() {
    let request = request(json!({"model": "m", "input": "hi", "tools": [
        {"type": "namespace", "name": "agents", "tools": [{"type": "function", "name": "spawn"}]},
        {"type": "function", "name": "plain__name"}
    ]}));
    let completion: ChatCompletion = serde_json::from_value(json!({
        "id": "chatcmpl-n", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "agents__spawn", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "plain__name", "arguments": "{}"}}
            ]}}]
    }))
    .unwrap();
    let got = serde_json::to_value(response(completion, &request)).unwrap();
    assert_eq!(
        (&got["output"][0]["namespace"], &got["output"][0]["name"]),
        (&json!("agents"), &json!("spawn"))
    );
    assert_eq!(got["output"][1].get("namespace"), None);
    assert_eq!(got["output"][1]["name"], "plain__name");
}
