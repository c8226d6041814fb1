//! The real `sluice-sidecar` binary in local mode serving OpenAI clients from Azure OpenAI
//! backends (the in-test upstream's Azure part): deployment and v1 URLs, `api-key` and Entra ID
//! workload-identity tokens, Azure's content filter and 429s; and every provider's per-backend
//! extra headers, whose Secret values stay out of `/config` and the sidecar's log.
//!
//! Needs `cargo build -p sluice-sidecar -p sluice-tests --bins` first (see `tests/support/sidecar.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod provider;

use std::time::Duration;

use provider::{header, hello, streamed, weather_tool};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_tests::sidecar::SidecarProcess;
use sluice_tests::sse::openai_events;
use sluice_tests::upstream::{OK_CONTENT, OK_PIECES, TOOL_NAME, Upstream, Wire, azure, tool_arguments};

/// The resource key in the `azure` Secret.
const KEY: &str = "azure-key-5f1e0c9b7a";
/// The federated token the "kubelet" projected.
const FEDERATED: &str = "eyJhbGciOiJSUzI1NiJ9.federated.sig";
/// A header value from a Secret document.
const GATEWAY_SECRET: &str = "gw-secret-from-manifest-8c2d";
/// A header value from the environment fallback.
const ENV_SECRET: &str = "gw-secret-from-env-41aa";
const DEPLOYMENT_PATH: &str = "/openai/deployments/mock-ok/chat/completions?api-version=2024-10-21";

/// An Azure backend serving deployment `deployment` (whose name picks the upstream's behaviour).
fn azure_backend(name: &str, upstream: &Upstream, deployment: &str, priority: u32) -> String {
    format!(
        "  - name: {name}\n    provider: azure-openai\n    baseUrl: {}\n    model: gpt-4o\n    priority: {priority}\n    \
         azure: {{deployment: {deployment}, apiVersion: \"2024-10-21\"}}\n    credentialsRef: {{name: azure, key: apiKey}}\n",
        upstream.base_url_of(Wire::Azure)
    )
}

/// The `azure` Secret, then a route `name` with `backends` (YAML list items) and `extra` spec lines.
fn route(name: &str, extra: &str, backends: &str) -> String {
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: team-a}}\n\
         spec:\n  models: [{name}]\n{extra}  backends:\n{backends}"
    )
}

const SECRETS: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: azure, namespace: team-a}\nstringData: {apiKey: azure-key-5f1e0c9b7a}\n\
---\napiVersion: v1\nkind: Secret\nmetadata: {name: gateway, namespace: team-a}\nstringData: {token: gw-secret-from-manifest-8c2d}\n";

struct Setup {
    upstream: Upstream,
    sidecar: SidecarProcess,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// A sidecar on `routes` (after the Secrets) with `env`, against `upstream`.
    async fn start(upstream: Upstream, routes: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("routes.yaml"), format!("{SECRETS}{routes}")).unwrap();
        let sidecar = SidecarProcess::start_with_env(dir.path(), &[], env).await.unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            upstream,
            sidecar,
            http,
            _dir: dir,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.post(self.sidecar.url(path)).json(body).send().await.unwrap()
    }

    /// The requests that reached the Azure part, token endpoint aside.
    fn azure_calls(&self) -> Vec<sluice_tests::upstream::RecordedRequest> {
        let mut all = self.upstream.requests_to(Wire::Azure);
        all.retain(|r| r.path.starts_with("/openai/"));
        all
    }

    fn token_calls(&self) -> usize {
        self.upstream
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
            .count()
    }
}

async fn keyed() -> Setup {
    let upstream = Upstream::start(&[Wire::Azure]).await.unwrap();
    let mut routes = String::new();
    for (name, deployment) in [
        ("chat", "mock-ok"),
        ("tool", "mock-tool"),
        ("filtered", "mock-filtered"),
    ] {
        routes.push_str(&route(name, "", &azure_backend("azure", &upstream, deployment, 0)));
    }
    let v1 = format!(
        "  - name: azure-v1\n    provider: azure-openai\n    baseUrl: {}\n    model: mock-ok\n    credentialsRef: {{name: azure, key: apiKey}}\n",
        upstream.base_url_of(Wire::Azure)
    );
    routes.push_str(&route("v1", "", &v1));
    // The filter's refusal comes first; a spare behind it must not be tried.
    let both = azure_backend("refuses", &upstream, "mock-content-filter", 0)
        + &azure_backend("spare", &upstream, "mock-ok", 1);
    routes.push_str(&route("refused", "  retry: {attempts: 2}\n", &both));
    let both = azure_backend("limited", &upstream, "mock-429", 0) + &azure_backend("spare", &upstream, "mock-ok", 1);
    routes.push_str(&route("limited", "  retry: {attempts: 2}\n", &both));
    Setup::start(upstream, &routes, &[]).await
}

