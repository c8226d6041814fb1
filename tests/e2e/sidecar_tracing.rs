//! OpenTelemetry traces from the real sidecar (issue 22), received by an OTLP collector
//! stand-in made of the field's receiver types: the request span and one span per attempt with
//! the GenAI attributes, the caller's trace continued and sent on to the provider, over gRPC and
//! HTTP/protobuf; no prompt and no key in any span; a collector that is down changes no answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::otlp::{Collector, ReceivedSpan};
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::upstream::{self, Upstream, Wire};

const NAMESPACE: &str = "team-a";
/// How long a test waits for spans: a bound, never a target (the batch exporter sends every 5 s).
const EVENTUALLY: Duration = Duration::from_secs(30);
/// The API key the backends use: it must appear in no span.
const KEY: &str = "sk-tracing-test-key-8f3a";
/// The prompt: it must appear in no span either.
const PROMPT: &str = "a prompt that must never be exported 51c7";
/// A caller's trace context.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// One upstream, the manifests of route `chat` (first backend 500s, second answers), a sidecar.
struct Traced {
    upstream: Upstream,
    sidecar: SidecarProcess,
    _dir: tempfile::TempDir,
}

async fn start(env: &[(&str, &str)]) -> Traced {
    let upstream = Upstream::start(&[Wire::OpenAi]).await.unwrap();
    let url = upstream.base_url();
    let backend = |name: &str, model: &str, priority: u32| {
        json!({"name": name, "provider": "openai-compatible", "baseUrl": url, "model": model, "priority": priority,
            "credentialsRef": {"name": "upstream", "key": "apiKey"},
            "pricing": {"inputPerMTok": "1", "outputPerMTok": "2"}})
    };
    let docs = [
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "upstream", "namespace": NAMESPACE},
            "stringData": {"apiKey": KEY}}),
        json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "ModelRoute",
            "metadata": {"name": "chat", "namespace": NAMESPACE},
            "spec": {"models": ["chat"], "backends": [backend("primary", "mock-500", 0), backend("secondary", "mock-ok", 1)]}}),
    ];
    let dir = tempfile::tempdir().unwrap();
    let text: Vec<String> = docs.iter().map(|d| serde_json::to_string_pretty(d).unwrap()).collect();
    std::fs::write(dir.path().join("routes.yaml"), text.join("\n---\n")).unwrap();
    let sidecar = SidecarProcess::start_with_env(dir.path(), &[], env).await.unwrap();
    Traced {
        upstream,
        sidecar,
        _dir: dir,
    }
}

impl Traced {
    async fn chat(&self, headers: &[(&str, &str)]) -> reqwest::Response {
        self.send(
            json!({"model": "chat", "max_tokens": 32, "temperature": 0.5,
            "messages": [{"role": "user", "content": PROMPT}]}),
            headers,
        )
        .await
    }

    async fn send(&self, body: serde_json::Value, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(self.sidecar.url("/v1/chat/completions"))
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }
}

