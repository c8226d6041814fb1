//! Shared by the Anthropic and Gemini backend suites: the real sidecar serving OpenAI clients,
//! each route sending its one model to a backend of one provider at the in-test upstream, plus
//! helpers to read the OpenAI answers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::upstream::{TOOL_NAME, Upstream, Wire};

/// The namespace of every test route.
pub const NAMESPACE: &str = "team-a";

/// The one backend of every route.
pub struct Backend {
    /// Its name (`x-sluice-backend`).
    pub name: &'static str,
    /// Its `provider`, also the name of the Secret holding its key.
    pub provider: &'static str,
    /// The wire the upstream speaks to it.
    pub wire: Wire,
    /// The API key in the Secret.
    pub key: &'static str,
}

/// The Secret and one route per `(name, model)` of `routes`: the route's name is its one model
/// alias, the backend's model picks the upstream's behaviour (`mock-stall` gets short timeouts).
fn manifest(backend: &Backend, base_url: &str, routes: &[(&str, &str)]) -> String {
    let Backend {
        name: backend_name,
        provider,
        key,
        ..
    } = backend;
    let mut out = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {provider}, namespace: {NAMESPACE}}}\n\
         stringData: {{apiKey: {key}}}\n"
    );
    for (name, model) in routes {
        let timeouts = if *model == "mock-stall" {
            "\n    timeouts: {connect: 1s, firstByte: 500ms, total: 2s}"
        } else {
            ""
        };
        out.push_str(&format!(
            "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
             spec:\n  models: [{name}]\n  retry: {{attempts: 1}}\n  backends:\n  - name: {backend_name}\n    \
             provider: {provider}\n    baseUrl: {base_url}\n    model: {model}\n    \
             credentialsRef: {{name: {provider}, key: apiKey}}{timeouts}\n"
        ));
    }
    out
}

/// One upstream, one manifest directory, one sidecar.
pub struct Harness {
    pub upstream: Upstream,
    pub sidecar: SidecarProcess,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Harness {
    /// Starts an upstream speaking the backend's wire and a sidecar serving `routes` from it.
    pub async fn start(backend: &Backend, routes: &[(&str, &str)]) -> Self {
        let upstream = Upstream::start(&[backend.wire]).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("routes.yaml"),
            manifest(backend, &upstream.base_url(), routes),
        )
        .unwrap();
        let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
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

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.post(self.sidecar.url(path)).json(body).send().await.unwrap()
    }

    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/chat/completions", body).await
    }

    /// The body of the upstream's latest request.
    pub fn last_sent(&self) -> Value {
        self.upstream.requests().last().unwrap().body.clone()
    }
}

/// A chat request with a system and a user message.
pub fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]})
}

/// `request`, streamed.
pub fn streamed(mut request: Value) -> Value {
    request["stream"] = json!(true);
    request
}

/// A response header as text.
pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The OpenAI tool definition of the upstream's `mock-tool` call.
pub fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": TOOL_NAME, "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

/// Checks `{"error": {"message", "type", "param", "code"}}` with exactly those keys, a message,
/// and the given type and code.
#[track_caller]
pub fn assert_openai_error(body: &Value, kind: &str, code: Option<&str>) {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("not an OpenAI error: {body}"));
    let keys: BTreeSet<&str> = error.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["message", "type", "param", "code"]), "{body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(error["type"], kind, "{body}");
    assert_eq!(error["code"], json!(code), "{body}");
}
