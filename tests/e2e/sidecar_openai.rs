//! The real `sluice-sidecar` binary in local mode against the in-test OpenAI upstream.
//!
//! Needs `cargo build -p sluice-sidecar` first (see `tests/support/sidecar.rs`). Each test
//! gets its own upstream, manifest directory and sidecar process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::sse::{openai_events, sse_data};
use sluice_tests::upstream::{self, OK_CONTENT, Upstream, Wire, openai};

const NAMESPACE: &str = "team-a";
const BACKEND: &str = "mock";
const SECRET: &str = "sk-test-secret-123";

/// Every route of the test manifest: the route's name (also its one model alias) and its backend's model,
/// which tells the upstream how to behave.
const ROUTES: &[(&str, &str)] = &[
    ("chat", "mock-ok"),
    ("embed", "mock-ok"),
    ("fails-400", "mock-400"),
    ("fails-401", "mock-401"),
    ("fails-429", "mock-429"),
    ("fails-500", "mock-500"),
    ("fails-503", "mock-503"),
    ("garbage", "mock-garbage"),
    ("cut-stream", "mock-cut-stream"),
    ("slow-stream", "mock-slow-stream"),
    ("stall", "mock-stall"),
    ("whole", "mock-whole"),
];

/// How long a test waits for something eventual (a reload, a log line): a bound, never a target.
const EVENTUALLY: Duration = Duration::from_secs(15);

fn secret_doc() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: upstream, namespace: {NAMESPACE}}}\n\
         stringData: {{apiKey: {SECRET}}}\n"
    )
}

fn backend_yaml(name: &str, base_url: &str, model: &str) -> String {
    let timeouts = if model == "mock-stall" {
        "\n    timeouts: {connect: 1s, firstByte: 500ms, total: 2s}"
    } else {
        ""
    };
    format!(
        "  - name: {name}\n    provider: openai-compatible\n    baseUrl: {base_url}\n    model: {model}\n    \
         credentialsRef: {{name: upstream, key: apiKey}}{timeouts}\n"
    )
}

fn route_doc(name: &str, models: &[&str], backends: &str) -> String {
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         spec:\n  models: [{}]\n  retry: {{attempts: 1}}\n  backends:\n{backends}",
        models.join(", ")
    )
}

/// The Secret and every route of [`ROUTES`]; `chat` also serves `chat_extra` aliases.
fn manifest(base_url: &str, chat_extra: &[&str]) -> String {
    let mut out = secret_doc();
    for (name, model) in ROUTES {
        let mut models = vec![*name];
        if *name == "chat" {
            models.extend_from_slice(chat_extra);
        }
        out.push_str(&route_doc(name, &models, &backend_yaml(BACKEND, base_url, model)));
    }
    out
}

/// Replaces `dir/routes.yaml` in one step (write aside, then rename), as `kubectl cp` or an editor's save would.
fn replace_manifest(dir: &Path, text: &str) {
    let aside = dir.join(".routes.yaml.next");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, dir.join("routes.yaml")).unwrap();
}

/// One upstream, one manifest directory, one sidecar.
struct Harness {
    upstream: Upstream,
    sidecar: SidecarProcess,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with_args(&[]).await
    }

    async fn start_with_args(args: &[&str]) -> Self {
        let upstream = Upstream::start(&[Wire::OpenAi]).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("routes.yaml"), manifest(&upstream.base_url(), &[])).unwrap();
        let sidecar = SidecarProcess::start_with_args(dir.path(), args).await.unwrap();
        // A client timeout turns a hang into a failure instead of a stuck test.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            upstream,
            sidecar,
            dir,
            http,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.sidecar.url(path))
            .header("authorization", "Bearer client-token")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn chat(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/chat/completions", body).await
    }

    async fn post_raw(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.sidecar.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn models(&self) -> BTreeSet<String> {
        let response = self.http.get(self.sidecar.url("/v1/models")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The id the upstream gave its latest answer.
    async fn last_upstream_id(&self) -> String {
        format!("chatcmpl-mock-{}", self.upstream.requests().len())
    }

    /// A good request still gets a good answer.
    async fn assert_still_serving(&self) {
        let response = self.chat(&hello("chat")).await;
        assert_eq!(response.status(), StatusCode::OK, "the sidecar stopped serving");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], OK_CONTENT);
    }
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]})
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Checks `{"error": {"message", "type", "param", "code"}}` with exactly those keys and the given values.
#[track_caller]
fn assert_openai_error(body: &Value, kind: &str, code: Option<&str>, param: Option<&str>) {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("not an OpenAI error: {body}"));
    let keys: BTreeSet<&str> = error.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["message", "type", "param", "code"]),
        "error keys of {body}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "empty message in {body}"
    );
    assert_eq!(error["type"], kind, "type of {body}");
    assert_eq!(error["code"], json!(code), "code of {body}");
    assert_eq!(error["param"], json!(param), "param of {body}");
}

