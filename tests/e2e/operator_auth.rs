//! Who gets what from the control server (DESIGN §6.1): the pod comes from its token, checked
//! with a TokenReview; a pod gets only the routes that select it and only the Secrets those
//! routes name, of its own namespace; a token for another audience is refused.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use futures::StreamExt;
use serde_json::Value;
use sluice_tests::cluster::cluster;
use sluice_tests::operator::{Certs, OperatorProcess, TestPod, create_pod, pod_token};

fn manifests(ns: &str, name: &str, app: &str, key: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {ns}}}
stringData: {{apiKey: {key}}}
---
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: {name}, namespace: {ns}}}
spec:
  models: [{name}]
  podSelector: {{matchLabels: {{app: {app}}}}}
  backends:
  - {{name: up, provider: openai-compatible, baseUrl: "http://127.0.0.1:9/v1", model: m, credentialsRef: {{name: {name}, key: apiKey}}}}
"#
    )
}

fn client(certs: &Certs) -> Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.ca())?)?;
    Ok(reqwest::Client::builder().tls_certs_only([ca]).build()?)
}

/// Opens the config stream with `token` and returns its first events (hello, snapshot).
async fn first_events(http: &reqwest::Client, url: &str, token: &str) -> Result<Vec<Value>> {
    first_events_of(http, &format!("{url}/v1/watch"), token).await
}

/// [`first_events`] of the watch at `watch_url`, query and all.
async fn first_events_of(http: &reqwest::Client, watch_url: &str, token: &str) -> Result<Vec<Value>> {
    let response = http
        .get(watch_url)
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .context("no event within 30s")?
            .context("stream ended")??;
        text.push_str(std::str::from_utf8(&chunk)?);
        while let Some(end) = text.find('\n') {
            let line: String = text.drain(..=end).collect();
            let event: Value = serde_json::from_str(line.trim())?;
            if event["type"] != "heartbeat" {
                events.push(event);
            }
        }
    }
    Ok(events)
}

fn routes_and_keys(snapshot: &Value) -> Vec<(String, String)> {
    snapshot["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let key = r["credentials"]["up"].as_str().unwrap_or_default().to_owned();
            (
                format!(
                    "{}/{}",
                    r["key"]["namespace"].as_str().unwrap_or_default(),
                    r["key"]["name"].as_str().unwrap_or_default()
                ),
                key,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_pod_gets_only_its_routes_and_secrets_and_a_wrong_audience_is_refused() -> Result<()> {
    let Some(c) = cluster("operator_auth").await? else {
        return Ok(());
    };
    c.install_crds().await?;
    // A second namespace with a route for the same labels and its own secret.
    let Some(other) = cluster("operator_auth_other").await? else {
        return Ok(());
    };
    let ns = c.namespace.clone();
    c.kubectl(&["apply", "-f", "-"], Some(&manifests(&ns, "for-a", "a", "sk-a")))
        .await?
        .ok()?;
    c.kubectl(&["apply", "-f", "-"], Some(&manifests(&ns, "for-b", "b", "sk-b")))
        .await?
        .ok()?;
    c.kubectl(
        &["apply", "-f", "-"],
        Some(&manifests(&other.namespace, "elsewhere", "a", "sk-other")),
    )
    .await?
    .ok()?;

    let dir = tempfile::tempdir()?;
    let certs = Certs::generate(dir.path())?;
    // This operator serves every namespace: isolation must come from the token alone.
    let mut operator = OperatorProcess::spawn(&c, &certs, "op-1", &["--watch-namespace", ""]).await?;
    operator.wait_ready(Duration::from_secs(60)).await?;
    let http = client(&certs)?;
    let pod_a = TestPod::create(&c, dir.path(), "pod-a", &[("app", "a")]).await?;
    let pod_b = TestPod::create(&c, dir.path(), "pod-b", &[("app", "b")]).await?;

    let token_a = std::fs::read_to_string(&pod_a.token_file)?;
    let events = first_events(&http, &operator.control_url, &token_a).await?;
    ensure!(
        events[0]["type"] == "hello" && events[0]["pod"]["name"] == "pod-a",
        "{}",
        events[0]
    );
    ensure!(events[0]["pod"]["uid"] == pod_a.uid.as_str(), "{}", events[0]);
    ensure!(
        routes_and_keys(&events[1]) == [(format!("{ns}/for-a"), "sk-a".to_owned())],
        "pod A got {:?}",
        routes_and_keys(&events[1])
    );
    let token_b = std::fs::read_to_string(&pod_b.token_file)?;
    let events = first_events(&http, &operator.control_url, &token_b).await?;
    ensure!(
        routes_and_keys(&events[1]) == [(format!("{ns}/for-b"), "sk-b".to_owned())],
        "pod B got {:?}",
        routes_and_keys(&events[1])
    );
    // Pod A naming pod B in its request still gets pod A's config: who is served comes from the
    // token alone.
    let asks_for_b = format!(
        "{}/v1/watch?pod=pod-b&podUid={}&namespace={ns}",
        operator.control_url, pod_b.uid
    );
    let events = first_events_of(&http, &asks_for_b, &token_a).await?;
    ensure!(events[0]["pod"]["name"] == "pod-a", "{}", events[0]);
    ensure!(
        routes_and_keys(&events[1]) == [(format!("{ns}/for-a"), "sk-a".to_owned())],
        "pod A asking for pod B got {:?}",
        routes_and_keys(&events[1])
    );
    // The pod in the other namespace gets its namespace's route only.
    let uid = create_pod(&other.client, &other.namespace, "pod-c", &[("app", "a")]).await?;
    let token_c = pod_token(&other.client, &other.namespace, "pod-c", &uid, "sluice").await?;
    let events = first_events(&http, &operator.control_url, &token_c).await?;
    ensure!(
        routes_and_keys(&events[1]) == [(format!("{}/elsewhere", other.namespace), "sk-other".to_owned())],
        "pod C got {:?}",
        routes_and_keys(&events[1])
    );

    // A token for pod A but another audience, a garbage token, no token: refused.
    let wrong = pod_token(&c.client, &ns, "pod-a", &pod_a.uid, "api").await?;
    for (token, expected) in [(Some(wrong.as_str()), 401), (Some("not-a-token"), 401), (None, 401)] {
        let mut request = http.get(format!("{}/v1/watch", operator.control_url));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let status = request.send().await?.status().as_u16();
        ensure!(status == expected, "token {token:?}: {status}");
    }
    // A usage report may not speak for another pod.
    let forged = serde_json::json!({"podUid": pod_b.uid, "sequence": 1, "deltas": []});
    let status = http
        .post(format!("{}/v1/usage", operator.control_url))
        .bearer_auth(&token_a)
        .json(&forged)
        .send()
        .await?
        .status()
        .as_u16();
    ensure!(status == 403, "a report for pod B with pod A's token: {status}");
    // A token outlives nothing: once pod B is gone, its token opens no watch.
    c.kubectl_ns(&["delete", "pod", "pod-b", "--wait=false"], None)
        .await?
        .ok()?;
    let status = http
        .get(format!("{}/v1/watch", operator.control_url))
        .bearer_auth(&token_b)
        .send()
        .await?
        .status()
        .as_u16();
    // 401 when the API server's TokenReview already refuses it, 403 when the operator's own read
    // of the pod finds none; never 200, however far behind the caches are.
    ensure!(
        status == 401 || status == 403,
        "a watch with the token of a deleted pod: {status}"
    );
    operator.process.kill()?;
    drop(other);
    Ok(())
}
