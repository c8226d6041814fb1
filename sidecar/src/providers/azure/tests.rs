//! Azure OpenAI on the wire: the exact URLs, query and headers, and Azure's own answers (filter
//! results, content-filter refusals, 429s, expired tokens) as its REST reference shows them.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sluice_crds::{ModelName, Tokens as Count};

use super::*;
use crate::{
    failover::classify::Class,
    formats::openai::ChatRequest,
    providers::{
        ChatCall, ProviderError, Reply, ResponsesCall, StreamEvent,
        testing::{Answer, Scripted},
    },
    request::parse_chat,
};

const COMPLETION: &str = include_str!("../fixtures/azure/chat_completion.json");
const STREAM: &str = include_str!("../fixtures/azure/chat_stream.sse");
const FILTERED: &str = include_str!("../fixtures/azure/filtered_completion.json");
const CONTENT_FILTER: &str = include_str!("../fixtures/azure/error_content_filter.json");
const RATE_LIMIT: &str = include_str!("../fixtures/azure/error_rate_limit.json");
const UNAUTHORIZED: &str = include_str!("../fixtures/azure/error_unauthorized.json");
const KEY: &str = "0f3c2d1e9a8b4c7d6e5f4a3b2c1d0e9f";

fn spec(deployment: Option<&str>, api_version: Option<&str>, auth: AzureAuth) -> AzureSpec {
    AzureSpec {
        deployment: deployment.map(str::to_owned),
        api_version: api_version.map(str::to_owned),
        auth,
    }
}

fn keyed(base: &str, spec: &AzureSpec) -> OpenAi {
    upstream(
        base,
        spec,
        Some(ApiKey::new(KEY)),
        crate::providers::client::UpstreamClient::plain(),
        reqwest::Client::new(),
        |_| None,
    )
}

fn request(body: serde_json::Value) -> ChatRequest {
    parse_chat(body.to_string().as_bytes()).unwrap()
}

fn question(stream: bool) -> ChatRequest {
    request(serde_json::json!({
        "model": "gpt-4o", "stream": stream,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]
    }))
}

async fn chat(upstream: &OpenAi, request: &ChatRequest) -> Result<Reply, ProviderError> {
    let model = ModelName::try_from("gpt-4o").unwrap();
    let call = ChatCall {
        request,
        model: &model,
        deadline: tokio::time::Instant::now() + Duration::from_secs(30),
    };
    upstream.chat(&call).await
}

fn whole(reply: Reply) -> crate::providers::Complete {
    match reply {
        Reply::Complete(c) => c,
        Reply::Stream(_) => panic!("a whole answer was asked for"),
    }
}

#[tokio::test]
async fn a_deployment_request_goes_to_the_deployment_url_with_its_api_version_and_the_key_as_api_key() {
    let azure = Scripted::start([Answer::json(200, COMPLETION)]).await;
    let upstream = keyed(
        &azure.url(),
        &spec(Some("gpt4o-prod"), Some("2024-10-21"), AzureAuth::ApiKey),
    );

    let answer = whole(chat(&upstream, &question(false)).await.unwrap());

    let seen = &azure.seen()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.path,
        "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(seen.header("api-key"), Some(KEY));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.json()["model"], "gpt-4o");
    assert_eq!(seen.json()["messages"][0]["content"], "What is the capital of France?");
    // Azure's filter results reach the client as Azure wrote them; usage is read as OpenAI's.
    assert_eq!(answer.body, Bytes::from_static(COMPLETION.as_bytes()));
    let usage = answer.usage.unwrap();
    assert_eq!(
        (usage.input, usage.cached_input, usage.output),
        (Count(1536), Count(1280), Count(8))
    );
}

#[tokio::test]
async fn a_v1_request_names_the_model_in_the_body_and_sends_api_version_only_when_set() {
    let azure = Scripted::start([Answer::json(200, COMPLETION), Answer::json(200, COMPLETION)]).await;
    let plain = keyed(&format!("{}/", azure.url()), &spec(None, None, AzureAuth::ApiKey));
    let preview = keyed(&azure.url(), &spec(None, Some("preview"), AzureAuth::ApiKey));

    chat(&plain, &question(false)).await.unwrap();
    chat(&preview, &question(false)).await.unwrap();

    let seen = azure.seen();
    assert_eq!(seen[0].path, "/openai/v1/chat/completions");
    assert_eq!(seen[1].path, "/openai/v1/chat/completions?api-version=preview");
    assert_eq!(seen[0].json()["model"], "gpt-4o");
    assert_eq!(seen[0].header("api-key"), Some(KEY));
}

