//! `POST /v1/messages` on the real `sluice-sidecar` binary: Anthropic Messages requests served
//! through the same routes by an OpenAI-compatible backend, an Anthropic one, a Gemini one and
//! the simulator, answered in Anthropic's format (streamed as Anthropic's events), with
//! Anthropic-shaped errors.
//!
//! Needs `cargo build -p sluice-sidecar` first (see `tests/support/sidecar.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::sse::read_sse;
use sluice_tests::upstream::{
    CACHED_TOKENS, COMPLETION_TOKENS, OK_CONTENT, OK_PIECES, PROMPT_TOKENS, RETRY_AFTER_SECS, TOOL_ANSWER_PREFIX,
    TOOL_NAME, Upstream, Wire, anthropic, openai,
};

const NAMESPACE: &str = "team-a";

struct Harness {
    /// One upstream for the three providers' backends.
    upstream: Upstream,
    sidecar: SidecarProcess,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

fn route(name: &str, provider: &str, base_url: &str, model: &str) -> String {
    let credentials = if provider == "simulator" {
        "\n    simulator: {timeToFirstToken: 5ms, perToken: 1ms, outputTokens: 6, seed: 3}".to_owned()
    } else {
        format!("\n    baseUrl: {base_url}\n    credentialsRef: {{name: keys, key: apiKey}}")
    };
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         spec:\n  models: [{name}]\n  retry: {{attempts: 1}}\n  backends:\n  - name: {provider}\n    provider: {provider}\n    \
         model: {model}{credentials}\n"
    )
}

impl Harness {
    async fn start() -> Self {
        Self::start_with_args(&[]).await
    }

    async fn start_with_args(args: &[&str]) -> Self {
        let upstream = Upstream::start(&Wire::ALL).await.unwrap();
        let mut manifest = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: keys, namespace: {NAMESPACE}}}\nstringData: {{apiKey: sk-test}}\n"
        );
        let compatible = upstream.base_url_of(Wire::OpenAi);
        for (name, model) in [
            ("chat", "mock-ok"),
            ("tool", "mock-tool"),
            ("fails-400", "mock-400"),
            ("fails-429", "mock-429"),
            ("fails-500", "mock-500"),
            ("cut-stream", "mock-cut-stream"),
        ] {
            manifest.push_str(&route(name, "openai-compatible", &compatible, model));
        }
        let (anthropic, gemini) = (
            upstream.base_url_of(Wire::Anthropic),
            upstream.base_url_of(Wire::Gemini),
        );
        manifest.push_str(&route("claude", "anthropic", &anthropic, "mock-ok"));
        manifest.push_str(&route("claude-tool", "anthropic", &anthropic, "mock-tool"));
        manifest.push_str(&route("gemini", "gemini", &gemini, "mock-ok"));
        manifest.push_str(&route("gemini-tool", "gemini", &gemini, "mock-tool"));
        manifest.push_str(&route("sim", "simulator", "", "sim-1"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("routes.yaml"), manifest).unwrap();
        let sidecar = SidecarProcess::start_with_args(dir.path(), args).await.unwrap();
        // A client timeout turns a hang into a failure instead of a stuck test.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            upstream,
            sidecar,
            _dir: dir,
            http,
        }
    }

    async fn messages(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.sidecar.url("/v1/messages"))
            .header("x-api-key", "client-key")
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

fn hello(model: &str) -> Value {
    json!({"model": model, "max_tokens": 256, "system": "Be brief.",
           "messages": [{"role": "user", "content": "Say hello"}]})
}