#[tokio::test]
async fn plain_chat_reaches_the_backend_model_with_the_secret_key_and_returns_its_answer() {
    let h = Harness::start().await;
    let request = json!({
        "model": "chat",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
        "temperature": 0.5,
        "metadata": {"ticket": "T-1"},
        "some_future_field": [1, 2, 3]
    });

    let response = h.chat(&request).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-route"), Some("team-a/chat"));
    assert_eq!(header(&response, "x-sluice-backend"), Some(BACKEND));
    assert_eq!(header(&response, "x-sluice-attempts"), Some("1"));
    assert!(header(&response, "content-type").is_some_and(|t| t.starts_with("application/json")));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, openai::completion("chatcmpl-mock-1", "mock-ok"));

    let seen = h.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test-secret-123"));
    let mut expected = request.clone();
    expected["model"] = json!("mock-ok");
    assert_eq!(
        seen[0].body, expected,
        "only `model` is rewritten; every other field passes through"
    );
}

#[tokio::test]
async fn streamed_chat_passes_chunks_through_and_hides_the_usage_it_asked_for_itself() {
    let h = Harness::start().await;
    for client_options in [None, Some(json!({"include_usage": false}))] {
        let mut request = hello("chat");
        request["stream"] = json!(true);
        if let Some(options) = &client_options {
            request["stream_options"] = options.clone();
        }

        let response = h.chat(&request).await;

        assert_eq!(response.status(), StatusCode::OK);
        assert!(header(&response, "content-type").is_some_and(|t| t.starts_with("text/event-stream")));
        assert_eq!(header(&response, "x-sluice-route"), Some("team-a/chat"));
        assert_eq!(header(&response, "x-sluice-backend"), Some(BACKEND));
        assert_eq!(header(&response, "x-sluice-attempts"), Some("1"));
        let text = response.text().await.unwrap();
        let (events, done) = openai_events(&text).unwrap();
        assert!(done, "the stream must end with data: [DONE]:\n{text}");
        let id = h.last_upstream_id().await;
        assert_eq!(
            events,
            openai::completion_chunks(&id, "mock-ok", false),
            "stream options {client_options:?}"
        );
        assert!(
            events.iter().all(|e| e.get("usage").is_none()),
            "no usage key when the client did not ask"
        );

        let seen = h.upstream.requests();
        let sent = &seen.last().unwrap().body;
        assert_eq!(sent["model"], "mock-ok");
        assert_eq!(sent["stream"], true);
        assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    }
}

#[tokio::test]
async fn streamed_chat_with_include_usage_ends_with_the_usage_chunk() {
    let h = Harness::start().await;
    let mut request = hello("chat");
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});

    let response = h.chat(&request).await;

    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let (events, done) = openai_events(&text).unwrap();
    assert!(done, "the stream must end with data: [DONE]:\n{text}");
    assert_eq!(events, openai::completion_chunks("chatcmpl-mock-1", "mock-ok", true));
    let last = events.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], openai::usage());
    assert_eq!(
        h.upstream.requests()[0].body["stream_options"],
        json!({"include_usage": true})
    );
}