#[tokio::test]
async fn a_deployment_is_called_at_its_url_with_api_version_and_api_key_and_azures_filter_results_pass_through() {
    let s = keyed().await;

    let response = s.post("/v1/chat/completions", &hello("chat")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend"), Some("azure"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], OK_CONTENT);
    assert_eq!(
        body["prompt_filter_results"][0]["content_filter_results"]["jailbreak"]["detected"],
        false
    );
    assert_eq!(body["choices"][0]["content_filter_results"]["hate"]["severity"], "safe");
    let calls = s.azure_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, DEPLOYMENT_PATH);
    assert_eq!(calls[0].header("api-key"), Some(KEY));
    assert_eq!(calls[0].header("authorization"), None);
}

#[tokio::test]
async fn the_v1_api_takes_the_model_in_the_body_and_no_api_version() {
    let s = keyed().await;

    let response = s.post("/v1/chat/completions", &hello("v1")).await;

    assert_eq!(response.status(), StatusCode::OK);
    let calls = s.azure_calls();
    assert_eq!(calls[0].path, "/openai/v1/chat/completions");
    assert_eq!(calls[0].body["model"], "mock-ok");
}

#[tokio::test]
async fn a_stream_arrives_in_pieces_with_azures_filter_chunk_and_usage_when_asked() {
    let s = keyed().await;
    let mut request = streamed(hello("chat"));
    request["stream_options"] = json!({"include_usage": true});

    let response = s.post("/v1/chat/completions", &request).await;

    assert_eq!(response.status(), StatusCode::OK);
    let (chunks, done) = openai_events(&response.text().await.unwrap()).unwrap();
    assert!(done);
    assert!(chunks[0]["prompt_filter_results"].is_array(), "{:?}", chunks[0]);
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(pieces, OK_PIECES);
    assert!(chunks.last().unwrap()["usage"]["prompt_tokens"].is_u64());
    assert_eq!(s.azure_calls()[0].body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn a_tool_call_comes_back_whole_and_streamed() {
    let s = keyed().await;
    let mut request = hello("tool");
    request["tools"] = weather_tool();

    let whole: Value = s.post("/v1/chat/completions", &request).await.json().await.unwrap();
    let streamed_text = s
        .post("/v1/chat/completions", &streamed(request.clone()))
        .await
        .text()
        .await
        .unwrap();

    let call = &whole["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], TOOL_NAME);
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        tool_arguments()
    );
    assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
    let (chunks, _) = openai_events(&streamed_text).unwrap();
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["tool_calls"].get(0)?["function"]["arguments"].as_str())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), tool_arguments());
    assert_eq!(s.azure_calls()[0].body["tools"][0]["function"]["name"], TOOL_NAME);
}

#[tokio::test]
async fn a_content_filter_refusal_reaches_the_client_as_azure_wrote_it_and_no_other_backend_is_tried() {
    let s = keyed().await;

    let response = s.post("/v1/chat/completions", &hello("refused")).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, azure::content_filter_refusal());
    let calls = s.azure_calls();
    assert_eq!(calls.len(), 1, "never retried");
    assert!(calls[0].path.starts_with("/openai/deployments/mock-content-filter/"));
}

#[tokio::test]
async fn a_filtered_answer_is_an_answer_with_finish_reason_content_filter() {
    let s = keyed().await;

    let whole: Value = s
        .post("/v1/chat/completions", &hello("filtered"))
        .await
        .json()
        .await
        .unwrap();
    let text = s
        .post("/v1/chat/completions", &streamed(hello("filtered")))
        .await
        .text()
        .await
        .unwrap();

    assert_eq!(whole["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        whole["choices"][0]["content_filter_results"]["violence"]["filtered"],
        true
    );
    let (chunks, done) = openai_events(&text).unwrap();
    assert!(done);
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("content_filter")]);
}

#[tokio::test]
async fn azures_429_fails_over_to_the_spare() {
    let s = keyed().await;

    let response = s.post("/v1/chat/completions", &hello("limited")).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-sluice-backend"), Some("spare"));
    let paths: Vec<String> = s.azure_calls().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/openai/deployments/mock-429/chat/completions?api-version=2024-10-21",
            DEPLOYMENT_PATH
        ]
    );
}