fn streamed(mut request: Value) -> Value {
    request["stream"] = json!(true);
    request
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `(event name, data)` of every event; each event's name must repeat its data's `type`.
fn events_of(text: &str) -> Vec<(String, Value)> {
    read_sse(text)
        .into_iter()
        .map(|(name, data)| {
            let name = name.unwrap_or_else(|| panic!("an event without a name: {data}"));
            let data: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(data["type"], name.as_str(), "the event name repeats the type");
            (name, data)
        })
        .collect()
}

/// The message the events build, as the Anthropic SDKs accumulate it.
fn accumulate(events: &[(String, Value)]) -> Value {
    let mut message = Value::Null;
    let mut json_bufs: Vec<String> = Vec::new();
    for (name, data) in events {
        match name.as_str() {
            "message_start" => message = data["message"].clone(),
            "content_block_start" => {
                message["content"]
                    .as_array_mut()
                    .unwrap()
                    .push(data["content_block"].clone());
                json_bufs.push(String::new());
            }
            "content_block_delta" => {
                let i = data["index"].as_u64().unwrap() as usize;
                let block = &mut message["content"][i];
                match data["delta"]["type"].as_str().unwrap() {
                    "text_delta" => {
                        let text = format!(
                            "{}{}",
                            block["text"].as_str().unwrap(),
                            data["delta"]["text"].as_str().unwrap()
                        );
                        block["text"] = json!(text);
                    }
                    "input_json_delta" => {
                        json_bufs[i].push_str(data["delta"]["partial_json"].as_str().unwrap());
                        block["input"] = serde_json::from_str(&json_bufs[i]).unwrap_or(json!({}));
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "message_delta" => {
                message["stop_reason"] = data["delta"]["stop_reason"].clone();
                for (k, v) in data["usage"].as_object().unwrap() {
                    message["usage"][k] = v.clone();
                }
            }
            _ => {}
        }
    }
    message
}

#[track_caller]
fn assert_anthropic_error(body: &Value, kind: &str) {
    let keys: BTreeSet<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["type", "error"]), "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

fn openai_usage_as_anthropic() -> Value {
    json!({"input_tokens": PROMPT_TOKENS - CACHED_TOKENS, "output_tokens": COMPLETION_TOKENS,
           "cache_creation_input_tokens": 0, "cache_read_input_tokens": CACHED_TOKENS})
}

#[tokio::test]
async fn a_message_served_by_an_openai_backend_comes_back_in_anthropic_format() {
    let h = Harness::start().await;

    let response = h.messages(&hello("chat")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend"), Some("openai-compatible"));
    assert_eq!(header(&response, "x-sluice-route"), Some("team-a/chat"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"id": "msg_mock-1", "type": "message", "role": "assistant", "model": "mock-ok",
               "content": [{"type": "text", "text": OK_CONTENT}], "stop_reason": "end_turn", "stop_sequence": null,
               "usage": openai_usage_as_anthropic()})
    );
    let seen = h.upstream.requests_to(Wire::OpenAi);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(
        seen[0].body,
        json!({"model": "mock-ok", "max_completion_tokens": 256,
               "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]})
    );
}

#[tokio::test]
async fn a_streamed_message_from_an_openai_backend_is_anthropics_event_sequence() {
    let h = Harness::start().await;

    let response = h.messages(&streamed(hello("chat"))).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-type").is_some_and(|t| t.starts_with("text/event-stream")));
    let events = events_of(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected = vec!["message_start", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", OK_PIECES.len()));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    assert_eq!(events[0].1["message"]["stop_reason"], Value::Null);
    let message = accumulate(&events);
    assert_eq!(message["content"], json!([{"type": "text", "text": OK_CONTENT}]));
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["usage"], openai_usage_as_anthropic());
    let sent = &h.upstream.requests_to(Wire::OpenAi)[0].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn a_tool_use_round_trip_through_an_openai_backend() {
    let h = Harness::start().await;
    let tools = json!([{"name": TOOL_NAME, "description": "Current weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    for stream in [false, true] {
        let mut request = json!({"model": "tool", "max_tokens": 256, "stream": stream, "tools": tools,
            "messages": [{"role": "user", "content": "Weather in Paris?"}]});

        let response = h.messages(&request).await;
        let first = if stream {
            accumulate(&events_of(&response.text().await.unwrap()))
        } else {
            response.json().await.unwrap()
        };

        assert_eq!(first["stop_reason"], "tool_use", "stream {stream}");
        let call = first["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "tool_use")
            .unwrap()
            .clone();
        assert_eq!(call["name"], TOOL_NAME);
        assert_eq!(call["input"], json!({"city": "Paris"}));
        let sent = h.upstream.requests_to(Wire::OpenAi).last().unwrap().body.clone();
        assert_eq!(sent["tools"][0]["function"]["name"], TOOL_NAME);

        request["messages"].as_array_mut().unwrap().extend([
            json!({"role": "assistant", "content": first["content"]}),
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18 C"}]}),
        ]);
        let response = h.messages(&request).await;
        let second = if stream {
            accumulate(&events_of(&response.text().await.unwrap()))
        } else {
            response.json().await.unwrap()
        };

        assert_eq!(
            second["content"][0]["text"],
            format!("{TOOL_ANSWER_PREFIX}18 C"),
            "stream {stream}"
        );
        assert_eq!(second["stop_reason"], "end_turn");
        let sent = h.upstream.requests_to(Wire::OpenAi).last().unwrap().body.clone();
        assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], call["id"]);
        assert_eq!(
            sent["messages"][2],
            json!({"role": "tool", "tool_call_id": call["id"], "content": "18 C"})
        );
    }
}

#[tokio::test]
async fn an_anthropic_backend_answers_with_its_usage_and_cache_counts_intact() {
    let h = Harness::start().await;

    let body: Value = h.messages(&hello("claude")).await.json().await.unwrap();

    assert_eq!(body["id"], "msg_mock_1");
    assert_eq!(body["content"], json!([{"type": "text", "text": OK_CONTENT}]));
    assert_eq!(
        body["usage"],
        json!({"input_tokens": anthropic::INPUT_TOKENS, "output_tokens": anthropic::OUTPUT_TOKENS,
               "cache_creation_input_tokens": anthropic::CACHE_CREATION_TOKENS,
               "cache_read_input_tokens": anthropic::CACHE_READ_TOKENS})
    );
    let sent = &h.upstream.requests_to(Wire::Anthropic)[0].body;
    assert_eq!(sent["max_tokens"], 256);
    assert_eq!(sent["system"], "Be brief.");
}

#[tokio::test]
async fn tool_use_streams_from_anthropic_and_gemini_backends_alike() {
    let h = Harness::start().await;
    let tools =
        json!([{"name": TOOL_NAME, "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    for model in ["claude-tool", "gemini-tool"] {
        let request = json!({"model": model, "max_tokens": 256, "stream": true, "tools": tools,
            "messages": [{"role": "user", "content": "Weather in Paris?"}]});

        let message = accumulate(&events_of(&h.messages(&request).await.text().await.unwrap()));

        assert_eq!(message["stop_reason"], "tool_use", "{model}");
        let kinds: Vec<&str> = message["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["text", "tool_use"], "{model}");
        assert_eq!(message["content"][1]["input"], json!({"city": "Paris"}), "{model}");
    }
}

#[tokio::test]
async fn a_gemini_backend_and_the_simulator_answer_in_anthropic_format_too() {
    let h = Harness::start().await;

    let gemini: Value = h.messages(&hello("gemini")).await.json().await.unwrap();
    assert_eq!(gemini["content"], json!([{"type": "text", "text": OK_CONTENT}]));
    assert_eq!(gemini["stop_reason"], "end_turn");
    assert_eq!(
        h.upstream.requests_to(Wire::Gemini)[0].body["generationConfig"],
        json!({"maxOutputTokens": 256})
    );

    let simulated: Value = h.messages(&hello("sim")).await.json().await.unwrap();
    assert_eq!(simulated["type"], "message");
    assert_eq!(simulated["usage"]["output_tokens"], 6);
    let text = simulated["content"][0]["text"].as_str().unwrap();
    assert_eq!(text.split(' ').count(), 6);

    let events = events_of(&h.messages(&streamed(hello("sim"))).await.text().await.unwrap());
    let message = accumulate(&events);
    assert_eq!(message["usage"]["output_tokens"], 6);
    assert_eq!(events.last().unwrap().0, "message_stop");
}

#[tokio::test]
async fn errors_are_anthropic_shaped_with_honest_statuses() {
    let h = Harness::start().await;

    let unknown = h.messages(&hello("nope")).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_anthropic_error(&unknown.json().await.unwrap(), "not_found_error");

    let no_cap = h
        .messages(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(no_cap.status(), StatusCode::BAD_REQUEST);
    let body: Value = no_cap.json().await.unwrap();
    assert_anthropic_error(&body, "invalid_request_error");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("max_tokens"),
        "{body}"
    );

    let malformed = h
        .http
        .post(h.sidecar.url("/v1/messages"))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_anthropic_error(&malformed.json().await.unwrap(), "invalid_request_error");

    let upstream_400 = h.messages(&hello("fails-400")).await;
    assert_eq!(upstream_400.status(), StatusCode::BAD_REQUEST);
    let body: Value = upstream_400.json().await.unwrap();
    assert_anthropic_error(&body, "invalid_request_error");
    assert_eq!(body["error"]["message"], openai::BAD_REQUEST_MESSAGE);

    let limited = h.messages(&hello("fails-429")).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), Some(RETRY_AFTER_SECS));
    assert_eq!(header(&limited, "x-sluice-backend"), Some("openai-compatible"));
    assert_anthropic_error(&limited.json().await.unwrap(), "rate_limit_error");

    let failed = h.messages(&hello("fails-500")).await;
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    assert_anthropic_error(&failed.json().await.unwrap(), "api_error");

    let wrong_method = h.http.get(h.sidecar.url("/v1/messages")).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_body_over_the_limit_is_an_anthropic_413() {
    let h = Harness::start_with_args(&["--max-body-bytes", "1024"]).await;
    let mut request = hello("chat");
    request["messages"][0]["content"] = json!("a".repeat(2048));

    let response = h.messages(&request).await;

    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_anthropic_error(&response.json().await.unwrap(), "request_too_large");
}

#[tokio::test]
async fn an_upstream_break_mid_stream_ends_with_an_error_event_and_no_message_stop() {
    let h = Harness::start().await;

    let response = h.messages(&streamed(hello("cut-stream"))).await;

    assert_eq!(response.status(), StatusCode::OK);
    let text = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the stream must end, not hang")
        .unwrap();
    let events = events_of(&text);
    let (name, error) = events.last().unwrap();
    assert_eq!(name, "error", "{text}");
    assert_eq!(error["error"]["type"], "api_error");
    assert!(
        events.iter().all(|(n, _)| n != "message_stop" && n != "message_delta"),
        "{text}"
    );
    assert_eq!(events[0].0, "message_start");
}