#[tokio::test]
async fn an_upstream_that_ignores_stream_still_gives_the_client_a_stream_of_its_answer() {
    let h = Harness::start().await;
    for include_usage in [false, true] {
        let mut request = hello("whole");
        request["stream"] = json!(true);
        request["stream_options"] = json!({"include_usage": include_usage});

        let response = h.chat(&request).await;

        assert_eq!(response.status(), StatusCode::OK);
        assert!(header(&response, "content-type").is_some_and(|t| t.starts_with("text/event-stream")));
        let text = response.text().await.unwrap();
        let (events, done) = openai_events(&text).unwrap();
        assert!(done, "the stream must end with data: [DONE]:\n{text}");
        let content: String = events
            .iter()
            .filter_map(|e| e["choices"].get(0)?["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, OK_CONTENT);
        assert!(events.iter().all(|e| e["object"] == "chat.completion.chunk"), "{text}");
        let finishes: Vec<&Value> = events
            .iter()
            .filter_map(|e| e["choices"].get(0)?.get("finish_reason").filter(|f| !f.is_null()))
            .collect();
        assert_eq!(finishes, [&json!("stop")]);
        let usage: Vec<&Value> = events.iter().filter_map(|e| e.get("usage")).collect();
        if include_usage {
            assert_eq!(usage, [&openai::usage()], "the upstream's usage, as it was");
            assert_eq!(events.last().unwrap()["choices"], json!([]));
        } else {
            assert!(usage.is_empty(), "{text}");
        }
    }
    // Both were accounted from the upstream's usage, not estimated.
    let metrics = h.http.get(h.sidecar.admin_url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("sluice_tokens_total")
            && l.contains("route=\"team-a/whole\"")
            && l.contains("gen_ai_token_type=\"output\"")
            && l.ends_with(&format!(" {}", 2 * upstream::COMPLETION_TOKENS))),
        "{metrics}"
    );
}

#[tokio::test]
async fn streamed_chunks_reach_the_client_as_the_upstream_sends_them() {
    let h = Harness::start().await;
    let mut request = hello("slow-stream");
    request["stream"] = json!(true);

    let response = h.chat(&request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut arrivals = Vec::new();
    let mut text = Vec::new();
    let mut frames = response.bytes_stream();
    while let Some(frame) = frames.next().await {
        let frame = frame.unwrap();
        if !frame.is_empty() {
            arrivals.push(Instant::now());
            text.extend_from_slice(&frame);
        }
    }

    let (events, done) = openai_events(&String::from_utf8(text).unwrap()).unwrap();
    assert!(done);
    assert_eq!(events.len(), upstream::OK_PIECES.len() + 2);
    // The upstream pauses between chunks; a sidecar that buffered the answer would deliver it in one burst.
    let pauses = arrivals
        .windows(2)
        .filter(|w| w[1] - w[0] >= upstream::SLOW_CHUNK_INTERVAL / 2)
        .count();
    assert!(
        pauses >= 2,
        "chunks arrived in {} reads with {pauses} pauses: the stream was buffered",
        arrivals.len()
    );
}

#[tokio::test]
async fn upstream_client_errors_come_back_with_their_status_and_body() {
    let h = Harness::start().await;
    for (model, status) in [
        ("fails-400", StatusCode::BAD_REQUEST),
        ("fails-401", StatusCode::UNAUTHORIZED),
    ] {
        let response = h.chat(&hello(model)).await;

        assert_eq!(response.status(), status, "{model}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            openai::failure_body(status),
            "{model}: the upstream's error passes through untouched"
        );
    }
    assert_eq!(h.upstream.requests().len(), 2, "client errors are not retried");
    h.assert_still_serving().await;
}

#[tokio::test]
async fn upstream_server_errors_become_502_with_an_openai_error() {
    let h = Harness::start().await;
    for model in ["fails-500", "fails-503"] {
        let response = h.chat(&hello(model)).await;

        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{model}");
        let body: Value = response.json().await.unwrap();
        assert_openai_error(&body, "upstream_error", Some("upstream_error"), None);
    }
    assert_eq!(
        h.upstream.requests().len(),
        2,
        "retry.attempts 1 allows one attempt each"
    );
    h.assert_still_serving().await;
}

#[tokio::test]
async fn upstream_429_comes_back_as_429_with_its_retry_after() {
    let h = Harness::start().await;

    let response = h.chat(&hello("fails-429")).await;

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after"), Some(upstream::RETRY_AFTER_SECS));
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "rate_limit_error", Some("upstream_rate_limited"), None);
    h.assert_still_serving().await;
}

#[tokio::test]
async fn malformed_json_is_refused_with_400_and_the_sidecar_keeps_serving() {
    let h = Harness::start().await;
    for raw in [r#"{"model": "chat", "messages": ["#, "hello", ""] {
        let response = h.post_raw(raw.to_owned()).await;

        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "body {raw:?}");
        let body: Value = response.json().await.unwrap();
        assert_openai_error(&body, "invalid_request_error", None, None);
        h.assert_still_serving().await;
    }
    assert_eq!(
        h.upstream.requests().len(),
        3,
        "only the good requests reached the upstream"
    );
}

