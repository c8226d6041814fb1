#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::StatusCode;
use opentelemetry::{Key, Value};
use serde_json::json;
use sluice_crds::Tokens;

use super::*;

fn get(attributes: &[KeyValue], key: &str) -> Option<Value> {
    attributes
        .iter()
        .find(|kv| kv.key == Key::from(key.to_owned()))
        .map(|kv| kv.value.clone())
}

fn chat(body: serde_json::Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

#[test]
fn a_chat_request_names_its_operation_model_cap_and_temperature_and_nothing_it_says() {
    let request = chat(
        json!({"model": "gpt-4o", "max_completion_tokens": 64, "temperature": 0.2,
        "messages": [{"role": "user", "content": "the secret prompt"}]}),
    );
    let attributes = request_attributes("gpt-4o", Asked::Chat(&request));
    assert_eq!(get(&attributes, "gen_ai.operation.name"), Some(Value::from("chat")));
    assert_eq!(get(&attributes, "gen_ai.request.model"), Some(Value::from("gpt-4o")));
    assert_eq!(get(&attributes, "gen_ai.request.max_tokens"), Some(Value::I64(64)));
    assert_eq!(get(&attributes, "gen_ai.request.temperature"), Some(Value::F64(0.2)));
    assert!(!format!("{attributes:?}").contains("secret prompt"));
}

#[test]
fn an_embeddings_request_is_the_embeddings_operation_without_sampling_parameters() {
    let request: EmbeddingsRequest = serde_json::from_value(json!({"model": "e", "input": "x"})).unwrap();
    let attributes = request_attributes("e", Asked::Embeddings(&request));
    assert_eq!(
        get(&attributes, "gen_ai.operation.name"),
        Some(Value::from("embeddings"))
    );
    assert_eq!(attributes.len(), 2);
}

#[test]
fn each_provider_has_its_conventional_name() {
    let names = [
        (Provider::Openai, "openai"),
        (Provider::OpenaiCompatible, "openai"),
        (Provider::Anthropic, "anthropic"),
        (Provider::Gemini, "gcp.gemini"),
        (Provider::AzureOpenai, "azure.ai.openai"),
        (Provider::Bedrock, "aws.bedrock"),
        (Provider::Vertex, "gcp.vertex_ai"),
        (Provider::Simulator, "sluice.simulator"),
    ];
    for (provider, name) in names {
        assert_eq!(provider_name(provider), name);
    }
}

#[test]
fn a_whole_answer_gives_its_id_model_and_finish_reasons_but_not_its_text() {
    let body = json!({"id": "chatcmpl-1", "model": "gpt-4o-2024", "choices": [
        {"message": {"content": "the secret answer"}, "finish_reason": "stop"},
        {"message": {"content": "more"}, "finish_reason": "length"}]});
    let attributes = response_attributes(&serde_json::to_vec(&body).unwrap());
    assert_eq!(get(&attributes, "gen_ai.response.id"), Some(Value::from("chatcmpl-1")));
    assert_eq!(
        get(&attributes, "gen_ai.response.model"),
        Some(Value::from("gpt-4o-2024"))
    );
    assert_eq!(
        get(&attributes, "gen_ai.response.finish_reasons"),
        Some(Value::Array(opentelemetry::Array::String(vec![
            "stop".into(),
            "length".into()
        ])))
    );
    assert!(!format!("{attributes:?}").contains("secret answer"));
    assert!(response_attributes(b"not json").is_empty());
}

#[test]
fn a_failed_attempt_is_typed_by_its_status_or_its_class() {
    let status = ProviderError::Status {
        status: StatusCode::SERVICE_UNAVAILABLE,
        retry_after: None,
        body: bytes::Bytes::new(),
    };
    assert_eq!(error_type(&status), "503");
    assert_eq!(error_type(&ProviderError::Connect("refused".into())), "connect");
    assert_eq!(
        error_type(&ProviderError::Timeout(crate::wire::TimeoutPhase::FirstByte)),
        "timeout"
    );
}

#[test]
fn a_finished_request_carries_tokens_cost_attempts_and_its_time_to_first_chunk() {
    let finished = Ending {
        outcome: Outcome::Ok,
        backend: Some(("secondary", Provider::Anthropic)),
        usage: Some(Usage {
            input: Tokens(12),
            cached_input: Tokens(0),
            cache_write_input: Tokens(0),
            output: Tokens(5),
            estimated: false,
        }),
        cost: MicroUsd::new(1500),
        attempts: 2,
        time_to_first_token: Some(Duration::from_millis(250)),
        cache: "miss",
    };
    let attributes = finished_attributes(&finished);
    assert_eq!(get(&attributes, "gen_ai.usage.input_tokens"), Some(Value::I64(12)));
    assert_eq!(get(&attributes, "gen_ai.usage.output_tokens"), Some(Value::I64(5)));
    assert_eq!(get(&attributes, "sluice.cost_usd"), Some(Value::from("0.001500")));
    assert_eq!(get(&attributes, "sluice.attempts"), Some(Value::I64(2)));
    assert_eq!(get(&attributes, "sluice.cache"), Some(Value::from("miss")));
    assert_eq!(get(&attributes, "sluice.backend"), Some(Value::from("secondary")));
    assert_eq!(get(&attributes, "gen_ai.provider.name"), Some(Value::from("anthropic")));
    assert_eq!(
        get(&attributes, "gen_ai.response.time_to_first_chunk"),
        Some(Value::F64(0.25))
    );
    assert_eq!(get(&attributes, "error.type"), None);
}

#[test]
fn a_request_that_every_backend_failed_has_an_error_type() {
    let finished = Ending {
        outcome: Outcome::UpstreamError,
        backend: None,
        usage: None,
        cost: MicroUsd::ZERO,
        attempts: 3,
        time_to_first_token: None,
        cache: "",
    };
    let attributes = finished_attributes(&finished);
    assert_eq!(get(&attributes, "error.type"), Some(Value::from("upstream_error")));
    assert_eq!(get(&attributes, "sluice.cache"), None);
}
