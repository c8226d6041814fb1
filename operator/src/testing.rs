//! What the reconciler, status and flush tests share: a mocked API server that checks every
//! call the code under test makes (method, path with query, content type, exact JSON body, in
//! order) and answers it, and a [`Context`] around its client (kube-rs controller-rs's
//! `ApiServerVerifier` pattern: reconcilers tested in seconds, without a control plane).
//!
//! Times the code takes from the wall clock (`lastTransitionTime`, an Event's `eventTime` and
//! the name made from it) are checked to lie within the test's run and then compared as
//! `"<now>"`, so a body that keeps an old time still has to keep it exactly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{sync::Arc, time::Duration};

use http::{Method, Request, Response, StatusCode};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Client,
    client::Body,
    runtime::{
        events::{Recorder, Reporter},
        reflector::{self, store::Writer},
        watcher,
    },
};
use serde_json::{Value, json};
use sluice_crds::{Budget, ModelRoute};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle};

use crate::{
    context::{Context, Settings},
    metrics::Metrics,
};

pub mod fixtures;

/// How long a test waits for a call that should come (or for the verifier to finish). Under a
/// paused clock this passes at once when nothing else can run, so a missing call fails fast.
const BOUND: Duration = Duration::from_secs(5);

/// Stands in for `lastTransitionTime` and `eventTime` values written during the test.
pub const NOW: &str = "<now>";

/// One call the API server expects, and what it answers.
#[derive(Debug)]
pub struct Call {
    method: Method,
    uri: String,
    content_type: Option<&'static str>,
    body: Option<Value>,
    status: StatusCode,
    answer: Value,
}

impl Call {
    fn new(method: Method, uri: &str, content_type: Option<&'static str>, body: Option<Value>) -> Self {
        Self {
            method,
            uri: uri.to_owned(),
            content_type,
            body,
            status: StatusCode::OK,
            answer: json!({}),
        }
    }

    /// A `GET` of `uri` (path and query), without a body.
    pub fn get(uri: &str) -> Self {
        Self::new(Method::GET, uri, None, None)
    }

    /// A `POST` (create) of exactly `body`.
    pub fn post(uri: &str, body: Value) -> Self {
        Self::new(Method::POST, uri, Some("application/json"), Some(body))
    }

    /// A `PUT` (replace) of exactly `body`.
    pub fn put(uri: &str, body: Value) -> Self {
        Self::new(Method::PUT, uri, Some("application/json"), Some(body))
    }

    /// A server-side apply `PATCH` of exactly `body`.
    pub fn apply(uri: &str, body: Value) -> Self {
        Self::new(Method::PATCH, uri, Some("application/apply-patch+yaml"), Some(body))
    }

    /// Answers `200 OK` with `object`.
    pub fn answers(mut self, object: Value) -> Self {
        self.status = StatusCode::OK;
        self.answer = object;
        self
    }

    /// Answers `201 Created` with `object`.
    pub fn creates(mut self, object: Value) -> Self {
        self.status = StatusCode::CREATED;
        self.answer = object;
        self
    }

    /// Answers with a failure `Status` as the API server sends it.
    pub fn fails(mut self, code: u16, reason: &str, message: &str) -> Self {
        self.status = StatusCode::from_u16(code).expect("a status code");
        self.answer = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        });
        self
    }

    /// Answers `404 NotFound` for the object `name` of `resource` (plural, e.g. `configmaps`).
    pub fn not_found(self, resource: &str, name: &str) -> Self {
        let message = format!("{resource} {name:?} not found");
        self.fails(404, "NotFound", &message)
    }
}

/// The mocked API server's side of the client.
#[derive(Debug)]
pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
    since: Timestamp,
    answered: usize,
}

/// A client whose every call reaches the returned [`ApiServer`].
pub fn mocked() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = ApiServer {
        handle,
        since: Timestamp::now(),
        answered: 0,
    };
    (Client::new(service, "default"), server)
}

