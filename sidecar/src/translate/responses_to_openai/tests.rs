use serde_json::{Value, json};

use super::request;
use crate::{
    formats::responses::ResponsesRequest,
    translate::{openai_to_anthropic, openai_to_gemini},
};

fn parse(v: Value) -> ResponsesRequest {
    serde_json::from_value(v).unwrap()
}

/// A tool-call round trip as the SDKs send its second turn.
fn round_trip() -> ResponsesRequest {
    parse(json!({
        "model": "gpt-4.1",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "Weather in Oslo?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}
            ]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
             "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
             "arguments": "{\"city\":\"Oslo\"}", "status": "completed",
             "extra_content": {"google": {"thought_signature": "c2ln"}}},
            {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp\":3}"}
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather now",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "max_output_tokens": 200,
        "reasoning": {"effort": "low"},
        "store": true,
        "stream": true,
        "include": ["reasoning.encrypted_content"]
    }))
}

#[test]
fn a_tool_call_round_trip_becomes_the_chat_conversation_with_the_call_in_the_assistant_turn() {
    let chat = request(&round_trip()).unwrap();
    let got = serde_json::to_value(&chat).unwrap();
    assert_eq!(
        got,
        json!({
            "model": "gpt-4.1",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Oslo?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
                ]},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
                     "extra_content": {"google": {"thought_signature": "c2ln"}}}
                ]},
                {"role": "tool", "content": "{\"temp\":3}", "tool_call_id": "call_1"}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 200,
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "reasoning_effort": "low"
        })
    );
}

#[test]
fn a_text_input_is_one_user_message_and_a_json_schema_format_is_the_response_format() {
    let chat = request(&parse(json!({
        "model": "m",
        "input": "Name a colour.",
        "text": {"format": {"type": "json_schema", "name": "colour", "strict": true,
                            "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}
    })))
    .unwrap();
    let got = serde_json::to_value(&chat).unwrap();
    assert_eq!(got["messages"], json!([{"role": "user", "content": "Name a colour."}]));
    assert_eq!(
        got["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "colour", "strict": true,
               "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}})
    );
    assert_eq!(got.get("stream"), None);
}

#[test]
fn the_round_trip_reaches_anthropic_as_tool_use_and_tool_result_blocks() {
    let chat = request(&round_trip()).unwrap();
    let anthropic = serde_json::to_value(openai_to_anthropic::request(&chat, "claude-x").unwrap()).unwrap();
    assert_eq!(anthropic["system"], json!("Be brief."));
    assert_eq!(anthropic["max_tokens"], 200);
    let messages = anthropic["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1]["content"][0], json!({"type": "text", "text": "Checking."}));
    assert_eq!(
        messages[1]["content"][1],
        json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}})
    );
    assert_eq!(messages[2]["content"][0]["type"], "tool_result");
    assert_eq!(messages[2]["content"][0]["tool_use_id"], "call_1");
    assert_eq!(anthropic["tool_choice"], json!({"type": "tool", "name": "get_weather"}));
}

#[test]
fn the_round_trip_reaches_gemini_as_function_call_and_response_parts() {
    let chat = request(&round_trip()).unwrap();
    let gemini = serde_json::to_value(openai_to_gemini::request(&chat).unwrap()).unwrap();
    assert_eq!(gemini["systemInstruction"]["parts"][0]["text"], "Be brief.");
    let contents = gemini["contents"].as_array().unwrap();
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(
        contents[1]["parts"][1]["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Oslo"}})
    );
    assert_eq!(contents[1]["parts"][1]["thoughtSignature"], "c2ln");
    assert_eq!(contents[2]["parts"][0]["functionResponse"]["name"], "get_weather");
    assert_eq!(gemini["generationConfig"]["maxOutputTokens"], 200);
}

#[test]
fn stored_state_and_uploaded_files_are_refused_naming_what_to_change() {
    let refused = |v: Value| request(&parse(v)).unwrap_err().to_string();
    let message = refused(json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}));
    assert!(message.contains("previous_response_id"), "{message}");
    let message = refused(json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}));
    assert!(
        message.contains("input[0]") && message.contains("item_reference"),
        "{message}"
    );
    let message = refused(json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_image", "file_id": "file-1"}]}]}));
    assert!(message.contains("image_url"), "{message}");
    let message = refused(json!({"model": "m", "input": []}));
    assert!(message.contains("at least one"), "{message}");
}

#[test]
fn namespaced_tools_are_offered_by_joined_names_and_hosted_tools_are_not_offered() {
    let chat = request(&parse(json!({
        "model": "m",
        "input": [
            {"role": "user", "content": "spawn"},
            {"type": "function_call", "call_id": "c1", "name": "spawn", "namespace": "agents", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"}
        ],
        "tools": [
            {"type": "web_search", "external_web_access": false},
            {"type": "namespace", "name": "agents", "description": "Sub-agents",
             "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}]}
        ]
    })))
    .unwrap();
    let got = serde_json::to_value(&chat).unwrap();
    assert_eq!(
        got["tools"],
        json!([{"type": "function", "function": {"name": "agents__spawn", "parameters": {"type": "object"}}}])
    );
    assert_eq!(got["messages"][1]["tool_calls"][0]["function"]["name"], "agents__spawn");
}
