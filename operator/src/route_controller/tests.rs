//! The route reconciler against a mocked API server: each test lists every call a reconcile
//! makes, in order, with its exact body.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sluice_crds::ApiKey;

use super::*;
use crate::testing::{
    Call, NOW,
    fixtures::{EARLIER, LEDGER_PATH, NS, chat_route, condition, ledger_configmap, secret, status_path},
    mocked, object, stored, verified,
};

const SECRET_PATH: &str = "/api/v1/namespaces/team-a/secrets/openai";

fn key() -> ObjectKey {
    ObjectKey {
        namespace: NS.to_owned(),
        name: "chat".to_owned(),
    }
}

/// `status.configVersion` of `chat` accepted at `generation` with `spec` and the key `sk-test`.
fn config_version(generation: i64, spec: &Value) -> String {
    AcceptedRoute {
        key: key(),
        generation,
        spec: object(spec.clone()),
        credentials: BTreeMap::from([(BackendName::try_from("openai").unwrap(), ApiKey::new("sk-test"))]),
        header_values: Default::default(),
    }
    .digest()
}

/// The `base64` of `sk-test`, as a Secret holds it.
const SK_TEST: &str = "c2stdGVzdA==";

/// The Warning Event the route controller publishes about `chat`.
fn warning(reason: &str, note: &str) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": format!("chat.{NOW}"), "namespace": NS},
        "action": "Validate", "eventTime": NOW, "note": note, "reason": reason,
        "regarding": {
            "apiVersion": "sluice.dev/v1alpha1", "kind": "ModelRoute", "name": "chat",
            "namespace": NS, "uid": "route-uid",
        },
        "reportingController": "sluice-operator", "reportingInstance": "sluice-operator-0",
        "type": "Warning",
    })
}

fn status_apply(status: &Value) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "ModelRoute", "status": status})
}

fn no_sidecars() -> Value {
    json!({"desired": 0, "inSync": 0, "outdated": 0})
}

#[tokio::test]
async fn an_accepted_route_is_recorded_in_the_ledger_before_its_status_says_pushed() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let route = chat_route(1, json!({}), Value::Null);
    caches.route(&object(route.clone()));
    let ledger = json!({
        "pods": {}, "routes": {}, "budgets": {},
        "accepted": {"chat": {"generation": 1, "spec": object::<ModelRouteSpec>(route["spec"].clone())}},
    });
    let status = json!({
        "observedGeneration": 1,
        "conditions": [
            condition("Accepted", true, "Accepted", "", 1, NOW),
            condition("ResolvedRefs", true, "ResolvedRefs", "", 1, NOW),
            condition("Ready", true, "Pushed", "pushed to the selected sidecars", 1, NOW),
        ],
        "configVersion": config_version(1, &route["spec"]),
        "sidecars": no_sidecars(),
    });
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).not_found("configmaps", "sluice-usage-team-a"),
        Call::get(SECRET_PATH).answers(secret(json!({"apiKey": SK_TEST}))),
        Call::post(
            "/api/v1/namespaces/sluice-system/configmaps?&fieldManager=sluice-operator",
            ledger_configmap(&ledger, None),
        )
        .creates(ledger_configmap(&ledger, Some("1"))),
        Call::apply(&status_path("modelroutes", "chat"), status_apply(&status)).answers(stored(chat_route(
            1,
            json!({}),
            status,
        ))),
    ]);

    let (action, served) = verified(ctx, verifier, async |ctx| {
        let action = reconcile(Arc::new(object(route)), ctx.clone()).await;
        (action, ctx.verdicts.accepted(&key()).map(|a| a.generation))
    })
    .await;

    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(3600)));
    assert_eq!(served, Some(1));
}

