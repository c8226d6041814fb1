//! The real `sluice-sidecar` binary serving OpenAI clients from Amazon Bedrock backends (the
//! in-test Bedrock upstream, which checks every request's SigV4 signature): plain and streamed
//! Converse answers, a tool round trip, cache tokens in usage and cost, throttling answered by a
//! second backend, an exception inside the event stream, credentials from a Secret's credentials
//! file or from the pod's web identity (exchanged at STS and refreshed when Bedrock calls them
//! expired), and no credential in `/config` or the log.
//!
//! Needs `cargo build -p sluice-sidecar` first (see `tests/support/sidecar.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod provider;

use std::time::Duration;

use provider::{assert_openai_error, header, hello, streamed, weather_tool};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::sse::{openai_events, sse_data};
use sluice_tests::upstream::bedrock::auth::{
    ACCESS_KEY_ID, CONTAINER_PATH, CONTAINER_TOKEN, SECRET_ACCESS_KEY, STS_PATH, WEB_IDENTITY_TOKEN,
};
use sluice_tests::upstream::bedrock::{CACHE_WRITE_TOKENS, THROTTLED_MESSAGE};
use sluice_tests::upstream::{
    CACHED_TOKENS, COMPLETION_TOKENS, OK_CONTENT, OK_PIECES, PROMPT_TOKENS, TOOL_ANSWER_PREFIX, TOOL_NAME, Upstream,
    Wire,
};

const NAMESPACE: &str = "team-a";
/// The role the pod's web identity assumes.
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/sluice-bedrock";
/// A model id with the colon Bedrock's ids have, which must travel percent-encoded.
const MODEL_ID: &str = "mock-ok-v1:0";
/// Prices that make the cost exact: $1 input, $0.50 cache read, $2 cache write, $4 output per MTok.
const PRICING: &str =
    "{inputPerMTok: \"1.00\", cachedInputPerMTok: \"0.50\", cacheWriteInputPerMTok: \"2.00\", outputPerMTok: \"4.00\"}";