fn env(endpoint: &str, protocol: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_SERVICE_NAME", "sidecar-under-test".to_owned()),
        // Export soon after each span ends, so that the bound above is never approached.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The request span and the attempt spans of one trace, once all three have arrived.
async fn one_request(collector: &Collector) -> (ReceivedSpan, Vec<ReceivedSpan>) {
    let spans = collector
        .wait_for(EVENTUALLY, |spans| {
            spans.iter().any(|s| s.attr("sluice.route").is_some())
                && spans.iter().filter(|s| s.attr("sluice.attempt").is_some()).count() >= 2
        })
        .await
        .unwrap();
    let request = spans.iter().find(|s| s.attr("sluice.route").is_some()).unwrap().clone();
    let mut attempts: Vec<_> = spans
        .into_iter()
        .filter(|s| s.attr("sluice.attempt").is_some())
        .collect();
    attempts.sort_by_key(|s| s.attr("sluice.attempt"));
    (request, attempts)
}

fn assert_nothing_secret(spans: &[ReceivedSpan]) {
    for span in spans {
        let text = span.all_text();
        assert!(!text.contains(KEY), "the key leaked into {text}");
        assert!(!text.contains(PROMPT), "the prompt leaked into {text}");
        assert!(!text.contains("authorization"), "a header leaked into {text}");
    }
}

#[tokio::test]
async fn a_failed_over_request_exports_a_request_span_and_two_attempt_spans_over_grpc() {
    let collector = Collector::start().await.unwrap();
    let env = env(&collector.grpc_endpoint(), "grpc");
    let g = start(&borrowed(&env)).await;

    let response = g.chat(&[]).await;

    assert_eq!(response.status(), StatusCode::OK);
    let (request, attempts) = one_request(&collector).await;
    assert_eq!(request.service, "sidecar-under-test");
    assert_eq!(request.span.name, "chat chat");
    assert_eq!(request.span.kind, 2, "SERVER");
    assert_eq!(
        request.parent_id(),
        "",
        "no traceparent came in: the sidecar started the trace"
    );
    for (key, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "chat"),
        ("gen_ai.request.max_tokens", "32"),
        ("gen_ai.request.temperature", "0.5"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.response.finish_reasons", "stop"),
        ("sluice.route", "team-a/chat"),
        ("sluice.backend", "secondary"),
        ("sluice.attempts", "2"),
        ("sluice.cache", "bypass"),
        ("sluice.outcome", "ok"),
    ] {
        assert_eq!(
            request.attr(key).as_deref(),
            Some(value),
            "{key} in {}",
            request.all_text()
        );
    }
    let tokens = |key: &str| request.attr(key).and_then(|t| t.parse::<u64>().ok());
    assert_eq!(tokens("gen_ai.usage.input_tokens"), Some(upstream::PROMPT_TOKENS));
    assert_eq!(tokens("gen_ai.usage.output_tokens"), Some(upstream::COMPLETION_TOKENS));
    assert!(request.attr("gen_ai.response.id").is_some(), "{}", request.all_text());
    assert!(
        request.attr("gen_ai.response.model").is_some(),
        "{}",
        request.all_text()
    );
    assert!(request.attr("sluice.cost_usd").is_some(), "{}", request.all_text());
    assert_eq!(attempts.len(), 2);
    let (first, second) = (&attempts[0], &attempts[1]);
    for attempt in &attempts {
        assert_eq!(attempt.trace_id(), request.trace_id());
        assert_eq!(
            attempt.parent_id(),
            request.span_id(),
            "an attempt is a child of the request"
        );
        assert_eq!(attempt.span.kind, 3, "CLIENT");
        assert_eq!(attempt.attr("gen_ai.provider.name").as_deref(), Some("openai"));
        assert_eq!(attempt.attr("server.address").as_deref(), Some("127.0.0.1"));
        assert!(attempt.attr("server.port").is_some());
    }
    assert_eq!(first.attr("sluice.backend").as_deref(), Some("primary"));
    assert_eq!(first.span.name, "chat mock-500");
    assert_eq!(first.attr("http.response.status_code").as_deref(), Some("500"));
    assert_eq!(first.attr("error.type").as_deref(), Some("500"));
    assert_eq!(first.attr("sluice.attempt.failed_over").as_deref(), Some("true"));
    assert_eq!(second.attr("sluice.backend").as_deref(), Some("secondary"));
    assert_eq!(second.attr("sluice.attempt.outcome").as_deref(), Some("answered"));
    assert_eq!(second.attr("error.type"), None);
    assert_nothing_secret(&collector.spans());
}

#[tokio::test]
async fn a_streamed_answer_puts_its_id_model_finish_reason_and_first_chunk_time_on_the_request_span() {
    let collector = Collector::start().await.unwrap();
    let env = env(&collector.http_endpoint(), "http/protobuf");
    let g = start(&borrowed(&env)).await;

    let response = g
        .send(
            json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": PROMPT}]}),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.contains("data: [DONE]"), "{text}");

    let (request, _) = one_request(&collector).await;
    let id = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .find_map(|d| {
            serde_json::from_str::<serde_json::Value>(d).ok()?["id"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap();
    for (key, value) in [
        ("gen_ai.response.id", id.as_str()),
        ("gen_ai.response.model", "mock-ok"),
        ("gen_ai.response.finish_reasons", "stop"),
        ("sluice.outcome", "ok"),
    ] {
        assert_eq!(
            request.attr(key).as_deref(),
            Some(value),
            "{key} in {}",
            request.all_text()
        );
    }
    assert!(
        request.attr("gen_ai.response.time_to_first_chunk").is_some(),
        "{}",
        request.all_text()
    );
    assert_nothing_secret(&collector.spans());
}

#[tokio::test]
async fn a_callers_traceparent_is_continued_and_reaches_the_upstream_with_the_same_trace_id() {
    let collector = Collector::start().await.unwrap();
    let env = env(&collector.http_endpoint(), "http/protobuf");
    let g = start(&borrowed(&env)).await;
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");

    let response = g
        .chat(&[("traceparent", &traceparent), ("tracestate", "caller=1")])
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let (request, attempts) = one_request(&collector).await;
    assert_eq!(request.trace_id(), TRACE_ID);
    assert_eq!(request.parent_id(), CALLER_SPAN);
    let sent: Vec<String> = g
        .upstream
        .requests()
        .iter()
        .map(|r| r.headers.get("traceparent").cloned().unwrap_or_default())
        .collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for (upstream, attempt) in sent.iter().zip(&attempts) {
        assert_eq!(
            upstream,
            &format!("00-{TRACE_ID}-{}-01", attempt.span_id()),
            "each attempt sends its own span"
        );
    }
    let states: Vec<_> = g
        .upstream
        .requests()
        .iter()
        .map(|r| r.headers.get("tracestate").cloned())
        .collect();
    assert_eq!(states, vec![Some("caller=1".to_owned()); 2]);
    assert_nothing_secret(&collector.spans());
    // The access line names the trace.
    g.sidecar
        .wait_for_stderr(&format!("trace_id=\"{TRACE_ID}\""), EVENTUALLY)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_collector_changes_no_answer_and_no_shutdown() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    for protocol in ["grpc", "http/protobuf"] {
        let env = env(&endpoint, protocol);
        let mut g = start(&borrowed(&env)).await;
        for _ in 0..5 {
            let response = g.chat(&[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{protocol}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["choices"][0]["message"]["content"], upstream::OK_CONTENT);
        }
        let status = g.sidecar.terminate().await.unwrap();
        assert!(status.success(), "{protocol}: {status:?}\n{}", g.sidecar.stderr());
    }
}

#[tokio::test]
async fn without_a_collector_nothing_is_added_upstream_and_no_trace_is_logged() {
    let g = start(&[]).await;
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");

    let response = g.chat(&[("traceparent", &traceparent)]).await;

    assert_eq!(response.status(), StatusCode::OK);
    for request in g.upstream.requests() {
        assert_eq!(
            request.headers.get("traceparent"),
            None,
            "tracing is off: nothing is sent on"
        );
    }
    let stderr = g.sidecar.stderr();
    assert!(
        !stderr.contains("trace_id="),
        "no trace is active when tracing is off:\n{stderr}"
    );
}
