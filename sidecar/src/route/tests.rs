//! Extra headers: resolved at compile time and sent by the backend's client, whatever the provider.

use std::time::Duration;

use serde_json::json;
use sluice_crds::{ApiKey, BackendName, ConfigSnapshot, LimitShare, ModelName, ModelRouteSpec, ObjectKey, RouteConfig};

use super::*;
use crate::{
    providers::{
        ChatCall,
        testing::{Answer, Scripted},
    },
    request::parse_chat,
};

const SECRET: &str = "proxy-secret-7f3a9c";

fn config(spec: serde_json::Value, header_values: &[(&str, &str, &str)]) -> RouteConfig {
    let spec: ModelRouteSpec = serde_json::from_value(spec).unwrap();
    let mut values: BTreeMap<BackendName, BTreeMap<String, ApiKey>> = BTreeMap::new();
    for (backend, name, value) in header_values {
        values
            .entry(BackendName::try_from(*backend).unwrap())
            .or_default()
            .insert((*name).to_owned(), ApiKey::new(*value));
    }
    RouteConfig {
        key: ObjectKey {
            namespace: "ns".into(),
            name: "chat".into(),
        },
        credentials: spec
            .backends
            .iter()
            .filter(|b| b.credentials_ref.is_some())
            .map(|b| (b.name.clone(), ApiKey::new("sk-provider-key")))
            .collect(),
        spec,
        header_values: values,
        share: LimitShare::default(),
    }
}

fn compile(clients: &ClientCache, config: RouteConfig) -> Result<RouteTable, CompileError> {
    let states = state::StateRegistry::default();
    let mut pending = states.begin();
    RouteTable::compile(
        &ConfigSnapshot::new(vec![config], vec![]),
        clients,
        &states,
        &mut pending,
    )
}

fn backend(base: &str, provider: &str) -> serde_json::Value {
    json!({"name": "up", "provider": provider, "model": "mock-ok", "baseUrl": base,
    "credentialsRef": {"name": "keys", "key": "up"},
    "headers": [
        {"name": "X-Tenant", "value": "team-a"},
        {"name": "x-proxy-key", "valueFrom": {"name": "proxy", "key": "token"}},
    ]})
}

#[tokio::test]
async fn extra_headers_are_sent_beside_the_providers_own_auth() {
    let completion = json!({"id": "1", "object": "chat.completion", "created": 1, "model": "mock-ok",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]});
    let upstream = Scripted::start([Answer::json(200, completion.to_string())]).await;
    let spec = json!({"models": ["chat"], "backends": [backend(&format!("{}/v1", upstream.url()), "openai")]});
    let table = compile(&ClientCache::default(), config(spec, &[("up", "x-proxy-key", SECRET)])).unwrap();
    let route = table.resolve("chat").unwrap();
    let request = parse_chat(br#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
    let model = ModelName::try_from("mock-ok").unwrap();
    let call = ChatCall {
        request: &request,
        model: &model,
        deadline: tokio::time::Instant::now() + Duration::from_secs(30),
    };

    route.backends[0].upstream.chat(&call).await.unwrap();

    let seen = &upstream.seen()[0];
    assert_eq!(seen.header("x-tenant"), Some("team-a"));
    assert_eq!(seen.header("x-proxy-key"), Some(SECRET));
    assert_eq!(seen.header("authorization"), Some("Bearer sk-provider-key"));
}

#[test]
fn a_secret_header_value_is_never_in_debug_output() {
    let spec = json!({"models": ["chat"], "backends": [backend("http://127.0.0.1:9/v1", "anthropic")]});
    let clients = ClientCache::default();
    let table = compile(&clients, config(spec, &[("up", "x-proxy-key", SECRET)])).unwrap();

    let shown = format!("{table:?} {clients:?}");

    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("x-proxy-key"), "the header's name may show: {shown}");
}

#[test]
fn a_header_whose_secret_did_not_resolve_refuses_the_config() {
    let spec = json!({"models": ["chat"], "backends": [backend("http://127.0.0.1:9/v1", "gemini")]});

    let error = compile(&ClientCache::default(), config(spec, &[])).unwrap_err();

    assert!(
        matches!(error, CompileError::MissingHeaderValue { ref header, .. } if header == "x-proxy-key"),
        "{error}"
    );
}

#[test]
fn pools_follow_the_config_and_rotated_values_do_not_pile_up() {
    let clients = ClientCache::default();
    let spec = json!({"models": ["chat"], "backends": [backend("http://127.0.0.1:9/v1", "openai")]});
    for value in ["one", "two", "three"] {
        compile(&clients, config(spec.clone(), &[("up", "x-proxy-key", value)])).unwrap();
    }
    // The backend's pool (timeouts and headers) and the identity pool (timeouts alone).
    assert_eq!(clients.0.lock().unwrap().len(), 2);
}