impl ApiServer {
    /// Waits (within a bound) for the next call, checks it is `call`, and answers it.
    pub async fn answer(&mut self, call: Call) {
        let n = self.answered + 1;
        let what = format!("call {n} ({} {})", call.method, call.uri);
        let next = tokio::time::timeout(BOUND, self.handle.next_request()).await;
        let (request, reply) = match next {
            Ok(Some(next)) => next,
            Ok(None) => panic!("{what} never came: every client was dropped"),
            Err(_) => panic!("{what} never came within {BOUND:?}"),
        };
        assert_eq!(
            (request.method(), request.uri().to_string()),
            (&call.method, call.uri.clone()),
            "{what}: another method or path"
        );
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(content_type.as_deref(), call.content_type, "{what}: content type");
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            None
        } else {
            let mut body: Value = serde_json::from_slice(&bytes).unwrap();
            stamp_now(&mut body, self.since);
            Some(body)
        };
        if body != call.body {
            let pretty = |b: &Option<Value>| serde_json::to_string_pretty(b).unwrap();
            panic!(
                "{what}: another body\nsent:\n{}\nexpected:\n{}",
                pretty(&body),
                pretty(&call.body)
            );
        }
        let response = Response::builder()
            .status(call.status)
            .body(Body::from(serde_json::to_vec(&call.answer).unwrap()))
            .unwrap();
        reply.send_response(response);
        self.answered = n;
    }

    /// Checks that no call comes before every client is dropped.
    pub async fn closed(mut self) {
        match tokio::time::timeout(BOUND, self.handle.next_request()).await {
            Ok(None) => {}
            Ok(Some((request, _))) => panic!(
                "unexpected call after {} expected ones: {} {}",
                self.answered,
                request.method(),
                request.uri()
            ),
            Err(_) => panic!("a client is still alive after {BOUND:?}: drop the context first"),
        }
    }

    /// Answers `calls` in order in a task of its own, then checks that no other call comes.
    pub fn run(mut self, calls: Vec<Call>) -> Verifier {
        Verifier(tokio::spawn(async move {
            for call in calls {
                self.answer(call).await;
            }
            self.closed().await;
        }))
    }
}

/// The task answering the expected calls.
#[derive(Debug)]
pub struct Verifier(JoinHandle<()>);

impl Verifier {
    /// Waits until every expected call was answered and every client dropped; fails the test
    /// with the verifier's own message when a call was wrong or missing.
    pub async fn done(self) {
        match tokio::time::timeout(BOUND * 2, self.0).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Err(e)) => panic!("the verifier failed: {e}"),
            Err(_) => panic!("the verifier did not finish within {:?}", BOUND * 2),
        }
    }
}

/// Runs `work` with `ctx`, then drops the context and waits for `verifier`, so that a wrong or
/// missing call fails the test with the verifier's message before `work`'s result is judged.
pub async fn verified<T>(ctx: Arc<Context>, verifier: Verifier, work: impl AsyncFnOnce(&Arc<Context>) -> T) -> T {
    let out = work(&ctx).await;
    drop(ctx);
    verifier.done().await;
    out
}