#[tokio::test]
async fn a_route_with_an_unknown_budget_gets_a_condition_naming_the_field() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let route = chat_route(1, json!({"budgetRef": {"name": "monthly"}}), Value::Null);
    caches.route(&object(route.clone()));
    let message = r#"spec.budgetRef.name: Budget "monthly" does not exist in this namespace"#;
    let status = json!({
        "observedGeneration": 1,
        "conditions": [
            condition("Accepted", true, "Accepted", "", 1, NOW),
            condition("ResolvedRefs", false, "BudgetNotFound", message, 1, NOW),
            condition("Ready", false, "NotAccepted", "not served", 1, NOW),
        ],
        "sidecars": no_sidecars(),
    });
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).answers(ledger_configmap(&json!({}), Some("5"))),
        // Not in the cache: asked of the API server before it is called missing.
        Call::get("/apis/sluice.dev/v1alpha1/namespaces/team-a/budgets/monthly").not_found("budgets", "monthly"),
        Call::post(
            "/apis/events.k8s.io/v1/namespaces/team-a/events?",
            warning("BudgetNotFound", message),
        )
        .creates(stored(warning("BudgetNotFound", message))),
        Call::apply(&status_path("modelroutes", "chat"), status_apply(&status)).answers(stored(chat_route(
            1,
            json!({"budgetRef": {"name": "monthly"}}),
            status,
        ))),
    ]);

    let (action, served) = verified(ctx, verifier, async |ctx| {
        let action = reconcile(Arc::new(object(route)), ctx.clone()).await;
        (action, ctx.verdicts.accepted(&key()).map(|a| a.generation))
    })
    .await;

    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(300)));
    assert_eq!(served, None);
}

#[tokio::test]
async fn a_secret_without_the_key_is_named_in_resolved_refs() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let route = chat_route(1, json!({}), Value::Null);
    caches.route(&object(route.clone()));
    let message = r#"spec.backends[0].credentialsRef: Secret "openai" has no non-empty key "apiKey""#;
    let status = json!({
        "observedGeneration": 1,
        "conditions": [
            condition("Accepted", true, "Accepted", "", 1, NOW),
            condition("ResolvedRefs", false, "SecretKeyNotFound", message, 1, NOW),
            condition("Ready", false, "NotAccepted", "not served", 1, NOW),
        ],
        "sidecars": no_sidecars(),
    });
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).answers(ledger_configmap(&json!({}), Some("5"))),
        // A key holding only whitespace counts as missing.
        Call::get(SECRET_PATH).answers(secret(json!({"apiKey": "IAo=", "other": SK_TEST}))),
        Call::post(
            "/apis/events.k8s.io/v1/namespaces/team-a/events?",
            warning("SecretKeyNotFound", message),
        )
        .creates(stored(warning("SecretKeyNotFound", message))),
        Call::apply(&status_path("modelroutes", "chat"), status_apply(&status)).answers(stored(chat_route(
            1,
            json!({}),
            status,
        ))),
    ]);

    let action = verified(ctx, verifier, async |ctx| {
        reconcile(Arc::new(object(route)), ctx.clone()).await
    })
    .await;

    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(300)));
}

#[tokio::test]
async fn a_route_broken_after_a_restart_keeps_serving_the_generation_in_the_ledger() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let accepted = chat_route(1, json!({}), Value::Null);
    let earlier = json!({
        "observedGeneration": 1,
        "conditions": [
            condition("Accepted", true, "Accepted", "", 1, EARLIER),
            condition("ResolvedRefs", true, "ResolvedRefs", "", 1, EARLIER),
            condition("Ready", true, "Pushed", "pushed to the selected sidecars", 1, EARLIER),
        ],
    });
    let broken = chat_route(2, json!({"models": []}), earlier);
    caches.route(&object(broken.clone()));
    let ledger = json!({"accepted": {"chat": {"generation": 1, "spec": accepted["spec"]}}});
    let message = "spec.models: list at least one model name clients may send";
    let status = json!({
        "observedGeneration": 2,
        "conditions": [
            condition("Accepted", false, "Invalid", message, 2, NOW),
            // Not judged while the spec is invalid: it keeps what it said, and since when.
            condition("ResolvedRefs", true, "ResolvedRefs", "", 1, EARLIER),
            condition("Ready", false, "NotAccepted", "not served as written; sidecars keep generation 1", 2, NOW),
        ],
        "configVersion": config_version(1, &accepted["spec"]),
        "sidecars": no_sidecars(),
    });
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).answers(ledger_configmap(&ledger, Some("5"))),
        // The recorded generation's Secret is read again: keys are never stored.
        Call::get(SECRET_PATH).answers(secret(json!({"apiKey": SK_TEST}))),
        Call::post(
            "/apis/events.k8s.io/v1/namespaces/team-a/events?",
            warning("Invalid", message),
        )
        .creates(stored(warning("Invalid", message))),
        Call::apply(&status_path("modelroutes", "chat"), status_apply(&status)).answers(stored(chat_route(
            2,
            json!({"models": []}),
            status,
        ))),
    ]);

    let (action, served) = verified(ctx, verifier, async |ctx| {
        let action = reconcile(Arc::new(object(broken)), ctx.clone()).await;
        (action, ctx.verdicts.accepted(&key()).map(|a| a.generation))
    })
    .await;

    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(served, Some(1));
}

