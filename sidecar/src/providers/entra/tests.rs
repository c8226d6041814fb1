//! The exchange as Entra ID sees it, the cache, and refreshing before expiry.

use std::sync::Mutex as StdMutex;

use super::*;
use crate::providers::testing::{Answer, Scripted};

const TOKEN_ANSWER_1: &str =
    r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0eXAi.first"}"#;
const TOKEN_ANSWER_2: &str =
    r#"{"token_type":"Bearer","expires_in":"3599","ext_expires_in":3599,"access_token":"eyJ0eXAi.second"}"#;

/// A clock the test turns forward.
fn clock() -> (Clock, Arc<StdMutex<Instant>>) {
    let at = Arc::new(StdMutex::new(Instant::now()));
    let read = Arc::clone(&at);
    (Arc::new(move || *read.lock().unwrap()), at)
}

fn identity(upstream: &Scripted, dir: &tempfile::TempDir) -> Identity {
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "federated-jwt-1\n").unwrap();
    let env = |name: &str| match name {
        "AZURE_TENANT_ID" => Some("72f988bf-86f1-41af-91ab-2d7cd011db47".to_owned()),
        "AZURE_CLIENT_ID" => Some("0e4b4d4c-1d2b-4b5f-9d7a-3c8a1f0c2e11".to_owned()),
        "AZURE_FEDERATED_TOKEN_FILE" => Some(token_file.display().to_string()),
        "AZURE_AUTHORITY_HOST" => Some(format!("{}/", upstream.url())),
        _ => None,
    };
    Identity::from_env(env).unwrap()
}

fn form_of(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

#[tokio::test]
async fn the_federated_token_is_exchanged_with_the_client_credentials_grant() {
    let upstream = Scripted::start([Answer::json(200, TOKEN_ANSWER_1)]).await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::new(
        reqwest::Client::new(),
        Ok(identity(&upstream, &dir)),
        COGNITIVE_SERVICES_SCOPE,
    );

    let token = tokens.get().await.unwrap();

    assert_eq!(token.expose(), "eyJ0eXAi.first");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token");
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        form_of(&seen[0].body),
        [
            ("client_assertion", "federated-jwt-1"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            ),
            ("client_id", "0e4b4d4c-1d2b-4b5f-9d7a-3c8a1f0c2e11"),
            ("grant_type", "client_credentials"),
            ("scope", "https://cognitiveservices.azure.com/.default"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[tokio::test]
async fn a_token_is_reused_until_five_minutes_before_it_expires_then_exchanged_again_from_the_rotated_file() {
    let upstream = Scripted::start([Answer::json(200, TOKEN_ANSWER_1), Answer::json(200, TOKEN_ANSWER_2)]).await;
    let dir = tempfile::tempdir().unwrap();
    let identity = identity(&upstream, &dir);
    let (now, at) = clock();
    let tokens = Tokens::with_clock(
        reqwest::Client::new(),
        Ok(identity.clone()),
        COGNITIVE_SERVICES_SCOPE,
        now,
    );

    assert_eq!(tokens.get().await.unwrap().expose(), "eyJ0eXAi.first");
    *at.lock().unwrap() += Duration::from_secs(3599 - 301);
    assert_eq!(
        tokens.get().await.unwrap().expose(),
        "eyJ0eXAi.first",
        "still five minutes and a second to go"
    );
    assert_eq!(upstream.seen().len(), 1);

    std::fs::write(&identity.token_file, "federated-jwt-2").unwrap();
    *at.lock().unwrap() += Duration::from_secs(1);
    assert_eq!(tokens.get().await.unwrap().expose(), "eyJ0eXAi.second");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert!(form_of(&seen[1].body).contains(&("client_assertion".into(), "federated-jwt-2".into())));
}

#[tokio::test]
async fn concurrent_requests_share_one_exchange() {
    let upstream = Scripted::start([Answer::json(200, TOKEN_ANSWER_1)]).await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::new(
        reqwest::Client::new(),
        Ok(identity(&upstream, &dir)),
        COGNITIVE_SERVICES_SCOPE,
    );

    let all = futures::future::join_all((0..8).map(|_| tokens.get())).await;

    assert!(all.iter().all(|t| t.as_ref().unwrap().expose() == "eyJ0eXAi.first"));
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn a_rejected_token_is_forgotten_once_and_a_stale_rejection_keeps_the_new_one() {
    let upstream = Scripted::start([Answer::json(200, TOKEN_ANSWER_1), Answer::json(200, TOKEN_ANSWER_2)]).await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::new(
        reqwest::Client::new(),
        Ok(identity(&upstream, &dir)),
        COGNITIVE_SERVICES_SCOPE,
    );
    let first = tokens.get().await.unwrap();

    assert!(tokens.reject(&first));
    let second = tokens.get().await.unwrap();
    assert_eq!(second.expose(), "eyJ0eXAi.second");
    // A request that carried the first token learns of its 401 late: the new one stays.
    assert!(tokens.reject(&first));
    assert_eq!(tokens.get().await.unwrap().expose(), "eyJ0eXAi.second");
    assert_eq!(upstream.seen().len(), 2);
}

#[tokio::test]
async fn a_refused_exchange_is_a_401_with_entras_reason_and_never_the_assertion() {
    let refusal = r#"{"error":"invalid_client","error_description":"AADSTS700213: No matching federated identity record found for presented assertion subject 'federated-jwt-1'."}"#;
    let upstream = Scripted::start([Answer::json(400, refusal)]).await;
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens::new(
        reqwest::Client::new(),
        Ok(identity(&upstream, &dir)),
        COGNITIVE_SERVICES_SCOPE,
    );

    let Err(ProviderError::Status { status, body, .. }) = tokens.get().await else {
        panic!("a refusal is an error status");
    };

    assert_eq!(status, http::StatusCode::UNAUTHORIZED);
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains("AADSTS700213"), "{body}");
    assert!(!body.contains("federated-jwt-1"), "{body}");
    assert!(body.contains(r#""code":"entra_token_refused""#), "{body}");
}

#[test]
fn a_missing_workload_identity_variable_is_named() {
    let env = |name: &str| (name != "AZURE_CLIENT_ID").then(|| "x".to_owned());
    let why = Identity::from_env(env).unwrap_err();
    assert!(why.contains("AZURE_CLIENT_ID"), "{why}");
}

#[test]
fn the_authority_defaults_to_the_public_cloud() {
    let env = |name: &str| (name != "AZURE_AUTHORITY_HOST").then(|| "tenant".to_owned());
    let identity = Identity::from_env(env).unwrap();
    assert_eq!(
        identity.token_url,
        "https://login.microsoftonline.com/tenant/oauth2/v2.0/token"
    );
}
