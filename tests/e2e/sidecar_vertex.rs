//! The real `sluice-sidecar` binary serving OpenAI (and Anthropic) clients from Vertex AI
//! backends at the in-test upstream (`tests/support/upstream/vertex.rs`): Gemini and Claude
//! models, plain, streamed and with tools; access tokens from the throwaway service-account key
//! (the upstream checks the JWT's signature) or from the metadata server (workload identity),
//! fetched once and reused, fetched again after a 401 and the call retried once; a 429 fails
//! over; the key and the tokens stay out of `/config`, the log and error bodies.
//!
//! Needs `cargo build -p sluice-sidecar -p sluice-tests --bins` first (see `tests/support/sidecar.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod provider;

use std::time::Duration;

use provider::{assert_openai_error, header, hello, streamed, weather_tool};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::sse::openai_events;
use sluice_tests::upstream::vertex::{
    self, ANTHROPIC_VERSION, METADATA_TOKEN_PATH, METADATA_TOKEN_PREFIX, TOKEN_PATH, service_account_key,
};
use sluice_tests::upstream::{OK_CONTENT, TOOL_NAME, Upstream, Wire, anthropic, tool_arguments};

const NAMESPACE: &str = "team-a";
const PROJECT: &str = "sluice-test-project";
const REGION: &str = "us-east5";

/// How a route's one backend gets its tokens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Identity {
    /// The service-account key in the Secret.
    Key,
    /// The metadata server (no `credentialsRef`).
    Metadata,
}

/// A route: its name (its one model alias), then `(backend, publisher, upstream model)` in
/// priority order.
type RouteSpec = (&'static str, &'static [(&'static str, &'static str, &'static str)]);

const ROUTES: &[RouteSpec] = &[
    ("gemini", &[("vertex-gemini", "google", "mock-ok")]),
    ("gemini-tool", &[("vertex-gemini", "google", "mock-tool")]),
    ("gemini-quote", &[("vertex-gemini", "google", "mock-quote-key")]),
    ("claude", &[("vertex-claude", "anthropic", "mock-ok")]),
    ("claude-tool", &[("vertex-claude", "anthropic", "mock-tool")]),
    ("embed", &[("vertex-gemini", "google", "mock-ok")]),
    (
        "failover",
        &[
            ("vertex-busy", "google", "mock-429"),
            ("vertex-claude", "anthropic", "mock-ok"),
        ],
    ),
];

fn manifest(origin: &str, identity: Identity) -> String {
    let mut out = String::new();
    if identity == Identity::Key {
        out.push_str(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: vertex-key, namespace: {NAMESPACE}}}\n\
             stringData:\n  key.json: |\n    {}\n",
            service_account_key(origin)
        ));
    }
    for (name, backends) in ROUTES {
        out.push_str(&format!(
            "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
             spec:\n  models: [{name}]\n  retry: {{attempts: {}}}\n  backends:\n",
            backends.len()
        ));
        for (priority, (backend, publisher, model)) in backends.iter().enumerate() {
            out.push_str(&format!(
                "  - name: {backend}\n    provider: vertex\n    baseUrl: {origin}\n    model: {model}\n    \
                 priority: {priority}\n    vertex: {{project: {PROJECT}, region: {REGION}, publisher: {publisher}}}\n"
            ));
            if identity == Identity::Key {
                out.push_str("    credentialsRef: {name: vertex-key, key: key.json}\n");
            }
        }
    }
    out
}