/// How a backend authenticates.
#[derive(Clone, Copy)]
enum Auth {
    /// The Secret `bedrock` holding a credentials file with this secret key.
    Secret(&'static str),
    /// The pod's web identity.
    Pod,
}

/// A Secret with a credentials file whose `default` profile has the test key id and `secret`.
fn secret(name: &str, secret: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         stringData: {{credentials: \"# a test key\\n[default]\\naws_access_key_id = {ACCESS_KEY_ID}\\n\
         aws_secret_access_key = {secret}\\n\"}}\n---\n"
    )
}

/// A route `name` whose backends are `(backend name, model)`, tried in that order.
fn route(name: &str, base_url: &str, auth: Auth, backends: &[(&str, &str)]) -> String {
    let credentials = match auth {
        Auth::Secret(_) => format!("\n    credentialsRef: {{name: {name}-keys, key: credentials}}"),
        Auth::Pod => String::new(),
    };
    let mut out = match auth {
        Auth::Secret(key) => secret(&format!("{name}-keys"), key),
        Auth::Pod => String::new(),
    };
    out.push_str(&format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         spec:\n  models: [{name}]\n  retry: {{attempts: 2, backoff: {{base: 10ms, max: 10ms}}}}\n  backends:\n"
    ));
    for (priority, (backend, model)) in backends.iter().enumerate() {
        out.push_str(&format!(
            "  - name: {backend}\n    provider: bedrock\n    bedrock: {{region: us-east-1}}\n    baseUrl: {base_url}\n    \
             model: \"{model}\"\n    priority: {priority}\n    pricing: {PRICING}{credentials}\n"
        ));
    }
    out.push_str("---\n");
    out
}

struct Harness {
    upstream: Upstream,
    sidecar: SidecarProcess,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Harness {
    /// An upstream and a sidecar serving the routes `manifest` makes of the upstream's URL, with
    /// `env` (given the upstream's URL and a scratch directory) in the sidecar's environment.
    async fn start(
        manifest: impl Fn(&str) -> String,
        env: impl Fn(&str, &std::path::Path) -> Vec<(String, String)>,
    ) -> Self {
        let upstream = Upstream::start(&[Wire::Bedrock]).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let base_url = upstream.base_url();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        std::fs::write(manifests.join("routes.yaml"), manifest(&base_url)).unwrap();
        let env = env(&base_url, dir.path());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let sidecar = SidecarProcess::start_with_env(&manifests, &[], &env).await.unwrap();
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

    /// Routes whose backends use the Secret's keys.
    async fn with_secret() -> Self {
        Self::start(
            |url| {
                let auth = Auth::Secret(SECRET_ACCESS_KEY);
                [
                    route("chat", url, auth, &[("bedrock", MODEL_ID)]),
                    route("tool", url, auth, &[("bedrock", "mock-tool")]),
                    route("error-event", url, auth, &[("bedrock", "mock-error-event")]),
                    route("bad", url, auth, &[("bedrock", "mock-400")]),
                    route(
                        "throttled",
                        url,
                        auth,
                        &[("first", "mock-429"), ("second", "mock-ok-b")],
                    ),
                    route(
                        "wrong-key",
                        url,
                        Auth::Secret("not-the-secret"),
                        &[("bedrock", "mock-ok")],
                    ),
                ]
                .concat()
            },
            |_, _| Vec::new(),
        )
        .await
    }

    /// A route whose backend uses the pod's web identity, its token file written in the scratch
    /// directory and STS at the upstream.
    async fn with_web_identity() -> Self {
        Self::start(
            |url| route("chat", url, Auth::Pod, &[("bedrock", MODEL_ID)]),
            |url, dir| {
                let token_file = dir.join("token");
                std::fs::write(&token_file, format!("{WEB_IDENTITY_TOKEN}\n")).unwrap();
                vec![
                    ("AWS_ROLE_ARN".into(), ROLE_ARN.into()),
                    ("AWS_WEB_IDENTITY_TOKEN_FILE".into(), token_file.display().to_string()),
                    ("AWS_ENDPOINT_URL_STS".into(), format!("{url}{STS_PATH}")),
                ]
            },
        )
        .await
    }

    /// A route whose backend uses EKS Pod Identity: the container credentials endpoint at the
    /// upstream, its authorization token in a file.
    async fn with_pod_identity() -> Self {
        Self::start(
            |url| route("chat", url, Auth::Pod, &[("bedrock", MODEL_ID)]),
            |url, dir| {
                let token_file = dir.join("pod-identity-token");
                std::fs::write(&token_file, CONTAINER_TOKEN).unwrap();
                vec![
                    (
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
                        format!("{url}{CONTAINER_PATH}"),
                    ),
                    (
                        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
                        token_file.display().to_string(),
                    ),
                ]
            },
        )
        .await
    }

    async fn chat(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.sidecar.url("/v1/chat/completions"))
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

/// The usage every answer reports, as OpenAI's.
fn expected_usage() -> Value {
    json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
           "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
           "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "cache_creation_tokens": CACHE_WRITE_TOKENS}})
}

#[tokio::test]
async fn chat_is_a_signed_converse_call_answered_as_an_openai_completion_with_cache_tokens_and_cost() {
    let h = Harness::with_secret().await;

    let response = h.chat(&hello("chat")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend"), Some("bedrock"));
    // 6 uncached × $1 + 4 read × $0.50 + 2 written × $2 + 5 out × $4 per MTok = 32 µ$.
    assert_eq!(header(&response, "x-sluice-cost-usd"), Some("0.000032"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL_ID);
    assert_eq!(
        body["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": OK_CONTENT}, "logprobs": null, "finish_reason": "stop"}])
    );
    assert_eq!(body["usage"], expected_usage());

    let seen = h.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/model/mock-ok-v1%3A0/converse");
    let authorization = seen[0].header("authorization").unwrap();
    assert!(
        authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")),
        "{authorization}"
    );
    assert!(
        authorization.contains("/us-east-1/bedrock/aws4_request"),
        "{authorization}"
    );
    assert_eq!(seen[0].header("x-amz-security-token"), None);
    assert_eq!(
        seen[0].body,
        json!({"messages": [{"role": "user", "content": [{"text": "Say hello"}]}], "system": [{"text": "Be brief."}]})
    );
}

#[tokio::test]
async fn streamed_chat_reads_the_event_stream_into_openai_chunks_with_usage() {
    let h = Harness::with_secret().await;
    let mut request = streamed(hello("chat"));
    request["stream_options"] = json!({"include_usage": true});

    let response = h.chat(&request).await;

    assert_eq!(response.status(), StatusCode::OK);
    let (chunks, done) = openai_events(&response.text().await.unwrap()).unwrap();
    assert!(done);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(pieces, OK_PIECES);
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")]);
    assert_eq!(chunks.last().unwrap()["usage"], expected_usage());
    assert_eq!(h.upstream.requests()[0].path, "/model/mock-ok-v1%3A0/converse-stream");
}

#[tokio::test]
async fn a_tool_call_and_its_result_make_a_round_trip_through_tool_use_and_tool_result() {
    let h = Harness::with_secret().await;
    let mut request = hello("tool");
    request["tools"] = weather_tool();

    let first: Value = h.chat(&request).await.json().await.unwrap();

    let message = &first["choices"][0]["message"];
    assert_eq!(first["choices"][0]["finish_reason"], "tool_calls");
    let call = &message["tool_calls"][0];
    assert_eq!(call["function"]["name"], TOOL_NAME);
    assert_eq!(call["function"]["arguments"], json!({"city": "Paris"}).to_string());
    let sent = &h.upstream.requests()[0].body;
    assert_eq!(sent["toolConfig"]["tools"][0]["toolSpec"]["name"], TOOL_NAME);

    let messages = request["messages"].as_array_mut().unwrap();
    messages.push(message.clone());
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "18°C and sunny"}));
    let second: Value = h.chat(&request).await.json().await.unwrap();

