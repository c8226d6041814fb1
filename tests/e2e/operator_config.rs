//! The operator pushes ModelRoutes to real sidecar processes (DESIGN §6.1, §6.2), against a
//! real kube-apiserver: apply → served, edit → the new backend is served, an invalid edit is
//! refused with the field named while the sidecar keeps the last good config, a rotated Secret
//! changes the key (and a header valued from it) on the next request, and a sidecar whose operator is gone still serves
//! after a restart from its saved snapshot.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use kube::Api;
use serde_json::{Value, json};
use sluice_crds::ModelRoute;
use sluice_tests::cluster::{TestCluster, cluster};
use sluice_tests::operator::{Certs, ClusterSidecar, OperatorProcess, TestPod, eventually};
use sluice_tests::upstream::{Upstream, Wire};

/// Generous bound for a change to travel: API server → operator → sidecar.
const WITHIN: Duration = Duration::from_secs(30);

async fn with_crds(test: &str) -> Result<Option<TestCluster>> {
    let Some(c) = cluster(test).await? else {
        return Ok(None);
    };
    c.install_crds().await?;
    Ok(Some(c))
}

fn secret(name: &str, key: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{apiKey: {key}}}\n")
}

fn route(upstream: &Upstream, backend: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: chat}}
spec:
  models: [chat]
  backends:
  - name: {backend}
    provider: openai-compatible
    baseUrl: http://{addr}/v1
    model: mock-ok
    credentialsRef: {{name: upstream, key: apiKey}}
{extra}"#,
        addr = upstream.addr
    )
}

/// Sends one chat request; returns the status and the backend that served it.
async fn chat(sidecar: &ClusterSidecar) -> Option<(u16, String)> {
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", sidecar.base_url()))
        .timeout(Duration::from_secs(10))
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .ok()?;
    let backend = response
        .headers()
        .get("x-sluice-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Some((response.status().as_u16(), backend))
}

async fn served_by(sidecar: &ClusterSidecar, backend: &str) -> Result<()> {
    eventually(&format!("the sidecar serving backend {backend}"), WITHIN, || async {
        chat(sidecar).await.filter(|(s, b)| *s == 200 && b == backend)
    })
    .await
    .map(|_| ())
}

async fn condition(c: &TestCluster, name: &str, kind: &str) -> Option<Value> {
    let api: Api<ModelRoute> = Api::namespaced(c.client.clone(), &c.namespace);
    let route = api.get(name).await.ok()?;
    let status = serde_json::to_value(route.status?).ok()?;
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}

#[tokio::test]
async fn a_route_applied_edited_and_broken_reaches_the_sidecar_and_a_broken_edit_keeps_the_last_good_one() -> Result<()>
{
    let Some(c) = with_crds("operator_route_push").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let upstream = Upstream::start(&[Wire::OpenAi]).await?;
    c.kubectl_ns(&["apply", "-f", "-"], Some(&secret("upstream", "sk-one")))
        .await?
        .ok()?;
    c.kubectl_ns(&["apply", "-f", "-"], Some(&route(&upstream, "first", "")))
        .await?
        .ok()?;
    let certs = Certs::generate(dir.path())?;
    let operator = OperatorProcess::start(&c, &certs, "op-1").await?;
    let pod = TestPod::create(&c, dir.path(), "bot", &[("app", "bot")]).await?;
    let sidecar = ClusterSidecar::spawn(&pod, &operator.control_url, &certs.ca()).await?;

    served_by(&sidecar, "first").await?;
    let ready = eventually("Ready=True on the route", WITHIN, || condition(&c, "chat", "Ready")).await?;
    ensure!(ready["status"] == "True" && ready["reason"] == "Pushed", "{ready}");
    // The sidecar acked the version: the route counts it in sync.
    let api: Api<ModelRoute> = Api::namespaced(c.client.clone(), &c.namespace);
    eventually("status.sidecars = 1/1", WITHIN, || async {
        let s = api.get("chat").await.ok()?.status?.sidecars?;
        (s.desired == 1 && s.in_sync == 1).then_some(())
    })
    .await?;

    // An edit: a new backend name is served.
    c.kubectl_ns(&["apply", "-f", "-"], Some(&route(&upstream, "second", "")))
        .await?
        .ok()?;
    served_by(&sidecar, "second").await?;

    // A broken edit the schema lets through: refused by the operator with the field named,
    // while the sidecar keeps serving the last accepted generation.
    let broken = route(&upstream, "third", "    weight: 0\n  strategy: weighted\n");
    c.kubectl_ns(&["apply", "-f", "-"], Some(&broken)).await?.ok()?;
    let accepted = eventually("Accepted=False", WITHIN, || async {
        condition(&c, "chat", "Accepted")
            .await
            .filter(|c| c["status"] == "False")
    })
    .await?;
    let message = accepted["message"].as_str().unwrap_or_default();
    ensure!(
        accepted["reason"] == "Invalid" && message.contains("spec.backends") && message.contains("weight"),
        "{accepted}"
    );
    let generation = api.get("chat").await?.metadata.generation;
    ensure!(
        accepted["observedGeneration"] == json!(generation),
        "{accepted} vs {generation:?}"
    );
    let ready = condition(&c, "chat", "Ready").await.context("Ready")?;
    ensure!(
        ready["status"] == "False" && ready["reason"] == "NotAccepted",
        "{ready}"
    );
    for _ in 0..3 {
        let answer = chat(&sidecar).await;
        ensure!(answer == Some((200, "second".to_owned())), "{answer:?}");
    }
    // An Event says why.
    let events = c
        .kubectl_ns(
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=chat",
                "-o",
                "json",
            ],
            None,
        )
        .await?
        .ok()?;
    ensure!(events.contains("\"Invalid\"") && events.contains("weight"), "{events}");

    // A restarted operator finds the route invalid and serves its last accepted generation
    // (recorded with the usage ledger): the sidecar keeps the route.
    let mut operator = operator;
    operator.process.kill()?;
    let addr = operator.control_addr().to_owned();
    let mut operator = OperatorProcess::spawn(&c, &certs, "op-2", &["--control-listen", &addr]).await?;
    operator.wait_ready(WITHIN).await?;
    eventually("the new operator's snapshot acked", WITHIN, || async {
        let metrics = operator.metrics().await.ok()?;
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_operator_snapshot_push_latency_seconds_count") && !l.ends_with(" 0"))
            .then_some(())
    })
    .await?;
    ensure!(
        operator
            .process
            .output()
            .contains("serving the last accepted generation"),
        "{}",
        operator.process.output()
    );
    let answer = chat(&sidecar).await;
    ensure!(
        answer == Some((200, "second".to_owned())),
        "{answer:?}\n{}\n{}",
        operator.process.output(),
        sidecar.process.output()
    );
    Ok(())
}

