//! When the real `sluice-sidecar` binary counts prompts with a BPE: only when a figure is needed.
//! A route whose backend is an OpenAI model family counts with `o200k_base`, whose tables take
//! tens of MiB; an answer that carries the provider's usage must never load them, and one that
//! ends without usage is charged the prompt as counted at its end.
//!
//! Needs `cargo build -p sluice-sidecar -p sluice-tests --bins` first (see `tests/support/sidecar.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::upstream::{Upstream, Wire};

const NAMESPACE: &str = "team-a";

/// How long a test waits for a request to be recorded: a bound, never a target.
const EVENTUALLY: Duration = Duration::from_secs(15);

/// The prompt's `o200k_base` count as a chat: "Hello world" is two tokens, plus three framing
/// the message and three priming the reply.
const HELLO_WORLD_PROMPT_TOKENS: u64 = 2 + 3 + 3;

/// A Secret and two routes on OpenAI model names: `counted` answers with usage, `cut` breaks
/// its stream off before any usage.
fn manifest(base_url: &str) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: upstream, namespace: {NAMESPACE}}}\n\
         stringData: {{apiKey: sk-test}}\n"
    );
    for (route, model) in [("counted", "gpt-4o-mock-ok"), ("cut", "gpt-4o-mock-cut-stream")] {
        out.push_str(&format!(
            "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {route}, namespace: {NAMESPACE}}}\n\
             spec:\n  models: [{route}]\n  retry: {{attempts: 1}}\n  backends:\n\
             \x20 - name: mock\n    provider: openai-compatible\n    baseUrl: {base_url}\n    model: {model}\n    \
             credentialsRef: {{name: upstream, key: apiKey}}\n"
        ));
    }
    out
}

struct Harness {
    _upstream: Upstream,
    sidecar: SidecarProcess,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Self {
        let upstream = Upstream::start(&[Wire::OpenAi]).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("routes.yaml"), manifest(&upstream.base_url())).unwrap();
        let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            _upstream: upstream,
            sidecar,
            _dir: dir,
            http,
        }
    }

    /// Sends a chat request for `model` and reads its whole answer.
    async fn chat(&self, model: &str, stream: bool) -> (StatusCode, String) {
        let body = json!({
            "model": model,
            "stream": stream,
            "messages": [{"role": "user", "content": "Hello world"}],
        });
        let response = self
            .http
            .post(self.sidecar.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        // A broken stream may end the body with an error: what arrived is enough here.
        let text = response.text().await.unwrap_or_default();
        (status, text)
    }

    async fn metrics(&self) -> String {
        let response = self.http.get(self.sidecar.admin_url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// The exposition once `requests` requests of `route` are recorded (an answer is recorded
    /// when it ends, which the client may see first).
    async fn metrics_after(&self, route: &str, requests: u64) -> String {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            let metrics = self.metrics().await;
            let recorded: u64 = metrics
                .lines()
                .filter(|l| {
                    l.starts_with("sluice_requests_total") && l.contains(&format!("route=\"{NAMESPACE}/{route}\""))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
            if recorded >= requests {
                return metrics;
            }
            assert!(
                Instant::now() < deadline,
                "{requests} requests of {route} never recorded:\n{metrics}"
            );
            tokio::task::yield_now().await;
        }
    }
}

/// The value of the one series of `name` whose labels contain every one of `labels`.
fn series(metrics: &str, name: &str, labels: &[&str]) -> Option<u64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn answers_that_carry_usage_never_load_the_bpe_tables() {
    let h = Harness::start().await;

    let (status, text) = h.chat("counted", true).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    let (status, text) = h.chat("counted", false).await;
    assert_eq!(status, StatusCode::OK, "{text}");

    let metrics = h.metrics_after("counted", 2).await;
    assert_eq!(
        series(&metrics, "sluice_tokenizer_tables_loaded", &[]),
        Some(0),
        "{metrics}"
    );
    let input = ["route=\"team-a/counted\"", "gen_ai_token_type=\"input\""];
    assert_eq!(
        series(&metrics, "sluice_tokens_total", &input),
        Some(2 * sluice_tests::upstream::PROMPT_TOKENS),
        "both charged the provider's usage:\n{metrics}"
    );
}

#[tokio::test]
async fn a_stream_that_ends_without_usage_is_charged_the_prompt_counted_at_its_end() {
    let h = Harness::start().await;

    let (status, _) = h.chat("cut", true).await;
    assert_eq!(status, StatusCode::OK);

    let metrics = h.metrics_after("cut", 1).await;
    let input = ["route=\"team-a/cut\"", "gen_ai_token_type=\"input\""];
    assert_eq!(
        series(&metrics, "sluice_tokens_total", &input),
        Some(HELLO_WORLD_PROMPT_TOKENS),
        "{metrics}"
    );
    assert_eq!(
        series(&metrics, "sluice_tokenizer_tables_loaded", &[]),
        Some(1),
        "{metrics}"
    );
}
