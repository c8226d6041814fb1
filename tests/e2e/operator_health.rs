//! What sidecars observe, in status (DESIGN §3, §6.4), through the real parts: a real
//! sidecar serving from the real operator against the in-test upstream.
//!
//! - Backend health: the upstream's failures open the backend's circuit; the sidecar reports
//!   it without waiting for the next interval, and the operator shows it in `status.backends`
//!   until a probe succeeds.
//! - A report carrying only health is accepted, shown before its ack, and taken once per
//!   sequence; health naming a route that is not the pod's refuses the whole report.
//! - Cache writes: Anthropic's `cache_creation_input_tokens` reach `status.usage`.

use std::time::Duration;

use anyhow::{Result, ensure};
use hyper::StatusCode;
use kube::Api;
use serde_json::Value;
use sluice_crds::ModelRoute;
use sluice_tests::cluster::{TestCluster, cluster};
use sluice_tests::operator::{Certs, ClusterSidecar, OperatorProcess, TestPod, eventually};
use sluice_tests::upstream::{Behaviour, Upstream, Wire};

/// The upstream model behind the route: answers normally unless scripted otherwise.
const MODEL: &str = "mock-ok-health";

/// One backend whose circuit opens after two failures in a row and half-opens 2 s later; one
/// attempt per request, so each failing request is one failure.
fn manifests(upstream: &Upstream) -> String {
    format!(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: chat}}
spec:
  models: [chat]
  retry: {{attempts: 1}}
  circuitBreaker: {{consecutiveFailures: 2, openFor: 2s}}
  backends:
  - name: up
    provider: openai-compatible
    baseUrl: "http://{}/v1"
    model: {MODEL}
"#,
        upstream.addr
    )
}

/// The status entry of backend `up`, when there is one.
async fn backend_status(c: &TestCluster) -> Option<Value> {
    let route = Api::<ModelRoute>::namespaced(c.client.clone(), &c.namespace)
        .get("chat")
        .await
        .ok()?;
    let backends = route.status?.backends;
    let up = backends.into_iter().find(|b| b.name.as_str() == "up")?;
    serde_json::to_value(up).ok()
}

/// Waits until backend `up`'s status passes `check`; returns it.
async fn wait_backend(c: &TestCluster, what: &str, check: impl Fn(&Value) -> bool) -> Result<Value> {
    eventually(what, Duration::from_secs(30), || async {
        backend_status(c).await.filter(|s| check(s))
    })
    .await
}

#[tokio::test]
async fn a_backend_whose_circuit_opens_shows_open_in_status_within_seconds_and_closed_once_it_recovers() -> Result<()> {
    let Some(c) = cluster("operator_health_circuit").await? else {
        return Ok(());
    };
    c.install_crds().await?;
    let upstream = Upstream::start(&[Wire::OpenAi]).await?;
    c.kubectl_ns(&["apply", "-f", "-"], Some(&manifests(&upstream)))
        .await?
        .ok()?;
    let dir = tempfile::tempdir()?;
    let certs = Certs::generate(dir.path())?;
    let operator = OperatorProcess::start(&c, &certs, "op-1").await?;
    let pod = TestPod::create(&c, dir.path(), "pod-a", &[]).await?;
    let sidecar = ClusterSidecar::spawn(&pod, &operator.control_url, &certs.ca()).await?;
    sidecar.wait_served_by("chat", "up", Duration::from_secs(60)).await?;
    let healthy = wait_backend(&c, "backend up closed with a latency", |s| {
        s["circuit"] == "closed" && s["healthy"] == true && s["latencyP50Ms"].is_u64()
    })
    .await?;
    ensure!(healthy["requests"].as_u64() >= Some(1), "{healthy}");

    // Two failures in a row open the circuit; the third request is refused without reaching
    // the upstream.
    upstream.script(MODEL, [Behaviour::Fail(StatusCode::INTERNAL_SERVER_ERROR); 2]);
    for _ in 0..2 {
        let answer = sidecar.chat("chat").await;
        ensure!(answer.as_ref().is_some_and(|a| a.status == 502), "{answer:?}");
    }
    let refused = sidecar.chat("chat").await;
    ensure!(refused.as_ref().is_some_and(|a| a.status == 503), "{refused:?}");
    let open = wait_backend(&c, "backend up open in status", |s| s["circuit"] == "open").await?;
    ensure!(open["healthy"] == false, "{open}");

    // Once openFor has passed, the probe reaches the upstream, which answers again: the
    // circuit closes and status follows.
    sidecar.wait_served_by("chat", "up", Duration::from_secs(30)).await?;
    let closed = wait_backend(&c, "backend up closed again in status", |s| s["circuit"] == "closed").await?;
    ensure!(closed["latencyP50Ms"].is_u64(), "{closed}");
    Ok(())
}

#[tokio::test]
async fn anthropic_cache_writes_reach_the_route_usage_in_status() -> Result<()> {
    use sluice_tests::upstream::anthropic::CACHE_CREATION_TOKENS;
    let Some(c) = cluster("operator_health_cache_writes").await? else {
        return Ok(());
    };
    c.install_crds().await?;
    let upstream = Upstream::start(&[Wire::Anthropic]).await?;
    let manifests = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: anthropic}}
