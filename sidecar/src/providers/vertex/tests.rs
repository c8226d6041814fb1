//! Wire tests against recorded requests and answers in Vertex AI's formats
//! (`../fixtures/vertex/`): the URLs, the token exchange (a throwaway key, a fixed clock), the
//! rawPredict body, a streamRawPredict transcript, embeddings and errors.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use http::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sluice_crds::{ApiKey, VertexPublisher, VertexSpec};
use tokio::time::Instant;

use super::{
    Vertex, endpoint, models_url, raw_predict_body,
    service_account::{Claims, KeyError, ServiceAccount},
    token::{self, AccessToken, Origin},
};
use crate::{
    providers::{ProviderError, StreamEvent, anthropic},
    request::parse_chat,
    translate::openai_to_anthropic,
};

const KEY_FILE: &str = include_str!("../fixtures/vertex/throwaway_test_service_account_key.json");
const PUBLIC_KEY: &str = include_str!("../fixtures/vertex/throwaway_test_key.pub.pem");
/// 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000;

fn spec(region: &str, publisher: VertexPublisher) -> VertexSpec {
    VertexSpec {
        project: "my-project".into(),
        region: region.into(),
        publisher,
    }
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn metadata_vertex(publisher: VertexPublisher) -> Vertex {
    Vertex::new(
        &spec("us-east5", publisher),
        None,
        None,
        Some("127.0.0.1:9"),
        crate::providers::client::UpstreamClient::plain(),
        reqwest::Client::new(),
    )
    .unwrap()
}

#[test]
fn gemini_urls_are_regional_or_global_under_the_google_publisher() {
    let regional = Vertex::new(
        &spec("us-central1", VertexPublisher::Google),
        None,
        None,
        None,
        crate::providers::client::UpstreamClient::plain(),
        reqwest::Client::new(),
    )
    .unwrap();
    assert_eq!(
        regional.method_url("gemini-2.5-pro", "generateContent"),
        "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent"
    );
    assert_eq!(
        regional.method_url("gemini-2.5-pro", "streamGenerateContent?alt=sse"),
        "https://us-central1-aiplatform.googleapis.com/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    );
    let global = spec("global", VertexPublisher::Google);
    assert_eq!(endpoint("global"), "https://aiplatform.googleapis.com");
    assert_eq!(
        models_url(&global, &endpoint("global")),
        "https://aiplatform.googleapis.com/v1/projects/my-project/locations/global/publishers/google/models"
    );
}

#[test]
fn claude_urls_name_the_anthropic_publisher_and_raw_predict() {
    let vertex = metadata_vertex(VertexPublisher::Anthropic);
    assert_eq!(
        vertex.method_url("claude-sonnet-4@20250514", "rawPredict"),
        "https://us-east5-aiplatform.googleapis.com/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict"
    );
    assert_eq!(
        vertex.method_url("claude-sonnet-4@20250514", "streamRawPredict"),
        "https://us-east5-aiplatform.googleapis.com/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict"
    );
    assert_eq!(
        vertex.method_url("count-tokens", "rawPredict"),
        "https://us-east5-aiplatform.googleapis.com/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict"
    );
    let global = spec("global", VertexPublisher::Anthropic);
    assert_eq!(
        models_url(&global, &endpoint("global")),
        "https://aiplatform.googleapis.com/v1/projects/my-project/locations/global/publishers/anthropic/models"
    );
    assert!(vertex.counts_tokens());
    assert!(!metadata_vertex(VertexPublisher::Google).counts_tokens());
}

#[test]
fn a_base_url_replaces_the_regional_endpoint() {
    let vertex = Vertex::new(
        &spec("europe-west4", VertexPublisher::Google),
        Some("http://127.0.0.1:8080/"),
        None,
        None,
        crate::providers::client::UpstreamClient::plain(),
        reqwest::Client::new(),
    )
    .unwrap();
    assert_eq!(
        vertex.method_url("gemini-2.5-flash", "predict"),
        "http://127.0.0.1:8080/v1/projects/my-project/locations/europe-west4/publishers/google/models/gemini-2.5-flash:predict"
    );
}

#[test]
fn the_token_request_is_an_rs256_jwt_with_the_keys_id_and_googles_claims_signed_by_the_key() {
    let account = ServiceAccount::parse(KEY_FILE).unwrap();
    let assertion = account.assertion(NOW).unwrap();

    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[0])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        header,
        json!({"typ": "JWT", "alg": "RS256", "kid": "0123456789abcdef0123456789abcdef01234567"})
    );
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims,
        json!({
            "iss": "sluice-test@sluice-test-project.iam.gserviceaccount.com",
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "aud": "https://oauth2.googleapis.com/token",
            "exp": NOW + 3600,
            "iat": NOW
        })
    );

    // The signature is the key's: its public half verifies it (the clock is fixed in the past).
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.set_audience(&["https://oauth2.googleapis.com/token"]);
    let verified = jsonwebtoken::decode::<Claims>(
        &assertion,
        &DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(verified.claims, account.claims(NOW));

    assert_eq!(
        ServiceAccount::token_request_body(&assertion),
        format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}")
    );
}