#[tokio::test]
async fn missing_or_mistyped_fields_are_refused_with_400_naming_the_field() {
    let h = Harness::start().await;
    let cases = [
        (json!({"model": "chat"}), "messages"),
        (json!({"messages": [{"role": "user", "content": "hi"}]}), "model"),
        (json!({"model": "chat", "messages": "hi"}), "messages"),
        (
            json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "x"}),
            "max_tokens",
        ),
        (
            json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}),
            "stream",
        ),
    ];
    for (request, param) in cases {
        let response = h.chat(&request).await;

        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{request}");
        let body: Value = response.json().await.unwrap();
        assert_openai_error(&body, "invalid_request_error", None, Some(param));
        h.assert_still_serving().await;
    }
    assert!(h.upstream.requests().iter().all(|r| r.body["model"] == "mock-ok"));
}

#[tokio::test]
async fn unknown_model_is_404_model_not_found_naming_the_valid_models() {
    let h = Harness::start().await;

    let response = h.chat(&hello("gpt-nope")).await;

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "invalid_request_error", Some("model_not_found"), Some("model"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("gpt-nope"), "{message}");
    for (model, _) in ROUTES {
        assert!(message.contains(model), "{message} does not name {model}");
    }
    assert!(h.upstream.requests().is_empty());
    h.assert_still_serving().await;
}

/// A valid chat request whose body is `size` bytes long.
fn chat_body_of_size(size: usize) -> String {
    let frame = json!({"model": "chat", "messages": [{"role": "user", "content": ""}]}).to_string();
    let padding = size - frame.len();
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "a".repeat(padding)}]}).to_string();
    assert_eq!(body.len(), size);
    body
}

/// Sends only the head of a chat request declaring a `content_length` body, and reads the answer.
///
/// Sending no body keeps the test deterministic: a server that refuses early and closes while the
/// client is still writing megabytes makes some clients (hyper's among them) fail with EPIPE before
/// they read the answer.
async fn post_declaring_length(addr: std::net::SocketAddr, content_length: usize) -> (u16, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {content_length}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 8192];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            received.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&received).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok());
                if n == 0 || length.is_some_and(|len| body.len() >= len) {
                    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                    return (status, serde_json::from_str(body).unwrap());
                }
            }
            assert!(n > 0, "connection closed before a full answer: {text:?}");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("no answer to an over-limit request")
}

#[tokio::test]
async fn body_declared_over_the_10_mib_default_is_refused_with_413_before_it_is_sent() {
    let h = Harness::start().await;

    let (status, body) = post_declaring_length(h.sidecar.addr, 10 * 1024 * 1024 + 1).await;

    assert_eq!(status, 413);
    assert_openai_error(&body, "invalid_request_error", Some("request_too_large"), None);
    h.assert_still_serving().await;
    assert_eq!(h.upstream.requests().len(), 1);
}

#[tokio::test]
async fn body_of_exactly_10_mib_is_accepted() {
    let h = Harness::start().await;

    let body = chat_body_of_size(10 * 1024 * 1024);
    let sent: Value = serde_json::from_str(&body).unwrap();

    let response = h.post_raw(body).await;

    assert_eq!(response.status(), StatusCode::OK);
    let seen = h.upstream.requests();
    assert_eq!(seen[0].body["messages"], sent["messages"]);
}

