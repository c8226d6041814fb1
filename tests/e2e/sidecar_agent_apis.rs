//! The APIs agents speak, on the real `sluice-sidecar` binary: legacy `/v1/completions` (passed
//! to OpenAI-protocol backends, refused elsewhere), Anthropic's `/v1/messages/count_tokens`
//! (counted by an Anthropic backend, estimated locally for the others, and said so), and
//! OpenAI's `/v1/responses` translated onto every provider, plain and streamed as OpenAI's
//! Responses events, with tool-call round trips, structured output and failures mid-stream;
//! an `openai` backend takes Responses requests as they are.
//!
//! Needs `cargo build -p sluice-sidecar` first (see `tests/support/sidecar.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::sse::{openai_events, read_sse};
use sluice_tests::upstream::{
    COMPLETION_TOKENS, OK_CONTENT, OK_PIECES, PROMPT_TOKENS, TOOL_ANSWER_PREFIX, TOOL_NAME, Upstream, Wire,
    anthropic::COUNTED_INPUT_TOKENS,
};

const NAMESPACE: &str = "team-a";

struct Harness {
    upstream: Upstream,
    sidecar: SidecarProcess,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// A route `name` with one backend; priced so that the cost header can be checked.
fn route(name: &str, provider: &str, base_url: &str, model: &str) -> String {
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         spec:\n  models: [{name}]\n  retry: {{attempts: 1}}\n  backends:\n  - name: {provider}\n    provider: {provider}\n    \
         model: {model}\n    baseUrl: {base_url}\n    credentialsRef: {{name: keys, key: apiKey}}\n    \
         pricing: {{inputPerMTok: \"1\", outputPerMTok: \"2\"}}\n"
    )
}

/// Route `mixed`: an Anthropic backend first, an OpenAI one second; the header
/// `x-sluice-tier: claude-only` keeps the Anthropic one alone.
fn mixed_route(anthropic: &str, openai: &str) -> String {
    let backend = |name: &str, provider: &str, base_url: &str, priority: u32| {
        format!(
            "  - name: {name}\n    provider: {provider}\n    model: mock-ok\n    baseUrl: {base_url}\n    \
             priority: {priority}\n    credentialsRef: {{name: keys, key: apiKey}}\n"
        )
    };
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: mixed, namespace: {NAMESPACE}}}\n\
         spec:\n  models: [mixed]\n  strategy: priority\n  retry: {{attempts: 1}}\n  backends:\n{}{}  rules:\n  \
         - when: {{header: {{name: x-sluice-tier, value: claude-only}}}}\n    backends: [claude]\n",
        backend("claude", "anthropic", anthropic, 0),
        backend("gpt", "openai", openai, 1),
    )
}