stringData: {{apiKey: test-key}}
---
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: chat}}
spec:
  models: [chat]
  backends:
  - name: claude
    provider: anthropic
    baseUrl: "{}"
    model: mock-ok
    credentialsRef: {{name: anthropic, key: apiKey}}
"#,
        upstream.base_url_of(Wire::Anthropic)
    );
    c.kubectl_ns(&["apply", "-f", "-"], Some(&manifests)).await?.ok()?;
    let dir = tempfile::tempdir()?;
    let certs = Certs::generate(dir.path())?;
    let operator = OperatorProcess::start(&c, &certs, "op-1").await?;
    let pod = TestPod::create(&c, dir.path(), "pod-a", &[]).await?;
    let sidecar = ClusterSidecar::spawn(&pod, &operator.control_url, &certs.ca()).await?;
    sidecar
        .wait_served_by("chat", "claude", Duration::from_secs(60))
        .await?;
    let answer = sidecar.chat("chat").await;
    ensure!(answer.as_ref().is_some_and(|a| a.status == 200), "{answer:?}");

    // Every request the upstream answered wrote CACHE_CREATION_TOKENS into its cache.
    let answered = u64::try_from(upstream.count("mock-ok"))?;
    ensure!(answered >= 2, "{answered}");
    let routes = Api::<ModelRoute>::namespaced(c.client.clone(), &c.namespace);
    let usage = eventually("every answered request in status", Duration::from_secs(30), || async {
        let usage = routes.get("chat").await.ok()?.status?.usage?;
        (usage.requests == answered).then_some(usage)
    })
    .await?;
    ensure!(
        usage.cache_write_input_tokens == answered * CACHE_CREATION_TOKENS,
        "{usage:?}"
    );
    Ok(())
}

/// Posts `body` as a usage report with `pod`'s token; the status code and body of the answer.
async fn post_report(operator: &OperatorProcess, certs: &Certs, pod: &TestPod, body: &Value) -> Result<(u16, String)> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.ca())?)?;
    let http = reqwest::Client::builder().tls_certs_only([ca]).build()?;
    let response = http
        .post(format!("{}/v1/usage", operator.control_url))
        .bearer_auth(std::fs::read_to_string(&pod.token_file)?)
        .json(body)
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}

#[tokio::test]
async fn a_report_with_only_health_is_shown_before_its_ack_and_taken_once_per_sequence() -> Result<()> {
    let Some(c) = cluster("operator_health_only").await? else {
        return Ok(());
    };
    c.install_crds().await?;
    let manifests = "apiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {name: chat}\nspec:\n  models: [chat]\n  backends: [{name: up, provider: openai-compatible, baseUrl: \"http://127.0.0.1:9/v1\", model: m}]\n";
    c.kubectl_ns(&["apply", "-f", "-"], Some(manifests)).await?.ok()?;
    let dir = tempfile::tempdir()?;
    let certs = Certs::generate(dir.path())?;
    let operator = OperatorProcess::start(&c, &certs, "op-1").await?;
    let pod = TestPod::create(&c, dir.path(), "pod-a", &[]).await?;
    let report = |sequence: u64, route: &str, circuit: &str| {
        serde_json::json!({"podUid": pod.uid, "sequence": sequence, "deltas": [], "health": [{
            "route": {"namespace": c.namespace, "name": route}, "backend": "up", "circuit": circuit,
            "requests": 3, "errors": 3}]})
    };

    let (code, body) = post_report(&operator, &certs, &pod, &report(1, "chat", "open")).await?;
    ensure!(code == 200 && body.contains("\"sequence\":1"), "{code} {body}");
    // Acked only after the status write: no wait needed.
    let open = backend_status(&c).await;
    ensure!(
        open.as_ref()
            .is_some_and(|s| s["circuit"] == "open" && s["healthy"] == false && s["requests"] == 0),
        "{open:?}"
    );
    // The same sequence again (a lost ack): acked, and nothing of it taken.
    let (code, body) = post_report(&operator, &certs, &pod, &report(1, "chat", "closed")).await?;
    ensure!(code == 200 && body.contains("\"sequence\":1"), "{code} {body}");
    let still = backend_status(&c).await;
    ensure!(still.as_ref().is_some_and(|s| s["circuit"] == "open"), "{still:?}");
    // Health for a route that does not exist refuses the report.
    let (code, body) = post_report(&operator, &certs, &pod, &report(2, "elsewhere", "closed")).await?;
    ensure!(code == 403 && body.contains("elsewhere"), "{code} {body}");
    let (code, _) = post_report(&operator, &certs, &pod, &report(2, "chat", "closed")).await?;
    ensure!(code == 200);
    let closed = backend_status(&c).await;
    ensure!(closed.as_ref().is_some_and(|s| s["circuit"] == "closed"), "{closed:?}");
    Ok(())
}