/// A sidecar whose one route uses Entra ID, the upstream both resource and authority.
async fn entra(dir: &tempfile::TempDir) -> Setup {
    let upstream = Upstream::start(&[Wire::Azure]).await.unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, FEDERATED).unwrap();
    let backend = format!(
        "  - name: azure\n    provider: azure-openai\n    baseUrl: {}\n    model: gpt-4o\n    \
         azure: {{deployment: mock-ok, apiVersion: \"2024-10-21\", auth: entra-id}}\n",
        upstream.base_url_of(Wire::Azure)
    );
    let authority = format!("{}/", upstream.base_url_of(Wire::Azure));
    let token_file = token_file.display().to_string();
    let env = [
        ("AZURE_TENANT_ID", "tenant-7"),
        ("AZURE_CLIENT_ID", "client-7"),
        ("AZURE_FEDERATED_TOKEN_FILE", token_file.as_str()),
        ("AZURE_AUTHORITY_HOST", authority.as_str()),
    ];
    Setup::start(upstream, &route("chat", "", &backend), &env).await
}

#[tokio::test]
async fn an_entra_token_is_exchanged_once_and_renewed_once_when_azure_says_it_expired() {
    let dir = tempfile::tempdir().unwrap();
    let s = entra(&dir).await;

    for _ in 0..2 {
        assert_eq!(
            s.post("/v1/chat/completions", &hello("chat")).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(s.token_calls(), 1);
    s.upstream.expire_azure_tokens();
    let after = s.post("/v1/chat/completions", &hello("chat")).await;

    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(s.token_calls(), 2);
    let auth: Vec<Option<String>> = s
        .azure_calls()
        .iter()
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    let bearer = |n: u32| Some(format!("Bearer azure-token-{n}"));
    assert_eq!(
        auth,
        [bearer(1), bearer(1), bearer(1), bearer(2)],
        "one 401, then one retry"
    );
    let token = s
        .upstream
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .unwrap();
    assert_eq!(token.path, "/tenant-7/oauth2/v2.0/token");
    let form = token.body.as_str().unwrap();
    assert!(form.contains("client_id=client-7"), "{form}");
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    let stderr = s.sidecar.stderr();
    assert!(
        !stderr.contains("azure-token-") && !stderr.contains(FEDERATED),
        "{stderr}"
    );
}

/// One backend of `provider` at `upstream` with a plain and two Secret headers.
fn headered(name: &str, provider: &str, base_url: &str) -> String {
    format!(
        "  - name: {name}\n    provider: {provider}\n    baseUrl: {base_url}\n    model: mock-ok\n    \
         credentialsRef: {{name: azure, key: apiKey}}\n    headers:\n    \
         - {{name: x-team, value: team-a}}\n    \
         - {{name: x-gateway-key, valueFrom: {{name: gateway, key: token}}}}\n    \
         - {{name: x-env-key, valueFrom: {{name: from-env, key: token}}}}\n"
    )
}

#[tokio::test]
async fn extra_headers_reach_openai_and_anthropic_upstreams_and_their_secret_values_stay_out_of_config_and_logs() {
    let upstream = Upstream::start(&[Wire::OpenAi, Wire::Anthropic]).await.unwrap();
    let routes = route(
        "gpt",
        "",
        &headered("openai", "openai", &upstream.base_url_of(Wire::OpenAi)),
    ) + &route(
        "claude",
        "",
        &headered("anthropic", "anthropic", &upstream.base_url_of(Wire::Anthropic)),
    );
    let s = Setup::start(
        upstream,
        &routes,
        &[("FROM_ENV_TOKEN", ENV_SECRET), ("SLUICE_LOG", "debug")],
    )
    .await;

    for model in ["gpt", "claude"] {
        let response = s.post("/v1/chat/completions", &hello(model)).await;
        assert_eq!(response.status(), StatusCode::OK, "{model}");
    }

    for (wire, auth_header, auth_value) in [
        (Wire::OpenAi, "authorization", format!("Bearer {KEY}")),
        (Wire::Anthropic, "x-api-key", KEY.to_owned()),
    ] {
        let seen = s.upstream.requests_to(wire);
        assert_eq!(seen.len(), 1, "{wire:?}");
        assert_eq!(seen[0].header("x-team"), Some("team-a"), "{wire:?}");
        assert_eq!(seen[0].header("x-gateway-key"), Some(GATEWAY_SECRET), "{wire:?}");
        assert_eq!(seen[0].header("x-env-key"), Some(ENV_SECRET), "{wire:?}");
        assert_eq!(seen[0].header(auth_header), Some(auth_value.as_str()), "{wire:?}");
    }
    let config = s
        .http
        .get(s.sidecar.admin_url("/config"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        config.contains("x-gateway-key") && config.contains("team-a"),
        "{config}"
    );
    for secret in [GATEWAY_SECRET, ENV_SECRET, KEY] {
        assert!(!config.contains(secret), "/config shows {secret}");
        assert!(!s.sidecar.stderr().contains(secret), "the log shows {secret}");
        assert!(!s.sidecar.stdout().contains(secret), "the log shows {secret}");
    }
}