impl Harness {
    async fn start() -> Self {
        let upstream = Upstream::start(&Wire::ALL).await.unwrap();
        let mut manifest = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: keys, namespace: {NAMESPACE}}}\nstringData: {{apiKey: sk-test}}\n"
        );
        let (openai, anthropic, gemini) = (
            upstream.base_url_of(Wire::OpenAi),
            upstream.base_url_of(Wire::Anthropic),
            upstream.base_url_of(Wire::Gemini),
        );
        for (name, provider, base_url, model) in [
            ("fim", "openai-compatible", &openai, "mock-ok"),
            ("gpt", "openai", &openai, "mock-ok"),
            ("cut", "openai-compatible", &openai, "mock-cut-stream"),
            ("claude", "anthropic", &anthropic, "mock-ok"),
            ("claude-tool", "anthropic", &anthropic, "mock-tool"),
            ("gemini", "gemini", &gemini, "mock-ok"),
            ("gemini-tool", "gemini", &gemini, "mock-tool"),
        ] {
            manifest.push_str(&route(name, provider, base_url, model));
        }
        manifest.push_str(&mixed_route(&anthropic, &openai));
        manifest.push_str(&format!(
            "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: sim, namespace: {NAMESPACE}}}\n\
             spec:\n  models: [sim]\n  backends:\n  - name: simulator\n    provider: simulator\n    model: sim-1\n    \
             simulator: {{timeToFirstToken: 5ms, perToken: 1ms, outputTokens: 6, seed: 3}}\n"
        ));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("routes.yaml"), manifest).unwrap();
        let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
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

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.post(self.sidecar.url(path)).json(body).send().await.unwrap()
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_legacy_completion_passes_through_with_the_model_rewritten_and_its_cost() {
    let h = Harness::start().await;

    let response = h
        .post(
            "/v1/completions",
            &json!({"model": "fim", "prompt": "def add(a, b):", "suffix": "\n", "max_tokens": 20}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-route"), Some("team-a/fim"));
    // 12 prompt tokens at $1/M and 5 completion tokens at $2/M.
    let micro_usd = PROMPT_TOKENS + COMPLETION_TOKENS * 2;
    assert_eq!(
        header(&response, "x-sluice-cost-usd"),
        Some(format!("0.{micro_usd:06}").as_str())
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], OK_CONTENT);
    let sent = h.upstream.requests_to(Wire::OpenAi);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/v1/completions");
    assert_eq!(sent[0].body["model"], "mock-ok");
    assert_eq!(sent[0].body["suffix"], "\n");
}

#[tokio::test]
async fn a_streamed_legacy_completion_keeps_its_chunks_and_drops_the_usage_chunk_it_did_not_ask_for() {
    let h = Harness::start().await;

    let response = h
        .post(
            "/v1/completions",
            &json!({"model": "fim", "prompt": "Once", "stream": true}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let (events, done) = openai_events(&response.text().await.unwrap()).unwrap();
    assert!(done, "the stream ends with [DONE]");
    let text: String = events.iter().filter_map(|e| e["choices"][0]["text"].as_str()).collect();
    assert_eq!(text, OK_PIECES.concat());
    assert!(events.iter().all(|e| e.get("usage").is_none()), "{events:?}");
    let sent = h.upstream.requests_to(Wire::OpenAi);
    assert_eq!(
        sent[0].body["stream_options"]["include_usage"], true,
        "usage is always asked for"
    );
}

#[tokio::test]
async fn a_legacy_completion_for_a_route_without_an_openai_backend_is_a_400_unsupported_for_backend() {
    let h = Harness::start().await;

    for model in ["claude", "gemini"] {
        let response = h.post("/v1/completions", &json!({"model": model, "prompt": "x"})).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{model}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unsupported_for_backend", "{body}");
    }
    assert!(h.upstream.requests().is_empty(), "nothing reached an upstream");
}

#[tokio::test]
async fn count_tokens_is_the_anthropic_backends_own_count() {
    let h = Harness::start().await;

    let response = h
        .post(
            "/v1/messages/count_tokens",
            &json!({"model": "claude", "system": "Be brief.", "messages": [{"role": "user", "content": "Hello"}]}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-token-count"), Some("provider"));
    assert_eq!(header(&response, "x-sluice-backend"), Some("anthropic"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"input_tokens": COUNTED_INPUT_TOKENS}));
    let sent = h.upstream.requests_to(Wire::Anthropic);
    assert_eq!(sent[0].path, "/v1/messages/count_tokens");
    assert_eq!(sent[0].body["model"], "mock-ok");
    assert_eq!(sent[0].header("x-api-key"), Some("sk-test"));
}

#[tokio::test]
async fn count_tokens_for_another_provider_is_counted_here_and_marked_an_estimate() {
    let h = Harness::start().await;

    // "abcdefgh" is two tokens at four characters a token (the route's model has no public BPE).
    let response = h
        .post(
            "/v1/messages/count_tokens",
            &json!({"model": "gemini", "messages": [{"role": "user", "content": "abcdefgh"}]}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-token-count"), Some("estimate"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"input_tokens": 2}));
    assert!(h.upstream.requests().is_empty(), "nothing reached an upstream");
}

#[tokio::test]
async fn count_tokens_for_an_unknown_model_is_an_anthropic_shaped_404() {
    let h = Harness::start().await;

    let response = h
        .post(
            "/v1/messages/count_tokens",
            &json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "not_found_error");
}

/// `(event name, data)` of every event of a Responses stream; each name must repeat its data's
/// `type`, and the sequence numbers must count from 0 without a gap.
fn response_events(text: &str) -> Vec<(String, Value)> {
    let events: Vec<(String, Value)> = read_sse(text)
        .into_iter()
        .map(|(name, data)| {
            let name = name.unwrap_or_else(|| panic!("an event without a name: {data}"));
            let data: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(data["type"], name.as_str(), "the event name repeats the type");
            (name, data)
        })
        .collect();
    for (n, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], n as u64, "{data}");
    }
    events
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn a_response_is_served_by_every_provider_and_says_it_was_not_stored() {
    let h = Harness::start().await;

    for model in ["fim", "claude", "gemini", "sim"] {
        let response = h
            .post(
                "/v1/responses",
                &json!({"model": model, "input": "Say hello", "store": true}),
            )
            .await;

        assert_eq!(response.status(), StatusCode::OK, "{model}");
        assert_eq!(
            header(&response, "x-sluice-route"),
            Some(format!("team-a/{model}").as_str())
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["object"], "response", "{body}");
        assert_eq!(body["status"], "completed", "{body}");
        assert_eq!(body["store"], false, "{body}");
        assert!(body["id"].as_str().unwrap().starts_with("resp_"), "{body}");
        let message = &body["output"][0];
        assert_eq!(message["type"], "message", "{body}");
        assert!(message["id"].as_str().unwrap().starts_with("msg_"), "{body}");
        let text = message["content"][0]["text"].as_str().unwrap();
        if model == "sim" {
            assert!(!text.is_empty());
        } else {
            assert_eq!(text, OK_CONTENT, "{model}");
        }
        let usage = &body["usage"];
        assert!(usage["input_tokens"].as_u64().unwrap() > 0, "{body}");
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap())
        );
    }
}

#[tokio::test]
async fn a_streamed_response_from_anthropic_is_the_responses_event_sequence_with_usage_at_the_end() {
    let h = Harness::start().await;

    let response = h
        .post(
            "/v1/responses",
            &json!({"model": "claude", "input": "Say hello", "stream": true}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), Some("text/event-stream"));
    let events = response_events(&response.text().await.unwrap());
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(OK_PIECES.iter().map(|_| "response.output_text.delta"));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names(&events), expected);
    let deltas: String = events.iter().filter_map(|(_, d)| d["delta"].as_str()).collect();
    assert_eq!(deltas, OK_CONTENT);
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], OK_CONTENT);
    assert_eq!(done["usage"]["output_tokens"], COMPLETION_TOKENS);
}