#[tokio::test]
async fn a_route_whose_status_is_current_is_read_but_not_written() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let spec = chat_route(1, json!({}), Value::Null)["spec"].clone();
    let current = json!({
        "observedGeneration": 1,
        "conditions": [
            condition("Accepted", true, "Accepted", "", 1, EARLIER),
            condition("ResolvedRefs", true, "ResolvedRefs", "", 1, EARLIER),
            condition("Ready", true, "Pushed", "pushed to the selected sidecars", 1, EARLIER),
        ],
        "configVersion": config_version(1, &spec),
        "sidecars": no_sidecars(),
    });
    let route = chat_route(1, json!({}), current);
    caches.route(&object(route.clone()));
    let ledger = json!({"accepted": {"chat": {"generation": 1, "spec": spec}}});
    // The ledger already records this generation and the status says it all: reads only.
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).answers(ledger_configmap(&ledger, Some("5"))),
        Call::get(SECRET_PATH).answers(secret(json!({"apiKey": SK_TEST}))),
    ]);

    let action = verified(ctx, verifier, async |ctx| {
        reconcile(Arc::new(object(route)), ctx.clone()).await
    })
    .await;

    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(3600)));
}

#[tokio::test]
async fn a_ledger_that_cannot_be_read_fails_the_reconcile_before_anything_is_decided() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let route = chat_route(1, json!({}), Value::Null);
    caches.route(&object(route.clone()));
    let verifier = server.run(vec![Call::get(LEDGER_PATH).fails(
        500,
        "InternalError",
        "etcdserver: request timed out",
    )]);

    let (result, verdict) = verified(ctx, verifier, async |ctx| {
        let result = reconcile(Arc::new(object(route)), ctx.clone()).await;
        (result, ctx.verdicts.verdict(&key()))
    })
    .await;

    assert!(
        matches!(&result, Err(Error::Kube(kube::Error::Api(s))) if s.code == 500),
        "{result:?}"
    );
    assert!(verdict.is_none());
}

#[tokio::test]
async fn a_route_without_a_namespace_fails_without_a_call() {
    let (client, server) = mocked();
    let (ctx, _caches) = Context::for_tests(client);
    let mut route = chat_route(1, json!({}), Value::Null);
    route["metadata"].as_object_mut().unwrap().remove("namespace");
    let verifier = server.run(Vec::new());

    let result = verified(ctx, verifier, async |ctx| {
        reconcile(Arc::new(object(route)), ctx.clone()).await
    })
    .await;

    assert!(
        matches!(&result, Err(Error::NoNamespace(name)) if name == "chat"),
        "{result:?}"
    );
}

#[test]
fn a_changed_secret_or_budget_requeues_only_the_routes_of_its_namespace_that_name_it() {
    let (store, mut writer) = reflector::store::<ModelRoute>();
    let route = |namespace: &str, name: &str, secret: &str, budget: Option<&str>| {
        let mut route = chat_route(1, json!({}), Value::Null);
        route["metadata"]["namespace"] = json!(namespace);
        route["metadata"]["name"] = json!(name);
        route["spec"]["backends"][0]["credentialsRef"]["name"] = json!(secret);
        if let Some(budget) = budget {
            route["spec"]["budgetRef"] = json!({"name": budget});
        }
        object::<ModelRoute>(route)
    };
    for r in [
        route(NS, "chat", "openai", Some("monthly")),
        route(NS, "summarize", "deepseek", Some("monthly")),
        route("team-b", "chat", "openai", Some("monthly")),
    ] {
        writer.apply_watcher_event(&watcher::Event::Apply(r));
    }
    let names = |refs: Vec<ObjectRef<ModelRoute>>| {
        let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    };

    assert_eq!(names(routes_using(&store, NS, |s| names_secret(s, "openai"))), ["chat"]);
    assert_eq!(
        names(routes_using(&store, NS, |s| names_budget(s, "monthly"))),
        ["chat", "summarize"]
    );
    assert!(routes_using(&store, NS, |s| names_budget(s, "weekly")).is_empty());
}