#[tokio::test]
async fn max_body_bytes_flag_sets_the_limit() {
    let h = Harness::start_with_args(&["--max-body-bytes", "2048"]).await;

    let at_limit = h.post_raw(chat_body_of_size(2048)).await;
    assert_eq!(at_limit.status(), StatusCode::OK);

    let over = h.post_raw(chat_body_of_size(2049)).await;
    assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = over.json().await.unwrap();
    assert_openai_error(&body, "invalid_request_error", Some("request_too_large"), None);

    // Without a Content-Length the limit holds as the body streams in.
    let chunks = vec![Ok::<_, std::io::Error>(chat_body_of_size(4096))];
    let streamed = h
        .post_raw(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .await;
    assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);
    h.assert_still_serving().await;
}

#[tokio::test]
async fn upstream_invalid_json_becomes_502() {
    let h = Harness::start().await;

    let response = h.chat(&hello("garbage")).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "upstream_error", Some("upstream_invalid_response"), None);

    // A stream whose first event is not JSON fails before anything reached the client: a plain 502 too.
    let mut request = hello("garbage");
    request["stream"] = json!(true);
    let response = h.chat(&request).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "upstream_error", Some("upstream_invalid_response"), None);
    h.assert_still_serving().await;
}

#[tokio::test]
async fn upstream_closing_mid_stream_ends_the_stream_with_an_error_event() {
    let h = Harness::start().await;
    let mut request = hello("cut-stream");
    request["stream"] = json!(true);

    let response = h.chat(&request).await;

    assert_eq!(response.status(), StatusCode::OK);
    let text = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the stream must end, not hang")
        .unwrap();
    let data = sse_data(&text);
    let id = h.last_upstream_id().await;
    let expected = openai::completion_chunks(&id, "mock-cut-stream", false);
    let n = openai::CUT_AFTER_CHUNKS;
    assert!(
        data.len() > n,
        "the client must see the chunks and then an error event:\n{text}"
    );
    let chunks: Vec<Value> = data[..n].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks, expected[..n]);
    let error: Value = serde_json::from_str(&data[n]).unwrap();
    assert_openai_error(&error, "upstream_error", Some("upstream_error"), None);
    assert!(
        data[n + 1..].iter().all(|d| d == "[DONE]"),
        "nothing but [DONE] may follow the error:\n{text}"
    );
    h.assert_still_serving().await;
}

#[tokio::test]
async fn upstream_closing_mid_answer_becomes_502() {
    let h = Harness::start().await;

    let response = h.chat(&hello("cut-stream")).await;

    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "upstream_error");
    h.assert_still_serving().await;
}

#[tokio::test]
async fn stalled_upstream_times_out_with_504() {
    let h = Harness::start().await;
    let mut streamed = hello("stall");
    streamed["stream"] = json!(true);
    for request in [hello("stall"), streamed] {
        let response = h.chat(&request).await;

        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT, "{request}");
        let body: Value = response.json().await.unwrap();
        assert_openai_error(&body, "timeout", Some("upstream_timeout"), None);
    }
    h.assert_still_serving().await;
}

#[tokio::test]
async fn embeddings_reach_the_backend_model_and_return_its_vectors() {
    let h = Harness::start().await;
    let request = json!({"model": "embed", "input": ["hello world", "bye"]});

    let response = h.post("/v1/embeddings", &request).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-route"), Some("team-a/embed"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        openai::embedding_list("mock-ok", &[2, 1], upstream::EMBEDDING_DIMENSIONS, false)
    );
    let seen = h.upstream.requests();
    assert_eq!(seen[0].path, "/v1/embeddings");
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test-secret-123"));
    assert_eq!(
        seen[0].body,
        json!({"model": "mock-ok", "input": ["hello world", "bye"]})
    );
}

#[tokio::test]
async fn models_endpoint_lists_every_model_of_every_route() {
    let h = Harness::start().await;

    let response = h.http.get(h.sidecar.url("/v1/models")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    let ids: BTreeSet<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ROUTES.iter().map(|(name, _)| *name).collect());
    assert_eq!(data.len(), ROUTES.len(), "each model once");
    for model in data {
        let keys: BTreeSet<&str> = model.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["id", "object", "created", "owned_by"]), "{model}");
        assert_eq!(model["object"], "model");
        assert!(model["created"].is_u64(), "{model}");
        assert!(model["owned_by"].is_string(), "{model}");
    }
}

