//! The APIs agents speak, on the real `sluice-sidecar` binary: legacy `/v1/completions` (passed
//! to OpenAI-protocol backends, refused elsewhere), Anthropic's `/v1/messages/count_tokens`
//! (counted by an Anthropic backend, estimated locally for the others, and said so).
//!
//! Needs `cargo build -p sluice-sidecar` first (see `tests/support/sidecar.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::sse::openai_events;
use sluice_tests::upstream::{
    COMPLETION_TOKENS, OK_CONTENT, OK_PIECES, PROMPT_TOKENS, Upstream, Wire, anthropic::COUNTED_INPUT_TOKENS,
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

impl Harness {
    async fn start() -> Self {
        let upstream = Upstream::start(&Wire::ALL).await.unwrap();
        let mut manifest = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: keys, namespace: {NAMESPACE}}}\nstringData: {{apiKey: sk-test}}\n"
        );
        manifest.push_str(&route(
            "fim",
            "openai-compatible",
            &upstream.base_url_of(Wire::OpenAi),
            "mock-ok",
        ));
        manifest.push_str(&route(
            "claude",
            "anthropic",
            &upstream.base_url_of(Wire::Anthropic),
            "mock-ok",
        ));
        manifest.push_str(&route(
            "gemini",
            "gemini",
            &upstream.base_url_of(Wire::Gemini),
            "mock-ok",
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
