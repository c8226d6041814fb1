//! Usage, cost and budgets through the real sidecar binary: exact figures, no overspend
//! under concurrency, the three enforcement modes, and spend that survives restarts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{path::Path, time::Duration};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::{
    sidecar::SidecarProcess,
    upstream::{CACHED_TOKENS, COMPLETION_TOKENS, PROMPT_TOKENS, Upstream, Wire, anthropic},
};

/// How long a test waits for something eventual: a bound, never a target.
const EVENTUALLY: Duration = Duration::from_secs(15);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn budget_doc(limit: &str, enforcement: &str, downgrade_to: &str) -> String {
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: Budget\nmetadata: {{name: team, namespace: default}}\n\
         spec: {{limitUSD: \"{limit}\", period: monthly, enforcement: {enforcement}{downgrade_to}}}\n"
    )
}

/// A simulator backend whose answer is exactly `max_tokens` long (it would say more).
fn sim_backend(name: &str, priority: u32, output_price: &str) -> String {
    format!(
        "  - name: {name}\n    provider: simulator\n    model: {name}-model\n    priority: {priority}\n    \
         pricing: {{inputPerMTok: \"0\", outputPerMTok: \"{output_price}\"}}\n    \
         simulator: {{timeToFirstToken: 20ms, perToken: 0ms, outputTokens: 1000, seed: 1}}\n"
    )
}

fn route_doc(backends: &str) -> String {
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: chat, namespace: default}}\n\
         spec:\n  models: [chat]\n  retry: {{attempts: 1}}\n  budgetRef: {{name: team}}\n  backends:\n{backends}"
    )
}

fn write(dir: &Path, text: &str) {
    std::fs::write(dir.join("manifests.yaml"), text).unwrap();
}