    assert_eq!(
        second["choices"][0]["message"]["content"],
        format!("{TOOL_ANSWER_PREFIX}18°C and sunny")
    );
    let sent = &h.upstream.requests()[1].body;
    let turns = sent["messages"].as_array().unwrap();
    assert_eq!(turns[1]["content"][1]["toolUse"]["toolUseId"], call["id"]);
    assert_eq!(
        turns[2]["content"][0]["toolResult"],
        json!({"toolUseId": call["id"], "content": [{"text": "18°C and sunny"}]})
    );
}

#[tokio::test]
async fn a_throttling_exception_fails_over_to_the_next_backend() {
    let h = Harness::with_secret().await;

    let response = h.chat(&hello("throttled")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend"), Some("second"));
    assert_eq!(h.upstream.count("mock-429"), 1);
    assert_eq!(h.upstream.count("mock-ok-b"), 1);
}

#[tokio::test]
async fn an_exception_inside_the_event_stream_reaches_the_client_as_an_error_event() {
    let h = Harness::with_secret().await;

    let response = h.chat(&streamed(hello("error-event"))).await;

    assert_eq!(response.status(), StatusCode::OK);
    let text = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the stream must end, not hang")
        .unwrap();
    let data = sse_data(&text);
    let error_at = data
        .iter()
        .position(|d| d.contains("\"error\""))
        .unwrap_or_else(|| panic!("no error event in\n{text}"));
    assert!(error_at >= 2, "the role chunk and the first piece come first:\n{text}");
    let error: Value = serde_json::from_str(&data[error_at]).unwrap();
    assert!(
        error["error"]["message"].as_str().unwrap().contains(THROTTLED_MESSAGE),
        "{error}"
    );
    assert!(
        data[error_at + 1..].iter().all(|d| d == "[DONE]"),
        "nothing after the error"
    );
}

#[tokio::test]
async fn a_validation_exception_is_the_clients_400_and_a_bad_signature_its_403() {
    let h = Harness::with_secret().await;

    let response = h.chat(&hello("bad")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "invalid_request_error", Some("validation_exception"));
    assert_eq!(h.upstream.count("mock-400"), 1, "not retried");

    let response = h.chat(&hello("wrong-key")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "invalid_request_error", Some("invalid_signature_exception"));
}

#[tokio::test]
async fn the_responses_api_is_served_translated_through_converse() {
    let h = Harness::with_secret().await;

    let response = h
        .http
        .post(h.sidecar.url("/v1/responses"))
        .json(&json!({"model": "chat", "input": "Say hello"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["output"][0]["content"][0]["text"], OK_CONTENT, "{body}");
    assert_eq!(h.upstream.requests()[0].path, "/model/mock-ok-v1%3A0/converse");
}

#[tokio::test]
async fn embeddings_are_unsupported_for_a_converse_backend() {
    let h = Harness::with_secret().await;

    let response = h
        .http
        .post(h.sidecar.url("/v1/embeddings"))
        .json(&json!({"model": "chat", "input": "hello"}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "invalid_request_error", Some("unsupported_for_backend"));
    assert!(h.upstream.requests().is_empty());
}

#[tokio::test]
async fn the_pods_web_identity_is_exchanged_at_sts_and_refreshed_when_bedrock_calls_it_expired() {
    let h = Harness::with_web_identity().await;

    let first = h.chat(&hello("chat")).await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = h.chat(&hello("chat")).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(h.upstream.bedrock_keys().exchanges(), 1, "the credentials are cached");

    h.upstream.bedrock_keys().expire_issued();
    let third = h.chat(&hello("chat")).await;

    assert_eq!(third.status(), StatusCode::OK);
    assert_eq!(h.upstream.bedrock_keys().exchanges(), 2, "fetched again once");
    let seen = h.upstream.requests();
    let sts: Vec<_> = seen.iter().filter(|r| r.path == STS_PATH).collect();
    assert_eq!(sts.len(), 2);
    let form = sts[0].body.as_str().unwrap();
    assert!(form.contains("Action=AssumeRoleWithWebIdentity"), "{form}");
    assert!(
        form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fsluice-bedrock"),
        "{form}"
    );
    let converse: Vec<_> = seen.iter().filter(|r| r.path.starts_with("/model/")).collect();
    assert_eq!(converse.len(), 4, "two calls, the expired one and its retry");
    let key_of = |i: usize| {
        converse[i]
            .header("authorization")
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(key_of(2), key_of(1), "the expired key was tried first");
    assert_ne!(key_of(3), key_of(2), "the retry used the new key");
    assert!(converse[3].header("x-amz-security-token").is_some());
}

#[tokio::test]
async fn eks_pod_identity_credentials_come_from_the_container_endpoint_with_its_token() {
    let h = Harness::with_pod_identity().await;

    let response = h.chat(&hello("chat")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.upstream.bedrock_keys().exchanges(), 1);
    let seen = h.upstream.requests();
    assert_eq!(seen[0].path, CONTAINER_PATH);
    assert_eq!(seen[0].header("authorization"), Some(CONTAINER_TOKEN));
    assert!(seen[1].header("x-amz-security-token").is_some());
}

#[tokio::test]
async fn no_credential_appears_in_config_or_the_sidecars_log() {
    let h = Harness::with_web_identity().await;
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let secret_h = Harness::with_secret().await;
    assert_eq!(secret_h.chat(&hello("wrong-key")).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(secret_h.chat(&hello("chat")).await.status(), StatusCode::OK);

    let mut secrets = h.upstream.bedrock_keys().issued_secrets();
    secrets.extend([
        WEB_IDENTITY_TOKEN.to_owned(),
        SECRET_ACCESS_KEY.to_owned(),
        "not-the-secret".to_owned(),
    ]);
    for harness in [&h, &secret_h] {
        let config = reqwest::get(harness.sidecar.admin_url("/config"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let log = format!("{}{}", harness.sidecar.stderr(), harness.sidecar.stdout());
        for secret in &secrets {
            assert!(!config.contains(secret.as_str()), "/config shows a credential");
            assert!(!log.contains(secret.as_str()), "the log shows a credential");
        }
    }
}