#[test]
fn a_tampered_assertion_fails_verification() {
    let account = ServiceAccount::parse(KEY_FILE).unwrap();
    let assertion = account.assertion(NOW).unwrap();
    let other = account.assertion(NOW + 1).unwrap();
    // Another payload under this signature.
    let forged = format!(
        "{}.{}",
        other.rsplit_once('.').unwrap().0,
        assertion.rsplit_once('.').unwrap().1
    );
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    let key = DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
    assert!(jsonwebtoken::decode::<Claims>(&forged, &key, &validation).is_err());
}

#[test]
fn the_token_answer_gives_the_bearer_token_and_its_lifetime() {
    let (token, lifetime) = token::parse_token_answer(include_bytes!("../fixtures/vertex/token_answer.json")).unwrap();
    assert_eq!(token.expose(), "ya29.c.throwaway-test-token-not-a-real-one");
    assert_eq!(lifetime, Duration::from_secs(3599));
    assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
    assert!(token::parse_token_answer(br#"{"access_token": "x", "expires_in": 10, "token_type": "mac"}"#).is_none());
    assert!(token::parse_token_answer(br#"{"error": "invalid_grant"}"#).is_none());
}

#[test]
fn a_token_is_replaced_five_minutes_before_it_expires_or_half_way_when_shorter() {
    let obtained = Instant::now();
    assert_eq!(
        token::refresh_at(obtained, Duration::from_secs(3599)),
        obtained + Duration::from_secs(3299)
    );
    assert_eq!(
        token::refresh_at(obtained, Duration::from_secs(120)),
        obtained + Duration::from_secs(60)
    );
    assert_eq!(token::refresh_at(obtained, Duration::ZERO), obtained);
}

#[test]
fn the_metadata_server_is_asked_at_gce_metadata_host_or_its_default_name() {
    let Origin::Metadata(url) = Origin::metadata(Some("127.0.0.1:8089")) else {
        panic!("a metadata origin")
    };
    assert_eq!(
        url,
        "http://127.0.0.1:8089/computeMetadata/v1/instance/service-accounts/default/token"
    );
    let Origin::Metadata(url) = Origin::metadata(None) else {
        panic!("a metadata origin")
    };
    assert_eq!(
        url,
        "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
    );
}

#[test]
fn a_broken_key_is_refused_by_field_never_quoting_its_value() {
    let not_rsa = KEY_FILE.replace("-----BEGIN PRIVATE KEY-----", "-----BEGIN NOTHING-----");
    assert_eq!(ServiceAccount::parse(&not_rsa).unwrap_err(), KeyError::PrivateKey);
    let mut wrong_type: Value = json_of(KEY_FILE);
    wrong_type["private_key"] = json!(["secret-material"]);
    let error = ServiceAccount::parse(&wrong_type.to_string()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the service-account key is not a key file as Google issues it: field private_key is missing or not a string"
    );
    let error = ServiceAccount::parse("not json at all, secret-material").unwrap_err();
    assert!(!error.to_string().contains("secret-material"), "{error}");
    let external = json!({"type": "external_account", "client_email": "a", "private_key_id": "b",
        "private_key": "c", "token_uri": "d"});
    assert_eq!(
        ServiceAccount::parse(&external.to_string()).unwrap_err(),
        KeyError::NotServiceAccount("external_account".into())
    );
    let debug = format!("{:?}", ServiceAccount::parse(KEY_FILE).unwrap());
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
}

#[test]
fn a_backend_with_an_unusable_key_is_refused_when_built() {
    let error = Vertex::new(
        &spec("us-east5", VertexPublisher::Google),
        None,
        Some(&ApiKey::new("{}")),
        None,
        crate::providers::client::UpstreamClient::plain(),
        reqwest::Client::new(),
    )
    .unwrap_err();
    assert!(matches!(error, KeyError::Malformed(_)), "{error}");
}

#[test]
fn the_raw_predict_body_is_anthropics_messages_body_without_model_and_with_the_vertex_version() {
    let request = parse_chat(include_bytes!("../fixtures/vertex/openai_request.json")).unwrap();
    let messages = openai_to_anthropic::request(&request, "claude-sonnet-4@20250514").unwrap();
    let body = raw_predict_body(&messages).unwrap();
    assert_eq!(
        body,
        json_of(include_str!("../fixtures/vertex/raw_predict_request.json"))
    );
    assert!(body.get("model").is_none());
}

#[tokio::test]
async fn a_recorded_stream_raw_predict_transcript_with_a_tool_call_becomes_openai_chunks() {
    let transcript = include_str!("../fixtures/vertex/stream_raw_predict_tool_use.sse");
    // Cut into uneven pieces, as a connection delivers it.
    let pieces: Vec<Result<Bytes, ProviderError>> = transcript
        .as_bytes()
        .chunks(97)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream = anthropic::translate_body(futures::stream::iter(pieces), deadline, true, NOW);
    let events: Vec<StreamEvent> = stream.map(Result::unwrap).collect().await;

    let chunks: Vec<Value> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Data(bytes) => Some(serde_json::from_slice(bytes).unwrap()),
            StreamEvent::Usage(_) => None,
        })
        .collect();
    let expected: Vec<Value> = include_str!("../fixtures/vertex/stream_raw_predict_tool_use_openai.jsonl")
        .lines()
        .map(json_of)
        .collect();
    assert_eq!(chunks, expected);
    let usage: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Usage(u) => Some((u.input.0, u.output.0)),
            StreamEvent::Data(_) => None,
        })
        .collect();
    assert_eq!(usage, vec![(402, 54)]);
}