/// Replaces the wall-clock times written since `since` by [`NOW`] (see the module's comment).
fn stamp_now(value: &mut Value, since: Timestamp) {
    // Written times have whole seconds (`Time`) or microseconds (`MicroTime`).
    let from = Timestamp::from_second(since.as_second()).unwrap();
    let recent = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<Timestamp>().ok())
            .is_some_and(|t| from <= t && t <= Timestamp::now())
    };
    match value {
        Value::Object(map) => {
            if map.get("kind").and_then(Value::as_str) == Some("Event") && map.get("eventTime").is_some_and(recent) {
                // Recorder names an Event `<regarding>.<nanoseconds of its time, in hex>`.
                if let Some(name) = map.get_mut("metadata").and_then(|m| m.get_mut("name")) {
                    let stamped = name
                        .as_str()
                        .and_then(|n| n.rsplit_once('.'))
                        .and_then(|(head, hex)| u128::from_str_radix(hex, 16).ok().map(|_| format!("{head}.{NOW}")));
                    if let Some(stamped) = stamped {
                        *name = Value::String(stamped);
                    }
                }
            }
            for (key, v) in map.iter_mut() {
                if (key == "lastTransitionTime" || key == "eventTime") && recent(v) {
                    *v = Value::String(NOW.to_owned());
                } else {
                    stamp_now(v, since);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| stamp_now(v, since)),
        _ => {}
    }
}

/// The writers of a test context's caches: what the reflectors would fill.
#[derive(Debug)]
pub struct CacheWriters {
    routes: Writer<ModelRoute>,
    budgets: Writer<Budget>,
    pods: Writer<Pod>,
}

impl CacheWriters {
    /// Puts (or replaces) a route in the cache.
    pub fn route(&mut self, route: &ModelRoute) {
        self.routes.apply_watcher_event(&watcher::Event::Apply(route.clone()));
    }

    /// Puts (or replaces) a budget in the cache.
    pub fn budget(&mut self, budget: &Budget) {
        self.budgets.apply_watcher_event(&watcher::Event::Apply(budget.clone()));
    }

    /// Puts (or replaces) a pod in the cache.
    pub fn pod(&mut self, pod: &Pod) {
        self.pods.apply_watcher_event(&watcher::Event::Apply(pod.clone()));
    }
}

impl Context {
    /// A context around `client` with the production defaults, whose caches count as filled
    /// (the test fills them through the returned writers) and whose Events come from
    /// `sluice-operator` instance `sluice-operator-0`.
    pub fn for_tests(client: Client) -> (Arc<Self>, CacheWriters) {
        let (routes, routes_writer) = reflector::store();
        let (budgets, budgets_writer) = reflector::store();
        let (pods, pods_writer) = reflector::store();
        let settings = Settings {
            status_interval: Duration::from_secs(2),
            heartbeat: Duration::from_secs(15),
            sizing_window: Duration::from_secs(60),
            watch_namespace: None,
            ledger_namespace: "sluice-system".to_owned(),
            inject: None,
        };
        let reporter = Reporter {
            controller: "sluice-operator".into(),
            instance: Some("sluice-operator-0".into()),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        let ctx = Self::new(
            client,
            settings,
            (routes, budgets, pods),
            recorder,
            Arc::new(Metrics::default()),
        );
        ctx.cache_filled(|c| {
            *c = crate::context::Caches {
                routes: true,
                budgets: true,
                pods: true,
            }
        });
        let caches = CacheWriters {
            routes: routes_writer,
            budgets: budgets_writer,
            pods: pods_writer,
        };
        (Arc::new(ctx), caches)
    }
}

/// `expected` as the API server answers it once stored: [`NOW`] made a real time, and the
/// `resourceVersion` (if any) moved on.
pub fn stored(mut expected: Value) -> Value {
    fn real_times(v: &mut Value, now: &str) {
        match v {
            Value::String(s) if s.contains(NOW) => *s = s.replace(NOW, now),
            Value::Object(map) => map.values_mut().for_each(|v| real_times(v, now)),
            Value::Array(items) => items.iter_mut().for_each(|v| real_times(v, now)),
            _ => {}
        }
    }
    let now = jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", Timestamp::now()).unwrap();
    real_times(&mut expected, &now);
    let version = &mut expected["metadata"]["resourceVersion"];
    if let Some(n) = version.as_str().and_then(|v| v.parse::<u64>().ok()) {
        *version = json!((n + 1).to_string());
    }
    expected
}

/// A Kubernetes object from its JSON.
pub fn object<K: serde::de::DeserializeOwned>(json: Value) -> K {
    serde_json::from_value(json).unwrap()
}

/// The number of status (or ledger) writes of `kind` with `result` (`ok`, `error`).
pub fn writes(ctx: &Context, kind: &str, result: &str) -> u64 {
    let labels = crate::metrics::WriteLabels {
        kind: kind.to_owned(),
        result: result.to_owned(),
    };
    ctx.metrics.status_writes.get_or_create(&labels).get()
}

/// The number of usage reports counted with `result` (`applied`, `duplicate`, `failed`).
pub fn reports(ctx: &Context, result: &str) -> u64 {
    let labels = crate::metrics::ReportLabels {
        result: result.to_owned(),
    };
    ctx.metrics.usage_reports.get_or_create(&labels).get()
}