/// One upstream (Vertex and its token issuers), one manifest directory, one sidecar.
struct Harness {
    upstream: Upstream,
    sidecar: SidecarProcess,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Harness {
    async fn start(identity: Identity) -> Self {
        let upstream = Upstream::start(&[Wire::Vertex]).await.unwrap();
        let origin = upstream.base_url();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("routes.yaml"), manifest(&origin, identity)).unwrap();
        let metadata_host = upstream.addr.to_string();
        let env = [("GCE_METADATA_HOST", metadata_host.as_str())];
        let env: &[(&str, &str)] = if identity == Identity::Metadata { &env } else { &[] };
        let sidecar = SidecarProcess::start_with_env(dir.path(), &[], env).await.unwrap();
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

    async fn chat(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/chat/completions", body).await
    }

    /// The requests to `publisher`'s models, oldest first.
    fn model_calls(&self, publisher: &str) -> Vec<sluice_tests::upstream::RecordedRequest> {
        let prefix = format!("/v1/projects/{PROJECT}/locations/{REGION}/publishers/{publisher}/models/");
        let mut all = self.upstream.requests();
        all.retain(|r| r.path.starts_with(&prefix));
        all
    }
}

/// The path of `model`'s `method` under `publisher`.
fn model_path(publisher: &str, model: &str, method: &str) -> String {
    format!("/v1/projects/{PROJECT}/locations/{REGION}/publishers/{publisher}/models/{model}:{method}")
}

/// The text of a chat completion's first choice.
async fn content(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["choices"][0]["message"]["content"].as_str().unwrap().to_owned()
}

/// The content and the tool calls' names and arguments, joined, of a streamed answer.
async fn streamed_answer(response: reqwest::Response) -> (String, Vec<(String, String)>) {
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let mut content = String::new();
    let mut calls: Vec<(String, String)> = Vec::new();
    let (chunks, done) = openai_events(&text).unwrap();
    assert!(done, "the stream ends with [DONE]: {text}");
    for chunk in chunks {
        let Some(delta) = chunk["choices"].get(0).map(|c| &c["delta"]) else {
            continue;
        };
        content.push_str(delta["content"].as_str().unwrap_or_default());
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap() as usize;
            if calls.len() <= index {
                calls.resize(index + 1, Default::default());
            }
            calls[index]
                .0
                .push_str(call["function"]["name"].as_str().unwrap_or_default());
            calls[index]
                .1
                .push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    (content, calls)
}

#[tokio::test]
async fn a_gemini_model_is_called_at_generate_content_with_a_token_from_the_service_account_key() {
    let h = Harness::start(Identity::Key).await;

    assert_eq!(content(h.chat(&hello("gemini")).await).await, OK_CONTENT);

    let seen = h.upstream.requests();
    assert_eq!(seen.len(), 2, "one token grant, one call");
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("POST", TOKEN_PATH));
    let form = seen[0].body.as_str().unwrap();
    assert!(
        form.starts_with("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=ey"),
        "{form}"
    );
    assert_eq!(seen[1].path, model_path("google", "mock-ok", "generateContent"));
    assert_eq!(seen[1].header("authorization"), Some("Bearer ya29.c.vertex-mock-0"));
    assert_eq!(seen[1].header("x-goog-api-key"), None);
    assert_eq!(h.upstream.vertex_tokens_granted(), (1, 0));
}

#[tokio::test]
async fn a_gemini_stream_and_a_gemini_tool_call_are_openai_chunks() {
    let h = Harness::start(Identity::Key).await;

    let (text, calls) = streamed_answer(h.chat(&streamed(hello("gemini"))).await).await;
    assert_eq!(text, OK_CONTENT);
    assert!(calls.is_empty());
    assert_eq!(
        h.model_calls("google").last().unwrap().path,
        model_path("google", "mock-ok", "streamGenerateContent?alt=sse")
    );

    let mut request = hello("gemini-tool");
    request["tools"] = weather_tool();
    let (_, calls) = streamed_answer(h.chat(&streamed(request)).await).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, TOOL_NAME);
    assert_eq!(serde_json::from_str::<Value>(&calls[0].1).unwrap(), tool_arguments());
}

#[tokio::test]
async fn a_claude_model_gets_anthropics_body_without_model_at_raw_predict() {
    let h = Harness::start(Identity::Key).await;

    assert_eq!(content(h.chat(&hello("claude")).await).await, OK_CONTENT);

    let call = h.model_calls("anthropic").pop().unwrap();
    assert_eq!(call.path, model_path("anthropic", "mock-ok", "rawPredict"));
    assert_eq!(call.body["anthropic_version"], ANTHROPIC_VERSION);
    assert_eq!(call.body.get("model"), None);
    assert_eq!(call.body["system"], "Be brief.");
    assert_eq!(call.header("anthropic-version"), None);
    assert_eq!(call.header("x-api-key"), None);
}

#[tokio::test]
async fn a_claude_stream_with_a_tool_call_comes_from_stream_raw_predict_as_openai_chunks() {
    let h = Harness::start(Identity::Key).await;
    let mut request = hello("claude-tool");
    request["tools"] = weather_tool();

    let (text, calls) = streamed_answer(h.chat(&streamed(request)).await).await;

    assert_eq!(text, sluice_tests::upstream::TOOL_PREAMBLE);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, TOOL_NAME);
    assert_eq!(serde_json::from_str::<Value>(&calls[0].1).unwrap(), tool_arguments());
    let call = h.model_calls("anthropic").pop().unwrap();
    assert_eq!(call.path, model_path("anthropic", "mock-tool", "streamRawPredict"));
    assert_eq!(call.body["stream"], true);
}