#[tokio::test]
async fn admin_reports_health_readiness_and_config_without_secrets() {
    let h = Harness::start().await;
    for path in ["/healthz", "/readyz"] {
        let response = h.http.get(h.sidecar.admin_url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }

    let response = h.http.get(h.sidecar.admin_url("/config")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let _: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("/config is not JSON ({e}):\n{text}"));
    for (name, model) in ROUTES {
        assert!(text.contains(name), "/config lacks route {name}:\n{text}");
        assert!(text.contains(model), "/config lacks backend model {model}:\n{text}");
    }
    assert!(
        text.contains(&h.upstream.base_url()),
        "/config lacks the backend's baseUrl"
    );
    assert!(!text.contains(SECRET), "/config leaks the API key:\n{text}");
}

#[tokio::test]
async fn logs_name_what_was_loaded_and_never_the_key() {
    let h = Harness::start().await;
    assert!(
        h.sidecar.stderr().contains("team-a/chat"),
        "the load is not logged:\n{}",
        h.sidecar.stderr()
    );

    // Exercise the paths that might log a request or an upstream error.
    h.assert_still_serving().await;
    let _ = h.chat(&hello("fails-401")).await.text().await;
    let _ = h.chat(&hello("fails-500")).await.text().await;
    let mut request = hello("cut-stream");
    request["stream"] = json!(true);
    let _ = h.chat(&request).await.text().await;
    replace_manifest(h.dir.path(), &manifest(&h.upstream.base_url(), &["chat-reloaded"]));
    let deadline = Instant::now() + EVENTUALLY;
    while !h.models().await.contains("chat-reloaded") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for (stream, text) in [("stderr", h.sidecar.stderr()), ("stdout", h.sidecar.stdout())] {
        assert!(!text.contains(SECRET), "{stream} leaks the API key:\n{text}");
    }
}

#[tokio::test]
async fn editing_the_manifest_adds_a_model_without_a_restart() {
    let h = Harness::start().await;
    assert!(!h.models().await.contains("chat-2"));

    // Rewrite in place, as `>` in a shell does.
    std::fs::write(
        h.dir.path().join("routes.yaml"),
        manifest(&h.upstream.base_url(), &["chat-2"]),
    )
    .unwrap();

    let deadline = Instant::now() + EVENTUALLY;
    while !h.models().await.contains("chat-2") {
        assert!(
            Instant::now() < deadline,
            "chat-2 never appeared; stderr:\n{}",
            h.sidecar.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = h.chat(&hello("chat-2")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.upstream.requests().last().unwrap().body["model"], "mock-ok");
}

#[tokio::test]
async fn an_invalid_edit_keeps_the_running_config_and_logs_the_field() {
    let h = Harness::start().await;
    let base_url = h.upstream.base_url();
    replace_manifest(h.dir.path(), &manifest(&base_url, &["chat-2"]));
    let deadline = Instant::now() + EVENTUALLY;
    while !h.models().await.contains("chat-2") {
        assert!(
            Instant::now() < deadline,
            "chat-2 never appeared; stderr:\n{}",
            h.sidecar.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The same routes, but `chat` now adds chat-3 and has two backends named `mock`.
    let mut invalid = secret_doc();
    for (name, model) in ROUTES {
        if *name == "chat" {
            let backends = backend_yaml(BACKEND, &base_url, model) + &backend_yaml(BACKEND, &base_url, "mock-500");
            invalid.push_str(&route_doc(name, &["chat", "chat-2", "chat-3"], &backends));
        } else {
            invalid.push_str(&route_doc(name, &[name], &backend_yaml(BACKEND, &base_url, model)));
        }
    }
    replace_manifest(h.dir.path(), &invalid);

    h.sidecar
        .wait_for_stderr("spec.backends[1].name", EVENTUALLY)
        .await
        .unwrap();
    let models = h.models().await;
    assert!(
        models.contains("chat-2") && !models.contains("chat-3"),
        "the old config must keep serving: {models:?}"
    );
    let response = h.chat(&hello("chat-2")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let ready = h.http.get(h.sidecar.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "an invalid edit does not make the sidecar unready"
    );
}