/// The two turns of a tool call as the OpenAI SDK sends them, against `model`.
async fn tool_round_trip(h: &Harness, model: &str, stream: bool) -> (Value, Value) {
    let tools = json!([{"type": "function", "name": TOOL_NAME, "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let ask = json!({"role": "user", "content": "What is the weather in Paris?"});
    let first = h
        .post(
            "/v1/responses",
            &json!({"model": model, "input": [ask], "tools": tools, "stream": stream}),
        )
        .await;
    assert_eq!(first.status(), StatusCode::OK, "{model}");
    let first: Value = if stream {
        let events = response_events(&first.text().await.unwrap());
        assert!(
            names(&events).contains(&"response.function_call_arguments.done"),
            "{model}"
        );
        events.last().unwrap().1["response"].clone()
    } else {
        first.json().await.unwrap()
    };
    let call = first["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "function_call")
        .unwrap_or_else(|| panic!("no function_call in {first}"))
        .clone();
    assert_eq!(call["name"], TOOL_NAME);
    assert!(call["id"].as_str().unwrap().starts_with("fc_"), "{call}");
    let mut input = vec![ask];
    input.extend(first["output"].as_array().unwrap().iter().cloned());
    input.push(json!({"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 21C"}));
    let second = h
        .post(
            "/v1/responses",
            &json!({"model": model, "input": input, "tools": tools}),
        )
        .await;
    assert_eq!(second.status(), StatusCode::OK, "{model}: {:?}", second.text().await);
    (call, second.json().await.unwrap())
}

#[tokio::test]
async fn a_tool_call_round_trip_completes_through_anthropic_and_gemini_plain_and_streamed() {
    let h = Harness::start().await;

    for (model, stream) in [
        ("claude-tool", false),
        ("claude-tool", true),
        ("gemini-tool", false),
        ("gemini-tool", true),
    ] {
        let (call, answer) = tool_round_trip(&h, model, stream).await;

        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args["city"], "Paris", "{model}");
        let text = answer["output"][0]["content"][0]["text"].as_str().unwrap();
        assert_eq!(text, format!("{TOOL_ANSWER_PREFIX}sunny, 21C"), "{model} {stream}");
    }
}

#[tokio::test]
async fn a_json_schema_text_format_reaches_the_upstream_as_the_response_format() {
    let h = Harness::start().await;
    let schema = json!({"type": "object", "properties": {"greeting": {"type": "string"}}, "required": ["greeting"]});

    let response = h
        .post(
            "/v1/responses",
            &json!({"model": "fim", "input": "Greet", "max_output_tokens": 50,
                    "text": {"format": {"type": "json_schema", "name": "greeting", "schema": schema, "strict": true}}}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["text"]["format"]["name"], "greeting", "the format is echoed");
    assert_eq!(body["max_output_tokens"], 50);
    let sent = h.upstream.requests_to(Wire::OpenAi);
    assert_eq!(
        sent[0].body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "greeting", "schema": schema, "strict": true}})
    );
    assert_eq!(sent[0].body["max_tokens"], 50);
}

#[tokio::test]
async fn a_json_schema_and_a_reasoning_effort_reach_anthropic_and_gemini_in_their_own_terms() {
    let h = Harness::start().await;
    let schema = json!({"type": "object", "properties": {"greeting": {"type": "string"}}, "required": ["greeting"],
                        "additionalProperties": false});
    let body = |model: &str| {
        json!({"model": model, "input": "Greet", "max_output_tokens": 3000, "reasoning": {"effort": "low"},
               "text": {"format": {"type": "json_schema", "name": "greeting", "schema": schema, "strict": true}}})
    };

    for model in ["claude", "gemini"] {
        let response = h.post("/v1/responses", &body(model)).await;
        assert_eq!(response.status(), StatusCode::OK, "{model}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            answer["text"]["format"]["name"], "greeting",
            "{model}: the format is echoed"
        );
        assert_eq!(answer["reasoning"]["effort"], "low", "{model}: the effort is echoed");
    }

    let sent = h.upstream.requests_to(Wire::Anthropic);
    assert_eq!(
        sent[0].body["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema}})
    );
    assert_eq!(
        sent[0].body["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
    assert_eq!(sent[0].body["max_tokens"], 3000);
    let sent = h.upstream.requests_to(Wire::Gemini);
    let config = &sent[0].body["generationConfig"];
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(config["responseJsonSchema"], schema);
    assert_eq!(
        config["thinkingConfig"],
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
}

#[tokio::test]
async fn an_upstream_that_breaks_off_mid_stream_ends_the_stream_with_response_failed() {
    let h = Harness::start().await;

    let response = h
        .post(
            "/v1/responses",
            &json!({"model": "cut", "input": "Say hello", "stream": true}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let events = response_events(&response.text().await.unwrap());
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "response.failed", "{events:?}");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert!(!names(&events).contains(&"response.completed"));
}

#[tokio::test]
async fn stored_state_is_refused_honestly() {
    let h = Harness::start().await;

    let response = h
        .post(
            "/v1/responses",
            &json!({"model": "claude", "input": "hi", "previous_response_id": "resp_1"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "previous_response_id", "{body}");

    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = h
            .http
            .request(method.clone(), h.sidecar.url("/v1/responses/resp_1"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
    assert!(h.upstream.requests().is_empty());
}

#[tokio::test]
async fn an_openai_backend_takes_the_response_request_as_it_is_and_its_answer_comes_back_untouched() {
    let h = Harness::start().await;

    let response = h
        .post(
            "/v1/responses",
            &json!({"model": "gpt", "input": "Say hello", "previous_response_id": "resp_prev",
                    "tools": [{"type": "web_search"}], "include": ["reasoning.encrypted_content"]}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend"), Some("openai"));
    // 12 input tokens (4 of them cached, unpriced here so billed as input) at $1/M, 5 output at $2/M.
    let micro_usd = PROMPT_TOKENS + COMPLETION_TOKENS * 2;
    assert_eq!(
        header(&response, "x-sluice-cost-usd"),
        Some(format!("0.{micro_usd:06}").as_str())
    );
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("resp_mock_"), "{body}");
    assert_eq!(body["previous_response_id"], "resp_prev");
    assert_eq!(body["output"][0]["content"][0]["text"], OK_CONTENT);
    let sent = h.upstream.requests_to(Wire::OpenAi);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/v1/responses");
    assert_eq!(sent[0].body["model"], "mock-ok");
    assert_eq!(
        sent[0].body["tools"],
        json!([{"type": "web_search"}]),
        "passed as it came"
    );
    assert_eq!(sent[0].body["include"], json!(["reasoning.encrypted_content"]));
}

#[tokio::test]
async fn an_openai_backends_streamed_events_pass_through_named_and_numbered_as_it_sent_them() {
    let h = Harness::start().await;

    let response = h
        .post(
            "/v1/responses",
            &json!({"model": "gpt", "input": "Say hello", "stream": true}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let events = response_events(&response.text().await.unwrap());
    assert_eq!(events.first().unwrap().0, "response.created");
    assert_eq!(events.last().unwrap().0, "response.completed");
    let deltas: String = events.iter().filter_map(|(_, d)| d["delta"].as_str()).collect();
    assert_eq!(deltas, OK_CONTENT);
    let id = events.last().unwrap().1["response"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("resp_mock_"), "the upstream's own Response: {id}");
}

#[tokio::test]
async fn previous_response_id_on_a_mixed_route_is_served_by_its_openai_backend_and_refused_only_when_none_may_serve_it()
{
    let h = Harness::start().await;

    // Without it, the route's first backend (Anthropic) serves, translated.
    let response = h.post("/v1/responses", &json!({"model": "mixed", "input": "hi"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend"), Some("claude"));

    // With it, only the OpenAI backend may serve, and it takes the request as it is.
    let response = h
        .post(
            "/v1/responses",
            &json!({"model": "mixed", "input": "and then?", "previous_response_id": "resp_prev"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend"), Some("gpt"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["previous_response_id"], "resp_prev");
    let sent = h.upstream.requests_to(Wire::OpenAi);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/v1/responses");
    assert_eq!(sent[0].body["previous_response_id"], "resp_prev");

    // A rule that leaves only the Anthropic backend leaves nothing that may serve it: a 400
    // naming the field, and nothing sent upstream.
    let before = h.upstream.requests().len();
    let response = h
        .http
        .post(h.sidecar.url("/v1/responses"))
        .header("x-sluice-tier", "claude-only")
        .json(&json!({"model": "mixed", "input": "and then?", "previous_response_id": "resp_prev"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "previous_response_id", "{body}");
    assert_eq!(h.upstream.requests().len(), before);
}