async fn chat(client: &reqwest::Client, sidecar: &SidecarProcess, body: Value) -> reqwest::Response {
    client
        .post(sidecar.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn ten_tokens(stream: bool) -> Value {
    json!({"model": "chat", "max_tokens": 10, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

async fn budgets(client: &reqwest::Client, sidecar: &SidecarProcess) -> Value {
    client
        .get(sidecar.admin_url("/budgets"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()[0]
        .clone()
}

/// Prices of [`assert_exact_costs`]: $2 in, $8 out, $0.50 per cache read and, when given, the
/// cache-write price.
fn priced_backend(provider: &str, base_url: &str, write_price: Option<&str>) -> String {
    let write = write_price.map_or(String::new(), |p| format!(", cacheWriteInputPerMTok: \"{p}\""));
    format!(
        "  - name: mock\n    provider: {provider}\n    baseUrl: {base_url}\n    model: mock-ok\n    \
         credentialsRef: {{name: key, key: apiKey}}\n    \
         pricing: {{inputPerMTok: \"2.00\", outputPerMTok: \"8.00\", cachedInputPerMTok: \"0.50\"{write}}}\n"
    )
}

/// Spend through one provider's in-test upstream: a plain and a streamed answer, each costing
/// `each` micro-dollars and writing `writes` prompt tokens to the provider's cache. The plain
/// answer's `x-sluice-cost-usd`, the budget's spend and the metrics must say exactly so.
async fn assert_exact_costs(provider: &str, backend: &str, each: u64, writes: u64) {
    let dir = tempfile::tempdir().unwrap();
    let secret =
        "apiVersion: v1\nkind: Secret\nmetadata: {name: key, namespace: default}\nstringData: {apiKey: sk-test}\n";
    write(
        dir.path(),
        &format!("{secret}{}{}", budget_doc("10.00", "hard", ""), route_doc(backend)),
    );
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    let client = http();

    let plain = chat(
        &client,
        &sidecar,
        json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(plain.status(), StatusCode::OK, "{provider}");
    assert_eq!(
        plain.headers()["x-sluice-cost-usd"],
        format!("0.{each:06}").as_str(),
        "{provider}"
    );
    let streamed = chat(&client, &sidecar, ten_tokens(true)).await;
    assert_eq!(streamed.status(), StatusCode::OK);
    let text = streamed.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{provider}: {text}");

    wait_for_spend(&client, &sidecar, &format!("0.{:06}", 2 * each)).await;
    let metrics = client
        .get(sidecar.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |needle: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(needle) && l.contains("outcome=\"ok\""))
            .map(str::to_owned)
    };
    let spend = line("sluice_spend_microdollars_total").unwrap_or_else(|| panic!("no spend metric in\n{metrics}"));
    assert!(spend.ends_with(&format!(" {}", 2 * each)), "{provider}: {spend}");
    let requests = line("sluice_requests_total").unwrap();
    assert!(requests.ends_with(" 2"), "{provider}: {requests}");
    let tokens = |kind: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("sluice_tokens_total") && l.contains(&format!("gen_ai_token_type=\"{kind}\"")))
            .unwrap_or_else(|| panic!("no {kind} token metric in\n{metrics}"))
            .to_owned()
    };
    let cached = tokens("cached_input");
    assert!(
        cached.ends_with(&format!(" {}", 2 * CACHED_TOKENS)),
        "{provider}: {cached}"
    );
    let written = tokens("cache_write_input");
    assert!(written.ends_with(&format!(" {}", 2 * writes)), "{provider}: {written}");
}

/// Each answer of the in-test upstream at [`priced_backend`]'s prices without cache writes:
/// 12 prompt tokens (4 from the provider's cache) and 5 completion tokens,
/// (12 - 4) × 2 + 4 × 0.5 + 5 × 8 = 58 micro-dollars.
const WITHOUT_WRITES: u64 = (PROMPT_TOKENS - CACHED_TOKENS) * 2 + CACHED_TOKENS / 2 + COMPLETION_TOKENS * 8;

#[tokio::test]
async fn openai_costs_are_exact_for_plain_and_streamed_answers_with_cached_tokens() {
    assert_eq!(WITHOUT_WRITES, 58);
    let upstream = Upstream::start(&[Wire::OpenAi]).await.unwrap();
    // OpenAI reports no cache writes: a write price changes nothing.
    let backend = priced_backend("openai-compatible", &upstream.base_url(), Some("2.50"));
    assert_exact_costs("openai", &backend, WITHOUT_WRITES, 0).await;
}

#[tokio::test]
async fn anthropic_costs_are_exact_with_cache_reads_and_writes_billed_at_their_own_prices() {
    // Anthropic reports 6 uncached + 4 cache-read + 2 cache-write input tokens: 12 in all.
    assert_eq!(
        anthropic::INPUT_TOKENS + anthropic::CACHE_READ_TOKENS + anthropic::CACHE_CREATION_TOKENS,
        PROMPT_TOKENS
    );
    assert_eq!(
        (anthropic::CACHE_READ_TOKENS, anthropic::OUTPUT_TOKENS),
        (CACHED_TOKENS, COMPLETION_TOKENS)
    );
    // At $2.50 per cache write (1.25× input, as Anthropic lists 5-minute writes):
    // 6 × 2 + 4 × 0.5 + 2 × 2.5 + 5 × 8 = 12 + 2 + 5 + 40 = 59 micro-dollars per answer.
    let each = anthropic::INPUT_TOKENS * 2
        + anthropic::CACHE_READ_TOKENS / 2
        + anthropic::CACHE_CREATION_TOKENS * 5 / 2
        + anthropic::OUTPUT_TOKENS * 8;
    assert_eq!(each, 59);
    let upstream = Upstream::start(&[Wire::Anthropic]).await.unwrap();
    let backend = priced_backend("anthropic", &upstream.base_url(), Some("2.50"));
    assert_exact_costs("anthropic", &backend, each, anthropic::CACHE_CREATION_TOKENS).await;
}

#[tokio::test]
async fn anthropic_cache_writes_cost_the_input_price_when_the_route_sets_no_write_price() {
    // 6 × 2 + 4 × 0.5 + 2 × 2 + 5 × 8 = 58 micro-dollars per answer.
    let upstream = Upstream::start(&[Wire::Anthropic]).await.unwrap();
    let backend = priced_backend("anthropic", &upstream.base_url(), None);
    assert_exact_costs("anthropic", &backend, WITHOUT_WRITES, anthropic::CACHE_CREATION_TOKENS).await;
}

#[tokio::test]
async fn gemini_costs_are_exact_for_plain_and_streamed_answers_with_cached_tokens() {
    let upstream = Upstream::start(&[Wire::Gemini]).await.unwrap();
    // Gemini reports no cache writes: a write price changes nothing.
    let backend = priced_backend("gemini", &upstream.base_url(), Some("2.50"));
    assert_exact_costs("gemini", &backend, WITHOUT_WRITES, 0).await;
}

#[tokio::test]
async fn a_stream_cut_before_its_usage_is_recorded_as_estimated_not_zero() {
    let upstream = Upstream::start(&[Wire::OpenAi]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend = format!(
        "  - name: mock\n    provider: openai-compatible\n    baseUrl: {}\n    model: mock-cut-stream\n    \
         pricing: {{inputPerMTok: \"1000.00\", outputPerMTok: \"1000.00\"}}\n",
        upstream.base_url()
    );
    write(
        dir.path(),
        &format!("{}{}", budget_doc("10.00", "hard", ""), route_doc(&backend)),
    );
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    let client = http();
    let text = chat(&client, &sidecar, ten_tokens(true)).await.text().await.unwrap();
    assert!(text.contains("\"error\""), "the cut must reach the client: {text}");
    // Counted locally from the prompt and the text that was streamed, and said to be so.
    sidecar
        .wait_for_stderr("usage_estimated=true", EVENTUALLY)
        .await
        .unwrap();
    let spent = budgets(&client, &sidecar).await["spentUSD"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(spent, "0.000000");
    let metrics = client
        .get(sidecar.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let output = metrics
        .lines()
        .find(|l| l.starts_with("sluice_tokens_total") && l.contains("gen_ai_token_type=\"output\""))
        .unwrap_or_else(|| panic!("no output-token metric in\n{metrics}"));
    assert!(!output.ends_with(" 0"), "{output}");
}

#[tokio::test]
async fn two_hundred_concurrent_requests_spend_no_more_than_the_budget() {
    // Each answer is exactly 10 tokens at $100 per million: $0.001, its worst case too.
    // $0.05 pays for exactly 50 of them.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &format!(
            "{}{}",
            budget_doc("0.05", "hard", ""),
            route_doc(&sim_backend("sim", 0, "100.00"))
        ),
    );
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    let client = http();
    let requests = (0..200).map(|_| {
        let (client, url) = (client.clone(), sidecar.url("/v1/chat/completions"));
        tokio::spawn(async move { client.post(url).json(&ten_tokens(false)).send().await.unwrap() })
    });
    let mut ok = 0;
    let mut refused = 0;
    for handle in requests.collect::<Vec<_>>() {
        let response = handle.await.unwrap();
        match response.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(response.headers().contains_key("retry-after"));
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "budget_exceeded");
                assert!(
                    body["error"]["message"].as_str().unwrap().contains("default/team"),
                    "{body}"
                );
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, refused), (50, 150));
    let budget = budgets(&client, &sidecar).await;
    assert_eq!(budget["spentUSD"], "0.050000");
    assert_eq!(budget["remainingUSD"], "0.000000");
}

#[tokio::test]
async fn downgrade_serves_from_the_cheap_backend_once_the_limit_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let backends = format!(
        "{}{}",
        sim_backend("premium", 0, "100.00"),
        sim_backend("cheap", 1, "1.00")
    );
    write(
        dir.path(),
        &format!(
            "{}{}",
            budget_doc("0.002", "downgrade", ", downgradeTo: [cheap]"),
            route_doc(&backends)
        ),
    );
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    let client = http();
    let mut served_by = Vec::new();
    for _ in 0..4 {
        let response = chat(&client, &sidecar, ten_tokens(false)).await;
        assert_eq!(response.status(), StatusCode::OK);
        served_by.push(response.headers()["x-sluice-backend"].to_str().unwrap().to_owned());
    }
    assert_eq!(served_by, ["premium", "premium", "cheap", "cheap"]);
}

#[tokio::test]
async fn soft_serves_past_the_limit_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &format!(
            "{}{}",
            budget_doc("0.001", "soft", ""),
            route_doc(&sim_backend("sim", 0, "100.00"))
        ),
    );
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    let client = http();
    for _ in 0..3 {
        assert_eq!(
            chat(&client, &sidecar, ten_tokens(false)).await.status(),
            StatusCode::OK
        );
    }
    let budget = budgets(&client, &sidecar).await;
    assert_eq!(
        (budget["spentUSD"].as_str(), budget["remainingUSD"].as_str()),
        (Some("0.003000"), Some("0.000000"))
    );
}

/// Polls `/budgets` until the spend reads `expected`.
async fn wait_for_spend(client: &reqwest::Client, sidecar: &SidecarProcess, expected: &str) {
    let deadline = std::time::Instant::now() + EVENTUALLY;
    loop {
        if budgets(client, sidecar).await["spentUSD"] == expected {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "spend never reached {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn spend_flushed_before_a_crash_is_there_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &format!(
            "{}{}",
            budget_doc("1.00", "hard", ""),
            route_doc(&sim_backend("sim", 0, "100.00"))
        ),
    );
    let args = [
        "--state-dir",
        state.path().to_str().unwrap(),
        "--state-flush-interval",
        "100ms",
    ];
    let mut sidecar = SidecarProcess::start_with_args(dir.path(), &args).await.unwrap();
    let client = http();
    for _ in 0..3 {
        assert_eq!(
            chat(&client, &sidecar, ten_tokens(false)).await.status(),
            StatusCode::OK
        );
    }
    // Wait until a flush has written the spend, then crash. Only the renamed file counts: a
    // flush writes a `.tmp` first, which a crash before the rename leaves unused.
    let flushed = || {
        std::fs::read_dir(state.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .any(|p| std::fs::read_to_string(p).unwrap_or_default().contains("0.003000"))
    };
    let deadline = std::time::Instant::now() + EVENTUALLY;
    while !flushed() {
        assert!(std::time::Instant::now() < deadline, "spend never flushed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sidecar.kill().unwrap();
    let restarted = SidecarProcess::start_with_args(dir.path(), &args).await.unwrap();
    assert_eq!(budgets(&client, &restarted).await["spentUSD"], "0.003000");
}

#[tokio::test]
async fn sigterm_saves_every_settled_request() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &format!(
            "{}{}",
            budget_doc("1.00", "hard", ""),
            route_doc(&sim_backend("sim", 0, "100.00"))
        ),
    );
    // No periodic flush within the test: only the one at shutdown can save the spend.
    let args = [
        "--state-dir",
        state.path().to_str().unwrap(),
        "--state-flush-interval",
        "1h",
    ];
    let mut sidecar = SidecarProcess::start_with_args(dir.path(), &args).await.unwrap();
    let client = http();
    for _ in 0..4 {
        let text = chat(&client, &sidecar, ten_tokens(true)).await.text().await.unwrap();
        assert!(text.ends_with("[DONE]\n\n"), "{text}");
    }
    wait_for_spend(&client, &sidecar, "0.004000").await;
    assert!(sidecar.terminate().await.unwrap().success());
    let restarted = SidecarProcess::start_with_args(dir.path(), &args).await.unwrap();
    assert_eq!(budgets(&client, &restarted).await["spentUSD"], "0.004000");
}

/// A simulator backend with a long answer (3,000 words, about 4,500 tokens as estimated
/// from its text) at $100 per million output tokens.
fn long_answer_backend() -> String {
    "  - name: sim\n    provider: simulator\n    model: sim-model\n    \
     pricing: {inputPerMTok: \"0\", outputPerMTok: \"100.00\"}\n    \
     simulator: {timeToFirstToken: 5ms, perToken: 0ms, outputTokens: 3000, seed: 2}\n"
        .to_owned()
}

fn open_ended_stream() -> Value {
    json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

/// The `data:` payloads of an SSE body.
fn events(text: &str) -> Vec<&str> {
    text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).collect()
}

#[tokio::test]
async fn a_stream_that_would_overrun_a_hard_budget_ends_at_the_limit_with_a_reason() {
    // Without max_tokens the sidecar reserves 4,096 output tokens ($0.4096); $0.50 cannot
    // cover the ~4,500 tokens of this answer, so it is ended where the money ends.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &format!(
            "{}{}",
            budget_doc("0.50", "hard", ""),
            route_doc(&long_answer_backend())
        ),
    );
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    let client = http();
    let text = chat(&client, &sidecar, open_ended_stream()).await.text().await.unwrap();
    let events = events(&text);
    assert!(!text.contains("[DONE]"), "the answer must not look complete");
    let last: Value = serde_json::from_str(events[events.len() - 1]).unwrap();
    assert_eq!(last["error"]["code"], "budget_exceeded", "{last}");
    let finish: Value = serde_json::from_str(events[events.len() - 2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length", "{finish}");
    let budget = budgets(&client, &sidecar).await;
    let spent: f64 = budget["spentUSD"].as_str().unwrap().parse().unwrap();
    assert!(spent > 0.40 && spent <= 0.50, "spent {spent}");
    assert_eq!(budget["reservedUSD"], "0.000000");
}

#[tokio::test]
async fn a_stream_past_its_reservation_continues_while_the_budget_has_money() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &format!(
            "{}{}",
            budget_doc("5.00", "hard", ""),
            route_doc(&long_answer_backend())
        ),
    );
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    let client = http();
    let text = chat(&client, &sidecar, open_ended_stream()).await.text().await.unwrap();
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
    // The simulator reports 3,000 completion tokens at the end: $0.30 exactly.
    assert_eq!(budgets(&client, &sidecar).await["spentUSD"], "0.300000");
}