fn status_error(status: u16, body: &str) -> ProviderError {
    ProviderError::Status {
        status: StatusCode::from_u16(status).unwrap(),
        retry_after: None,
        body: Bytes::from(body.to_owned()),
    }
}

#[test]
fn resource_exhausted_is_a_429_that_waits_for_its_retry_delay() {
    let vertex = metadata_vertex(VertexPublisher::Google);
    let token = AccessToken::for_tests("ya29.token");
    let error = vertex.normalize(
        status_error(429, include_str!("../fixtures/vertex/error_resource_exhausted.json")),
        &token,
    );
    let ProviderError::Status {
        status,
        retry_after,
        body,
    } = error
    else {
        panic!("a status error")
    };
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after, Some(Duration::from_secs(7)));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "resource_exhausted");
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[test]
fn a_claude_model_errors_in_anthropics_shape_and_the_gateway_in_googles() {
    let vertex = metadata_vertex(VertexPublisher::Anthropic);
    let token = AccessToken::for_tests("ya29.token");
    let overloaded = vertex.normalize(
        status_error(529, include_str!("../fixtures/vertex/error_claude_overloaded.json")),
        &token,
    );
    let ProviderError::Status { status, body, .. } = overloaded else {
        panic!("a status error")
    };
    assert_eq!(status.as_u16(), 529);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"],
        "overloaded_error"
    );
    let quota = vertex.normalize(
        status_error(429, include_str!("../fixtures/vertex/error_resource_exhausted.json")),
        &token,
    );
    let ProviderError::Status { retry_after, body, .. } = quota else {
        panic!("a status error")
    };
    assert_eq!(retry_after, Some(Duration::from_secs(7)));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"],
        "resource_exhausted"
    );
}

#[test]
fn an_access_token_quoted_in_an_error_is_blanked() {
    let vertex = metadata_vertex(VertexPublisher::Google);
    let token = AccessToken::for_tests("ya29.secret-token");
    let body = r#"{"error": {"code": 401, "message": "token ya29.secret-token expired", "status": "UNAUTHENTICATED"}}"#;
    let ProviderError::Status { body, .. } = vertex.normalize(status_error(401, body), &token) else {
        panic!("a status error")
    };
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(!text.contains("secret-token"), "{text}");
    assert!(text.contains("token [redacted] expired"), "{text}");
}

#[test]
fn a_second_401_says_the_token_was_refused_twice() {
    let vertex = metadata_vertex(VertexPublisher::Google);
    let token = AccessToken::for_tests("ya29.token");
    let error = super::refused_twice(vertex.normalize(
        status_error(401, include_str!("../fixtures/vertex/error_unauthenticated.json")),
        &token,
    ));
    let ProviderError::Status { status, body, .. } = error else {
        panic!("a status error")
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["error"]["message"],
        "Vertex AI refused the access token twice, once after fetching a new one: Request had invalid authentication \
         credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."
    );
    assert_eq!(body["error"]["code"], "unauthenticated");
}

#[test]
fn a_predict_answer_gives_the_vectors_and_the_token_count() {
    let answer: super::PredictAnswer =
        serde_json::from_str(include_str!("../fixtures/vertex/predict_embeddings_response.json")).unwrap();
    let counts: Vec<u64> = answer
        .predictions
        .iter()
        .map(|p| p.embeddings.statistics.as_ref().unwrap().token_count)
        .collect();
    assert_eq!(counts, vec![4, 6]);
    let values: Vec<Vec<f64>> = answer
        .predictions
        .into_iter()
        .map(|p| p.embeddings.values.values)
        .collect();
    assert_eq!(values, vec![vec![0.25, -0.5, 0.125], vec![1.5, 0.75, -0.0625]]);
}