#[tokio::test]
async fn the_anthropic_messages_api_and_count_tokens_reach_claude_on_vertex() {
    let h = Harness::start(Identity::Key).await;
    let messages = json!({"model": "claude", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello"}]});

    let response = h.post("/v1/messages", &messages).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["content"][0]["text"], OK_CONTENT);

    let count = h.post("/v1/messages/count_tokens", &messages).await;
    assert_eq!(count.status(), StatusCode::OK);
    assert_eq!(header(&count, "x-sluice-token-count"), Some("provider"));
    let counted: Value = count.json().await.unwrap();
    assert_eq!(counted["input_tokens"], anthropic::COUNTED_INPUT_TOKENS);
    let call = h.model_calls("anthropic").pop().unwrap();
    assert_eq!(call.path, model_path("anthropic", "count-tokens", "rawPredict"));
    assert_eq!(call.body["model"], "mock-ok");
}

#[tokio::test]
async fn embeddings_come_from_predict_with_the_token_counts_vertex_reports() {
    let h = Harness::start(Identity::Key).await;

    let response = h
        .post(
            "/v1/embeddings",
            &json!({"model": "embed", "input": ["one two", "three four five"]}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        body["data"][1]["embedding"],
        json!(sluice_tests::upstream::embedding_vector(1, 8))
    );
    assert_eq!(body["usage"]["prompt_tokens"], 5);
    let call = h.model_calls("google").pop().unwrap();
    assert_eq!(call.path, model_path("google", "mock-ok", "predict"));
    assert_eq!(
        call.body,
        json!({"instances": [{"content": "one two"}, {"content": "three four five"}]})
    );
}

#[tokio::test]
async fn one_token_serves_every_call_until_vertex_refuses_it_then_a_new_one_is_fetched_and_the_call_retried_once() {
    let h = Harness::start(Identity::Key).await;

    for route in ["gemini", "claude", "gemini"] {
        assert_eq!(content(h.chat(&hello(route)).await).await, OK_CONTENT);
    }
    assert_eq!(h.upstream.vertex_tokens_granted(), (1, 0), "fetched once, reused");

    h.upstream.expire_vertex_tokens();
    assert_eq!(content(h.chat(&hello("claude")).await).await, OK_CONTENT);

    assert_eq!(h.upstream.vertex_tokens_granted(), (2, 0));
    let calls = h.model_calls("anthropic");
    let last_two: Vec<Option<&str>> = calls[calls.len() - 2..]
        .iter()
        .map(|r| r.header("authorization"))
        .collect();
    assert_eq!(
        last_two,
        vec![Some("Bearer ya29.c.vertex-mock-0"), Some("Bearer ya29.c.vertex-mock-1")],
        "the refused call, then the retry with the new token"
    );
    assert_eq!(content(h.chat(&hello("gemini")).await).await, OK_CONTENT);
    assert_eq!(h.upstream.vertex_tokens_granted(), (2, 0), "the new token is reused");
}

#[tokio::test]
async fn resource_exhausted_fails_over_to_the_next_backend() {
    let h = Harness::start(Identity::Key).await;

    let response = h.chat(&hello("failover")).await;

    assert_eq!(header(&response, "x-sluice-backend"), Some("vertex-claude"));
    assert_eq!(header(&response, "x-sluice-attempts"), Some("2"));
    assert_eq!(content(response).await, OK_CONTENT);
    assert_eq!(h.upstream.count("mock-429"), 1);
}

#[tokio::test]
async fn without_a_key_the_token_comes_from_the_metadata_server() {
    let h = Harness::start(Identity::Metadata).await;

    assert_eq!(content(h.chat(&hello("gemini")).await).await, OK_CONTENT);
    assert_eq!(content(h.chat(&hello("claude")).await).await, OK_CONTENT);

    assert_eq!(h.upstream.vertex_tokens_granted(), (0, 1));
    let seen = h.upstream.requests();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", METADATA_TOKEN_PATH)
    );
    assert_eq!(seen[0].header("metadata-flavor"), Some("Google"));
    let bearer = h.model_calls("anthropic").pop().unwrap();
    assert_eq!(
        bearer.header("authorization"),
        Some(format!("Bearer {METADATA_TOKEN_PREFIX}0").as_str())
    );
}

#[tokio::test]
async fn the_key_and_the_tokens_stay_out_of_config_the_log_and_error_bodies() {
    let h = Harness::start(Identity::Key).await;
    assert_eq!(content(h.chat(&hello("gemini")).await).await, OK_CONTENT);

    // An upstream that quotes the token it was sent: the client sees it blanked.
    let response = h.chat(&hello("gemini-quote")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "invalid_request_error", Some("unauthenticated"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("[redacted]"), "{message}");

    let config = h
        .http
        .get(h.sidecar.admin_url("/config"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key: Value = serde_json::from_str(vertex::SERVICE_ACCOUNT_KEY).unwrap();
    let private_key = key["private_key"].as_str().unwrap();
    let key_body = private_key.lines().nth(1).unwrap();
    let log = format!("{}{}", h.sidecar.stderr(), h.sidecar.stdout());
    for (place, text) in [
        ("/config", &config),
        ("the log", &log),
        ("the error", &body.to_string()),
    ] {
        assert!(!text.contains(key_body), "the private key in {place}");
        assert!(!text.contains("PRIVATE KEY"), "the private key in {place}");
        assert!(!text.contains("ya29."), "an access token in {place}: {text}");
    }
    assert!(config.contains("vertex-gemini"), "{config}");
}

#[tokio::test]
async fn a_vertex_error_for_a_bad_request_is_the_clients_not_retried() {
    let h = Harness::start(Identity::Key).await;
    // A Gemini tool turn without the call's thought signature is Vertex's 400 INVALID_ARGUMENT.
    let request = json!({"model": "gemini-tool", "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": TOOL_NAME, "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]});

    let response = h.chat(&request).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "invalid_request_error", Some("invalid_argument"));
    assert_eq!(h.upstream.count("mock-tool"), 1);
}
