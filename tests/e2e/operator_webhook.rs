//! The operator's injection webhook, called by a real kube-apiserver (registered by URL, as
//! there is no Service routing here): a pod created in a labelled namespace is stored with the
//! sidecar, an opted-out pod and a pod of an unlabelled namespace are stored untouched.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sluice_tests::cluster::{TestCluster, cluster};
use sluice_tests::operator::{Certs, OperatorProcess, sidecar_count, wait_until_injected};

/// A bound for the operator to come up, not a target.
const WITHIN: Duration = Duration::from_secs(60);

/// Registers the webhook at `url` for pods of labelled namespaces among `namespaces` only, so
/// that tests sharing the API server are not affected.
fn webhook_config(name: &str, url: &str, ca: &[u8], namespaces: &[&str]) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: {name}}}
webhooks:
- name: inject.sluice.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 10
  clientConfig: {{url: "{url}", caBundle: "{ca}"}}
  rules:
  - {{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}}
  namespaceSelector:
    matchExpressions:
    - {{key: sluice.dev/inject, operator: In, values: [enabled]}}
    - {{key: kubernetes.io/metadata.name, operator: In, values: [{namespaces}]}}
"#,
        ca = STANDARD.encode(ca),
        namespaces = namespaces.join(", ")
    )
}

fn pod(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}{annotations}}}\n\
         spec: {{containers: [{{name: app, image: example/app:1}}]}}\n"
    )
}

async fn stored_pod(c: &TestCluster, namespace: &str, name: &str) -> Result<Value> {
    let out = c
        .kubectl(&["get", "pod", name, "-n", namespace, "-o", "json"], None)
        .await?;
    ensure!(out.success, "kubectl get pod: {}", out.stderr);
    serde_json::from_str(&out.stdout).context("pod JSON")
}

fn has_sidecar(pod: &Value) -> bool {
    sidecar_count(pod) > 0
}

#[tokio::test]
async fn pods_of_labelled_namespaces_are_stored_with_the_sidecar_and_others_untouched() -> Result<()> {
    let Some(c) = cluster("webhook").await? else {
        return Ok(());
    };
    c.install_crds().await?;
    let dir = tempfile::tempdir()?;
    let certs = Certs::generate(dir.path())?;
    let mut operator = OperatorProcess::spawn(&c, &certs, "webhook-op", &["--webhook-listen", "127.0.0.1:0"]).await?;
    let webhook = operator
        .webhook_addr
        .context("the operator reported no webhook address")?;
    operator.wait_ready(WITHIN).await?;

    let plain = format!("{}-plain", c.namespace);
    ensure!(
        c.kubectl(&["create", "namespace", &plain], None).await?.success,
        "creating {plain}"
    );
    // No controller-manager runs here to create it.
    let account = c
        .kubectl(&["create", "serviceaccount", "default", "-n", &plain], None)
        .await?;
    ensure!(
        account.success,
        "creating the default ServiceAccount: {}",
        account.stderr
    );
    let labelled = c
        .kubectl(&["label", "namespace", &c.namespace, "sluice.dev/inject=enabled"], None)
        .await?;
    ensure!(labelled.success, "labelling: {}", labelled.stderr);
    let config_name = format!("sluice-{}", c.namespace);
    let ca = std::fs::read(certs.ca())?;
    let url = format!("https://{webhook}/mutate");
    let registered = c
        .kubectl(
            &["apply", "-f", "-"],
            Some(&webhook_config(&config_name, &url, &ca, &[&c.namespace, &plain])),
        )
        .await?;
    ensure!(registered.success, "registering the webhook: {}", registered.stderr);

    let result = async {
        wait_until_injected(&c, &c.namespace, &pod("app", ""), WITHIN).await?;
        let created = c.kubectl_ns(&["apply", "-f", "-"], Some(&pod("app", ""))).await?;
        ensure!(created.success, "creating the pod: {}", created.stderr);
        let injected = stored_pod(&c, &c.namespace, "app").await?;
        ensure!(has_sidecar(&injected), "no sidecar in {injected:#}");
        let app = &injected["spec"]["containers"][0];
        let env: Vec<&str> = app["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str())
            .collect();
        ensure!(
            env.contains(&"OPENAI_BASE_URL") && env.contains(&"ANTHROPIC_BASE_URL"),
            "app env: {env:?}"
        );
        ensure!(
            injected["metadata"]["annotations"]["sluice.dev/injected-version"].is_string(),
            "{injected:#}"
        );

        let opted_out = pod("opted-out", ", annotations: {sluice.dev/inject: \"false\"}");
        let created = c.kubectl_ns(&["apply", "-f", "-"], Some(&opted_out)).await?;
        ensure!(created.success, "creating the opted-out pod: {}", created.stderr);
        ensure!(
            !has_sidecar(&stored_pod(&c, &c.namespace, "opted-out").await?),
            "an opted-out pod was injected"
        );

        let elsewhere = c
            .kubectl(&["apply", "-n", &plain, "-f", "-"], Some(&pod("app", "")))
            .await?;
        ensure!(elsewhere.success, "creating the pod elsewhere: {}", elsewhere.stderr);
        ensure!(
            !has_sidecar(&stored_pod(&c, &plain, "app").await?),
            "a pod of an unlabelled namespace was injected"
        );
        Ok(())
    }
    .await;
    let _ = c
        .kubectl(&["delete", "mutatingwebhookconfiguration", &config_name], None)
        .await;
    let _ = c.kubectl(&["delete", "namespace", &plain, "--wait=false"], None).await;
    result
}