#[tokio::test]
async fn a_secret_two_backends_name_is_read_once_and_only_the_named_keys_are_kept() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let backends = json!({"backends": [
        {"name": "openai", "provider": "openai", "model": "gpt-4.1",
         "credentialsRef": {"name": "openai", "key": "apiKey"},
         "pricing": {"inputPerMTok": "2.00", "outputPerMTok": "8.00"}},
        {"name": "spare", "provider": "openai", "model": "gpt-4.1-mini",
         "credentialsRef": {"name": "openai", "key": "spare"},
         "pricing": {"inputPerMTok": "0.40", "outputPerMTok": "1.60"}},
    ]});
    let route = chat_route(1, backends.clone(), Value::Null);
    caches.route(&object(route.clone()));
    let credentials = BTreeMap::from([
        (BackendName::try_from("openai").unwrap(), ApiKey::new("sk-test")),
        (BackendName::try_from("spare").unwrap(), ApiKey::new("sk-spare")),
    ]);
    let accepted = AcceptedRoute {
        key: key(),
        generation: 1,
        spec: object(route["spec"].clone()),
        credentials: credentials.clone(),
        header_values: Default::default(),
    };
    let ledger = json!({
        "pods": {}, "routes": {}, "budgets": {},
        "accepted": {"chat": {"generation": 1, "spec": object::<ModelRouteSpec>(route["spec"].clone())}},
    });
    let status = json!({
        "observedGeneration": 1,
        "conditions": [
            condition("Accepted", true, "Accepted", "", 1, NOW),
            condition("ResolvedRefs", true, "ResolvedRefs", "", 1, NOW),
            condition("Ready", true, "Pushed", "pushed to the selected sidecars", 1, NOW),
        ],
        "configVersion": accepted.digest(),
        "sidecars": no_sidecars(),
    });
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).not_found("configmaps", "sluice-usage-team-a"),
        // One GET for both backends; the key no route names is dropped with the object.
        Call::get(SECRET_PATH).answers(secret(
            json!({"apiKey": SK_TEST, "spare": "c2stc3BhcmU=", "unrelated": "bmV2ZXIta2VwdA=="}),
        )),
        Call::post(
            "/api/v1/namespaces/sluice-system/configmaps?&fieldManager=sluice-operator",
            ledger_configmap(&ledger, None),
        )
        .creates(ledger_configmap(&ledger, Some("1"))),
        Call::apply(&status_path("modelroutes", "chat"), status_apply(&status))
            .answers(stored(chat_route(1, backends, status))),
    ]);

    let served = verified(ctx, verifier, async |ctx| {
        reconcile(Arc::new(object(route)), ctx.clone()).await.unwrap();
        ctx.verdicts.accepted(&key())
    })
    .await;

    assert_eq!(served.unwrap().credentials, credentials);
}

#[tokio::test]
async fn secrets_are_watched_as_metadata_only() {
    use futures::StreamExt;
    let (service, mut handle) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    let (ctx, _caches) = Context::for_tests(kube::Client::new(service, "default"));
    let mut events = watcher(secret_triggers(&ctx), watcher::Config::default()).boxed();
    // The watcher's first event (`Init`) comes before any request: drive it on.
    let driven = tokio::spawn(async move { while events.next().await.is_some() {} });
    let (request, answer) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.method(), http::Method::GET);
    assert_eq!(request.uri().path(), "/api/v1/secrets");
    // Asks for PartialObjectMetadata: the API server sends no `data`, no `stringData`.
    assert_eq!(
        request.headers().get(http::header::ACCEPT).unwrap(),
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    );
    drop(answer);
    driven.abort();
}

/// `chat`'s one backend with a header whose value is key `key` of Secret `secret`.
fn with_secret_header(secret: &str, key: &str) -> Value {
    json!({"backends": [{
        "name": "openai", "provider": "openai", "model": "gpt-4.1",
        "credentialsRef": {"name": "openai", "key": "apiKey"},
        "pricing": {"inputPerMTok": "2.00", "outputPerMTok": "8.00"},
        "headers": [{"name": "x-gateway-key", "valueFrom": {"name": secret, "key": key}}],
    }]})
}