#[tokio::test]
async fn a_rotated_secret_is_the_key_of_the_next_request() -> Result<()> {
    let Some(c) = with_crds("operator_secret_rotation").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let upstream = Upstream::start(&[Wire::OpenAi]).await?;
    c.kubectl_ns(&["apply", "-f", "-"], Some(&secret("upstream", "sk-one")))
        .await?
        .ok()?;
    // A header valued from the same Secret travels in the snapshot beside the key.
    let header = "    headers: [{name: x-gateway-key, valueFrom: {name: upstream, key: apiKey}}]\n";
    c.kubectl_ns(&["apply", "-f", "-"], Some(&route(&upstream, "main", header)))
        .await?
        .ok()?;
    let certs = Certs::generate(dir.path())?;
    let operator = OperatorProcess::start(&c, &certs, "op-1").await?;
    let pod = TestPod::create(&c, dir.path(), "bot", &[]).await?;
    let sidecar = ClusterSidecar::spawn(&pod, &operator.control_url, &certs.ca()).await?;
    served_by(&sidecar, "main").await?;
    let last = |name: &'static str| {
        let requests = upstream.requests();
        async move { requests.last().and_then(|r| r.header(name).map(str::to_owned)) }
    };
    let last_key = || last("authorization");
    ensure!(last_key().await.as_deref() == Some("Bearer sk-one"));
    ensure!(last("x-gateway-key").await.as_deref() == Some("sk-one"));

    c.kubectl_ns(&["apply", "-f", "-"], Some(&secret("upstream", "sk-two")))
        .await?
        .ok()?;
    eventually("the rotated key upstream", WITHIN, || async {
        chat(&sidecar).await.filter(|(s, _)| *s == 200)?;
        last_key().await.filter(|k| k == "Bearer sk-two")
    })
    .await?;
    ensure!(last("x-gateway-key").await.as_deref() == Some("sk-two"));

    // A deleted Secret: the route says which and the sidecar keeps the key it has.
    c.kubectl_ns(&["delete", "secret", "upstream"], None).await?.ok()?;
    let refs = eventually("ResolvedRefs=False", WITHIN, || async {
        condition(&c, "chat", "ResolvedRefs")
            .await
            .filter(|c| c["status"] == "False")
    })
    .await?;
    ensure!(
        refs["reason"] == "SecretNotFound"
            && refs["message"]
                .as_str()
                .unwrap_or_default()
                .contains("spec.backends[0].credentialsRef"),
        "{refs}"
    );
    ensure!(chat(&sidecar).await == Some((200, "main".to_owned())));
    ensure!(last_key().await.as_deref() == Some("Bearer sk-two"));
    Ok(())
}

#[tokio::test]
async fn without_its_operator_a_restarted_sidecar_serves_its_saved_config() -> Result<()> {
    let Some(c) = with_crds("operator_fail_static").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let upstream = Upstream::start(&[Wire::OpenAi]).await?;
    c.kubectl_ns(&["apply", "-f", "-"], Some(&secret("upstream", "sk-one")))
        .await?
        .ok()?;
    c.kubectl_ns(&["apply", "-f", "-"], Some(&route(&upstream, "main", "")))
        .await?
        .ok()?;
    let certs = Certs::generate(dir.path())?;
    let mut operator = OperatorProcess::start(&c, &certs, "op-1").await?;
    let pod = TestPod::create(&c, dir.path(), "bot", &[]).await?;
    let mut sidecar = ClusterSidecar::spawn(&pod, &operator.control_url, &certs.ca()).await?;
    served_by(&sidecar, "main").await?;

    operator.process.kill()?;
    // Still serving with the operator gone…
    ensure!(chat(&sidecar).await == Some((200, "main".to_owned())));
    // …and after a restart of the sidecar itself (same state directory, the pod's emptyDir).
    // The sidecar saves a config just after it starts serving it.
    let saved = eventually("the snapshot saved", WITHIN, || async {
        std::fs::metadata(pod.state_dir.join("snapshot.json")).ok()
    })
    .await?;
    sidecar.process.kill()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        ensure!(
            saved.permissions().mode() & 0o777 == 0o600,
            "the saved snapshot holds keys: mode 0600"
        );
    }
    let sidecar = ClusterSidecar::spawn(&pod, &operator.control_url, &certs.ca()).await?;
    served_by(&sidecar, "main").await?;
    ensure!(
        sidecar.process.output().contains("serving the last saved config"),
        "{}",
        sidecar.process.output()
    );
    Ok(())
}