#[test]
fn every_api_has_its_azure_url() {
    let text = |t: &crate::providers::openai::Target| t.as_ref().unwrap().to_string();
    let deployed = endpoints(
        "https://contoso.openai.azure.com",
        &spec(Some("text-embedding-3-large"), Some("2024-10-21"), AzureAuth::ApiKey),
    );
    let base = "https://contoso.openai.azure.com/openai";
    assert_eq!(
        text(&deployed.embeddings),
        format!("{base}/deployments/text-embedding-3-large/embeddings?api-version=2024-10-21")
    );
    assert_eq!(
        text(&deployed.completions),
        format!("{base}/deployments/text-embedding-3-large/completions?api-version=2024-10-21")
    );
    assert_eq!(
        text(&deployed.responses),
        format!("{base}/responses?api-version=2024-10-21")
    );
    assert_eq!(deployed.responses_model.as_deref(), Some("text-embedding-3-large"));
    let v1 = endpoints(
        "https://contoso.openai.azure.com/",
        &spec(None, None, AzureAuth::ApiKey),
    );
    assert_eq!(text(&v1.embeddings), format!("{base}/v1/embeddings"));
    assert_eq!(text(&v1.responses), format!("{base}/v1/responses"));
    // A name that would leave its path segment stays in it.
    let odd = endpoints("https://x.example", &spec(Some("a/b?c"), Some("1"), AzureAuth::ApiKey));
    assert_eq!(
        text(&odd.chat),
        "https://x.example/openai/deployments/a%2Fb%3Fc/chat/completions?api-version=1"
    );
}

#[tokio::test]
async fn a_deployment_responses_request_names_the_deployment_as_its_model() {
    let response = r#"{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5}}"#;
    let azure = Scripted::start([Answer::json(200, response)]).await;
    let upstream = keyed(
        &azure.url(),
        &spec(Some("gpt4o-prod"), Some("2025-04-01-preview"), AzureAuth::ApiKey),
    );
    let body = bytes::Bytes::from(serde_json::json!({"model": "gpt-4o", "input": "hi"}).to_string());
    let model = ModelName::try_from("gpt-4o").unwrap();
    let call = ResponsesCall {
        body: &body,
        stream: false,
        model: &model,
        deadline: tokio::time::Instant::now() + Duration::from_secs(30),
    };

    upstream.responses(&call).await.unwrap();

    let seen = &azure.seen()[0];
    assert_eq!(seen.path, "/openai/responses?api-version=2025-04-01-preview");
    assert_eq!(seen.json()["model"], "gpt4o-prod");
}