#[tokio::test]
async fn a_header_value_from_a_secret_is_resolved_beside_the_key_and_served() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let extra = with_secret_header("openai", "gateway");
    let route = chat_route(1, extra.clone(), Value::Null);
    caches.route(&object(route.clone()));
    let header_values = BTreeMap::from([(
        BackendName::try_from("openai").unwrap(),
        BTreeMap::from([("x-gateway-key".to_owned(), ApiKey::new("gw-test"))]),
    )]);
    let accepted = AcceptedRoute {
        key: key(),
        generation: 1,
        spec: object(route["spec"].clone()),
        credentials: BTreeMap::from([(BackendName::try_from("openai").unwrap(), ApiKey::new("sk-test"))]),
        header_values: header_values.clone(),
    };
    let ledger = json!({
        "pods": {}, "routes": {}, "budgets": {},
        "accepted": {"chat": {"generation": 1, "spec": object::<ModelRouteSpec>(route["spec"].clone())}},
    });
    let status = json!({
        "observedGeneration": 1,
        "conditions": [
            condition("Accepted", true, "Accepted", "", 1, NOW),
            condition("ResolvedRefs", true, "ResolvedRefs", "", 1, NOW),
            condition("Ready", true, "Pushed", "pushed to the selected sidecars", 1, NOW),
        ],
        "configVersion": accepted.digest(),
        "sidecars": no_sidecars(),
    });
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).not_found("configmaps", "sluice-usage-team-a"),
        // The key and the header's value come from one read of the Secret.
        Call::get(SECRET_PATH).answers(secret(json!({"apiKey": SK_TEST, "gateway": "Z3ctdGVzdA=="}))),
        Call::post(
            "/api/v1/namespaces/sluice-system/configmaps?&fieldManager=sluice-operator",
            ledger_configmap(&ledger, None),
        )
        .creates(ledger_configmap(&ledger, Some("1"))),
        Call::apply(&status_path("modelroutes", "chat"), status_apply(&status))
            .answers(stored(chat_route(1, extra, status))),
    ]);

    let served = verified(ctx, verifier, async |ctx| {
        reconcile(Arc::new(object(route)), ctx.clone()).await.unwrap();
        ctx.verdicts.accepted(&key())
    })
    .await;

    assert_eq!(served.unwrap().header_values, header_values);
}

#[tokio::test]
async fn a_header_whose_secret_is_missing_is_named_in_resolved_refs() {
    let (client, server) = mocked();
    let (ctx, mut caches) = Context::for_tests(client);
    let extra = with_secret_header("gateway", "token");
    let route = chat_route(1, extra.clone(), Value::Null);
    caches.route(&object(route.clone()));
    let message = r#"spec.backends[0].headers[0].valueFrom: Secret "gateway" not found in namespace team-a"#;
    let status = json!({
        "observedGeneration": 1,
        "conditions": [
            condition("Accepted", true, "Accepted", "", 1, NOW),
            condition("ResolvedRefs", false, "SecretNotFound", message, 1, NOW),
            condition("Ready", false, "NotAccepted", "not served", 1, NOW),
        ],
        "sidecars": no_sidecars(),
    });
    let verifier = server.run(vec![
        Call::get(LEDGER_PATH).answers(ledger_configmap(&json!({}), Some("5"))),
        Call::get(SECRET_PATH).answers(secret(json!({"apiKey": SK_TEST}))),
        Call::get("/api/v1/namespaces/team-a/secrets/gateway").not_found("secrets", "gateway"),
        Call::post(
            "/apis/events.k8s.io/v1/namespaces/team-a/events?",
            warning("SecretNotFound", message),
        )
        .creates(stored(warning("SecretNotFound", message))),
        Call::apply(&status_path("modelroutes", "chat"), status_apply(&status))
            .answers(stored(chat_route(1, extra, status))),
    ]);

    let action = verified(ctx, verifier, async |ctx| {
        reconcile(Arc::new(object(route)), ctx.clone()).await
    })
    .await;

    assert!(action.is_ok());
}

#[test]
fn a_secret_a_header_names_requeues_its_route() {
    let spec: ModelRouteSpec =
        object(chat_route(1, with_secret_header("gateway", "token"), Value::Null)["spec"].clone());
    assert!(names_secret(&spec, "gateway"));
    assert!(names_secret(&spec, "openai"));
    assert!(!names_secret(&spec, "other"));
}
