//! Shared by the routing, limits, failover and cache suites: one in-test OpenAI upstream, one
//! manifest directory and the real sidecar binary, plus helpers to read its answers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::upstream::{Upstream, Wire};

pub use sluice_tests::sse::sse_data;

/// The namespace of every test route.
pub const NAMESPACE: &str = "team-a";
/// How long a test waits for something eventual: a bound, never a target.
pub const EVENTUALLY: Duration = Duration::from_secs(20);

/// One upstream, one manifest directory, one sidecar.
pub struct Gateway {
    pub upstream: Upstream,
    pub sidecar: SidecarProcess,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Gateway {
    /// Starts an upstream, writes the routes `routes(base_url)` returns, and starts the sidecar.
    pub async fn start(routes: impl FnOnce(&str) -> Vec<Value>) -> Self {
        let upstream = Upstream::start(&[Wire::OpenAi]).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let docs: Vec<String> = routes(&upstream.base_url())
            .iter()
            .map(|d| serde_json::to_string_pretty(d).unwrap())
            .collect();
        // JSON is YAML: each document as JSON, separated as a YAML stream.
        std::fs::write(dir.path().join("routes.yaml"), docs.join("\n---\n")).unwrap();
        let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
        Self {
            upstream,
            sidecar,
            dir,
            http: client(),
        }
    }

    /// Posts a chat completion.
    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.chat_with(body, &[]).await
    }

    /// Posts a chat completion with extra request headers.
    pub async fn chat_with(&self, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.http.post(self.sidecar.url("/v1/chat/completions")).json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// The admin `/config` document.
    pub async fn config(&self) -> Value {
        let response = self.http.get(self.sidecar.admin_url("/config")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// The live state of one backend of route `route`, from `/config`.
    pub async fn backend_state(&self, route: &str, backend: &str) -> Value {
        let config = self.config().await;
        let routes = config["state"]["routes"].as_array().unwrap().clone();
        let route = routes.into_iter().find(|r| r["name"] == route).unwrap();
        let backends = route["backends"].as_array().unwrap().clone();
        backends.into_iter().find(|b| b["name"] == backend).unwrap()
    }

    /// Polls the backend's live state until `check` holds; panics after [`EVENTUALLY`].
    pub async fn wait_for_state(
        &self,
        route: &str,
        backend: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            let state = self.backend_state(route, backend).await;
            if check(&state) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "{route}/{backend} never got to {what}: {state}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until the upstream has seen `n` requests for `model`.
    pub async fn wait_for_upstream(&self, model: &str, n: usize) {
        let deadline = Instant::now() + EVENTUALLY;
        while self.upstream.count(model) < n {
            assert!(
                Instant::now() < deadline,
                "the upstream never saw {n} requests for {model}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A client whose timeout turns a hang into a failure instead of a stuck test.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// A `ModelRoute` named `name` serving model `name`, with `spec` merged over the defaults.
pub fn route(name: &str, spec: Value) -> Value {
    let mut full = json!({"models": [name]});
    full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "ModelRoute",
        "metadata": {"name": name, "namespace": NAMESPACE}, "spec": full})
}

/// An OpenAI-compatible backend at the upstream, asking it for `model`, with `extra` fields.
pub fn backend(name: &str, base_url: &str, model: &str, extra: Value) -> Value {
    let mut b = json!({"name": name, "provider": "openai-compatible", "baseUrl": base_url, "model": model});
    b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    b
}

/// A one-message chat request.
pub fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]})
}

/// A response header as text.
pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The text a streamed answer spells out, joined from its chunks' deltas.
pub fn streamed_content(body: &str) -> String {
    sse_data(body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect()
}