#[tokio::test]
async fn a_stream_keeps_azures_filter_results_and_counts_its_usage_chunk() {
    let azure = Scripted::start([Answer::sse(STREAM)]).await;
    let upstream = keyed(
        &azure.url(),
        &spec(Some("gpt4o-prod"), Some("2024-10-21"), AzureAuth::ApiKey),
    );

    let Reply::Stream(stream) = chat(&upstream, &question(true)).await.unwrap() else {
        panic!("a stream was asked for");
    };
    let items: Vec<_> = stream.collect().await;

    assert_eq!(azure.seen()[0].json()["stream_options"]["include_usage"], true);
    let data: Vec<serde_json::Value> = items
        .iter()
        .filter_map(|i| match i {
            Ok(StreamEvent::Data(b)) => Some(serde_json::from_slice(b).unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(
        data.len(),
        4,
        "the usage-only chunk is the client's only if asked for: {data:?}"
    );
    assert_eq!(
        data[0]["prompt_filter_results"][0]["content_filter_results"]["jailbreak"]["detected"],
        false
    );
    assert_eq!(data[2]["choices"][0]["delta"]["content"], "Paris");
    assert!(data.iter().all(|d| d.get("usage").is_none()));
    let usage = items.iter().find_map(|i| match i {
        Ok(StreamEvent::Usage(u)) => Some(*u),
        _ => None,
    });
    assert_eq!(usage.map(|u| (u.input, u.output)), Some((Count(14), Count(2))));
}

#[tokio::test]
async fn a_content_filter_refusal_is_the_clients_own_400_as_azure_wrote_it_and_never_retried() {
    let azure = Scripted::start([Answer::json(400, CONTENT_FILTER)]).await;
    let upstream = keyed(
        &azure.url(),
        &spec(Some("gpt4o-prod"), Some("2024-10-21"), AzureAuth::ApiKey),
    );

    let error = chat(&upstream, &question(false)).await.unwrap_err();

    let ProviderError::Status { status, body, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(status.as_u16(), 400);
    assert_eq!(body, &Bytes::from_static(CONTENT_FILTER.as_bytes()));
    assert_eq!(Class::of(&error), Class::Client);
    assert!(!Class::of(&error).retryable(&sluice_crds::RetryPolicy::default().retry_on));
    assert_eq!(azure.seen().len(), 1);
}

#[tokio::test]
async fn a_filtered_answer_is_an_ordinary_answer_with_its_finish_reason() {
    let azure = Scripted::start([Answer::json(200, FILTERED)]).await;
    let upstream = keyed(&azure.url(), &spec(None, None, AzureAuth::ApiKey));

    let answer = whole(chat(&upstream, &question(false)).await.unwrap());

    let doc: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(doc["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        doc["choices"][0]["content_filter_results"]["violence"]["filtered"],
        true
    );
    assert_eq!(answer.usage.map(|u| u.output), Some(Count(31)));
}

#[tokio::test]
async fn azures_429_is_waited_out_for_its_retry_after_ms() {
    let limited = Answer::json(429, RATE_LIMIT)
        .with("retry-after", "2")
        .with("retry-after-ms", "1500")
        .with("x-ratelimit-remaining-requests", "0")
        .with("x-ratelimit-remaining-tokens", "0");
    let azure = Scripted::start([limited]).await;
    let upstream = keyed(
        &azure.url(),
        &spec(Some("gpt4o-prod"), Some("2024-10-21"), AzureAuth::ApiKey),
    );

    let error = chat(&upstream, &question(false)).await.unwrap_err();

    let ProviderError::Status {
        status, retry_after, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(status.as_u16(), 429);
    assert_eq!(*retry_after, Some(Duration::from_millis(1500)));
    assert_eq!(Class::of(&error), Class::RateLimited);
}

#[tokio::test]
async fn a_key_quoted_back_in_an_error_is_blanked() {
    let quoting =
        format!(r#"{{"error":{{"code":"401","message":"Access denied due to invalid subscription key {KEY}."}}}}"#);
    let azure = Scripted::start([Answer::json(401, quoting)]).await;
    let upstream = keyed(&azure.url(), &spec(None, None, AzureAuth::ApiKey));

    let error = chat(&upstream, &question(false)).await.unwrap_err();

    let ProviderError::Status { body, .. } = &error else {
        panic!("{error:?}")
    };
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(!body.contains(KEY), "{body}");
    assert!(body.contains("[redacted]"), "{body}");
    assert_eq!(azure.seen().len(), 1, "a refused key is not tried again");
}

/// An Entra-authenticated upstream whose token endpoint is `azure` itself.
fn entra(azure: &Scripted, dir: &tempfile::TempDir) -> OpenAi {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "federated-jwt").unwrap();
    let authority = format!("{}/", azure.url());
    let env = move |name: &str| match name {
        "AZURE_TENANT_ID" => Some("tenant-1".to_owned()),
        "AZURE_CLIENT_ID" => Some("client-1".to_owned()),
        "AZURE_FEDERATED_TOKEN_FILE" => Some(token_file.display().to_string()),
        "AZURE_AUTHORITY_HOST" => Some(authority.clone()),
        _ => None,
    };
    let spec = spec(Some("gpt4o-prod"), Some("2024-10-21"), AzureAuth::EntraId);
    upstream(
        &azure.url(),
        &spec,
        None,
        crate::providers::client::UpstreamClient::plain(),
        reqwest::Client::new(),
        env,
    )
}

fn token(value: &str) -> Answer {
    Answer::json(
        200,
        format!(r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"{value}"}}"#),
    )
}

#[tokio::test]
async fn an_entra_token_is_exchanged_once_sent_as_bearer_and_renewed_once_when_rejected() {
    let azure = Scripted::start([
        token("tok-1"),
        Answer::json(200, COMPLETION),
        Answer::json(200, COMPLETION),
        Answer::json(401, UNAUTHORIZED),
        token("tok-2"),
        Answer::json(200, COMPLETION),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let upstream = entra(&azure, &dir);

    for _ in 0..3 {
        chat(&upstream, &question(false)).await.unwrap();
    }

    let seen = azure.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    let chat_path = "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21";
    let token_path = "/tenant-1/oauth2/v2.0/token";
    assert_eq!(
        paths,
        [token_path, chat_path, chat_path, chat_path, token_path, chat_path]
    );
    let auth: Vec<Option<&str>> = seen.iter().map(|s| s.header("authorization")).collect();
    assert_eq!(
        auth,
        [
            None,
            Some("Bearer tok-1"),
            Some("Bearer tok-1"),
            Some("Bearer tok-1"),
            None,
            Some("Bearer tok-2")
        ]
    );
    assert!(seen.iter().all(|s| s.header("api-key").is_none()));
}

#[tokio::test]
async fn a_second_401_after_a_new_token_is_the_answer_not_another_retry() {
    let azure = Scripted::start([
        token("tok-1"),
        Answer::json(401, UNAUTHORIZED),
        token("tok-2"),
        Answer::json(401, UNAUTHORIZED),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let upstream = entra(&azure, &dir);

    let error = chat(&upstream, &question(false)).await.unwrap_err();

    let ProviderError::Status { status, body, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(status.as_u16(), 401);
    assert_eq!(body, &Bytes::from_static(UNAUTHORIZED.as_bytes()));
    assert_eq!(azure.seen().len(), 4);
}

#[tokio::test]
async fn entra_without_the_workload_identity_environment_fails_the_attempt_naming_the_variable() {
    let azure = Scripted::start([]).await;
    let spec = spec(None, None, AzureAuth::EntraId);
    let upstream = upstream(
        &azure.url(),
        &spec,
        None,
        crate::providers::client::UpstreamClient::plain(),
        reqwest::Client::new(),
        |_| None,
    );

    let error = chat(&upstream, &question(false)).await.unwrap_err();

    assert!(error.to_string().contains("AZURE_TENANT_ID"), "{error}");
    assert!(azure.seen().is_empty());
}