/// A route to the in-test upstream's `model` at $100 per million output tokens, nothing for input.
fn upstream_backend(upstream: &Upstream, model: &str) -> String {
    format!(
        "  - name: mock\n    provider: openai-compatible\n    baseUrl: {}\n    model: {model}\n    \
         credentialsRef: {{name: key, key: apiKey}}\n    \
         pricing: {{inputPerMTok: \"0\", outputPerMTok: \"100.00\"}}\n",
        upstream.base_url()
    )
}

const SECRET: &str =
    "apiVersion: v1\nkind: Secret\nmetadata: {name: key, namespace: default}\nstringData: {apiKey: sk-test}\n";

#[tokio::test]
async fn a_stream_of_tool_call_arguments_past_a_hard_budget_is_cut_at_the_limit() {
    // The answer is reasoning and a tool call of 40,000 characters of arguments (~10,000
    // tokens, $1.00) and no text; the reservation is 4,096 tokens ($0.4096) of a $0.50 budget.
    // Arguments and reasoning count like text, so the stream is ended where the money ends.
    let upstream = Upstream::start(&[Wire::OpenAi]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &format!(
            "{SECRET}{}{}",
            budget_doc("0.50", "hard", ""),
            route_doc(&upstream_backend(&upstream, "mock-long-tool"))
        ),
    );
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    let client = http();
    let text = chat(&client, &sidecar, open_ended_stream()).await.text().await.unwrap();
    let events = events(&text);
    assert!(!text.contains("[DONE]"), "the answer must not look complete");
    let last: Value = serde_json::from_str(events[events.len() - 1]).unwrap();
    assert_eq!(last["error"]["code"], "budget_exceeded", "{last}");
    let finish: Value = serde_json::from_str(events[events.len() - 2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length", "{finish}");
    // Fewer argument pieces reached the client than the upstream sent.
    let pieces = events.iter().filter(|e| e.contains("\"arguments\":\"xxxx")).count();
    assert!(
        pieces < sluice_tests::upstream::LONG_TOOL_PIECES,
        "{pieces} pieces passed"
    );
    let budget = budgets(&client, &sidecar).await;
    let spent: f64 = budget["spentUSD"].as_str().unwrap().parse().unwrap();
    assert!(spent > 0.40 && spent <= 0.50, "spent {spent}");
    assert_eq!(budget["reservedUSD"], "0.000000");
}

#[tokio::test]
async fn a_request_for_three_choices_reserves_three_times_its_completion_cap() {
    let upstream = Upstream::start(&[Wire::OpenAi]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &format!(
            "{SECRET}{}{}",
            budget_doc("10.00", "hard", ""),
            route_doc(&upstream_backend(&upstream, "mock-ok"))
        ),
    );
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    upstream.hold("mock-ok");
    let client = http();
    let url = sidecar.url("/v1/chat/completions");
    let body = json!({"model": "chat", "n": 3, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let request = tokio::spawn({
        let client = client.clone();
        async move { client.post(url).json(&body).send().await.unwrap().status() }
    });
    // Once the upstream has the request, its reservation is made and held until the answer:
    // 3 choices × 10 tokens × $100 per million.
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while upstream.count("mock-ok") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(budgets(&client, &sidecar).await["reservedUSD"], "0.003000");
    upstream.release("mock-ok", 1);
    assert_eq!(request.await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn a_streamed_response_that_would_overrun_a_hard_budget_ends_with_response_failed_and_is_settled() {
    // The chat case above, asked through /v1/responses: the same cut, told the Responses way.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &format!(
            "{}{}",
            budget_doc("0.50", "hard", ""),
            route_doc(&long_answer_backend())
        ),
    );
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    let client = http();
    let text = client
        .post(sidecar.url("/v1/responses"))
        .json(&json!({"model": "chat", "stream": true, "input": "hi"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = sluice_tests::sse::sse_data(&text)
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed", "{last}");
    assert_eq!(last["response"]["error"]["code"], "budget_exceeded", "{last}");
    assert!(
        events.iter().all(|e| e["type"] != "response.completed"),
        "the answer must not look complete"
    );
    let streamed: String = events.iter().filter_map(|e| e["delta"].as_str()).collect();
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], streamed.as_str());
    assert_eq!(last["response"]["output"][0]["status"], "incomplete");
    let budget = budgets(&client, &sidecar).await;
    let spent: f64 = budget["spentUSD"].as_str().unwrap().parse().unwrap();
    assert!(spent > 0.40 && spent <= 0.50, "spent {spent}");
    assert_eq!(budget["reservedUSD"], "0.000000");
}

#[tokio::test]
async fn a_passed_through_response_stream_past_a_hard_budget_ends_with_response_failed_and_is_settled() {
    // An `openai` backend's own Responses stream: reasoning, then a tool call of 40,000
    // characters of arguments (~10,000 tokens, $1.00); the reservation is 4,096 tokens of a
    // $0.50 budget. The deltas count like chat text, and the cut is told as a translated
    // Response's is: `response.failed` with `budget_exceeded`, the unfinished call incomplete.
    let upstream = Upstream::start(&[Wire::OpenAi]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend =
        upstream_backend(&upstream, "mock-long-tool").replace("provider: openai-compatible", "provider: openai");
    write(
        dir.path(),
        &format!("{SECRET}{}{}", budget_doc("0.50", "hard", ""), route_doc(&backend)),
    );
    let sidecar = SidecarProcess::start(dir.path()).await.unwrap();
    let client = http();
    let text = client
        .post(sidecar.url("/v1/responses"))
        .json(&json!({"model": "chat", "stream": true, "input": "call the tool"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = sluice_tests::sse::sse_data(&text)
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed", "{last}");
    assert_eq!(last["response"]["error"]["code"], "budget_exceeded", "{last}");
    assert!(
        events.iter().all(|e| e["type"] != "response.completed"),
        "the answer must not look complete"
    );
    let pieces: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert!(
        pieces.len() < sluice_tests::upstream::LONG_TOOL_PIECES,
        "{} pieces passed",
        pieces.len()
    );
    let call = &last["response"]["output"][1];
    assert_eq!(call["type"], "function_call", "{last}");
    assert_eq!(call["status"], "incomplete");
    assert_eq!(call["arguments"], pieces.concat().as_str());
    assert_eq!(
        last["sequence_number"].as_u64(),
        events[events.len() - 2]["sequence_number"].as_u64().map(|n| n + 1)
    );
    let budget = budgets(&client, &sidecar).await;
    let spent: f64 = budget["spentUSD"].as_str().unwrap().parse().unwrap();
    assert!(spent > 0.40 && spent <= 0.50, "spent {spent}");
    assert_eq!(budget["reservedUSD"], "0.000000");
}
