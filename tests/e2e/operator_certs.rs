//! Operator-managed certificates against a real kube-apiserver: the operator creates its CA and
//! serving certificate in a Secret, fills the webhook configuration's empty `caBundle` (the API
//! server then trusts the webhook), publishes the CA to labelled namespaces, and rotates a short-lived certificate while pods keep being
//! admitted through the webhook: no call fails during the swap.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sluice_tests::cluster::{TestCluster, cluster};
use sluice_tests::operator::{Certs, OperatorProcess, eventually, sidecar_count, wait_until_injected};

/// Bounds for things to happen, never targets.
const WITHIN: Duration = Duration::from_secs(90);
const SECRET: &str = "sluice-operator-tls";

fn webhook_config(name: &str, url: &str, namespace: &str) -> String {
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
  clientConfig: {{url: "{url}"}}
  rules:
  - {{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}}
  namespaceSelector:
    matchExpressions:
    - {{key: sluice.dev/inject, operator: In, values: [enabled]}}
    - {{key: kubernetes.io/metadata.name, operator: In, values: [{namespace}]}}
"#
    )
}

async fn json(c: &TestCluster, args: &[&str]) -> Result<Value> {
    let out = c.kubectl(args, None).await?;
    ensure!(out.success, "kubectl {args:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout).context("kubectl JSON")
}

async fn serving_cert(c: &TestCluster) -> Result<String> {
    let secret = json(c, &["get", "secret", SECRET, "-n", &c.namespace, "-o", "json"]).await?;
    secret["data"]["tls.crt"]
        .as_str()
        .map(str::to_owned)
        .context("no tls.crt in the Secret")
}

fn pod_manifest(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: app, image: example/app:1}}]}}\n"
    )
}

/// Creates a pod through the webhook and checks it came back with the sidecar.
async fn admit_pod(c: &TestCluster, name: &str) -> Result<()> {
    let created = c.kubectl_ns(&["apply", "-f", "-"], Some(&pod_manifest(name))).await?;
    ensure!(created.success, "creating pod {name}: {}", created.stderr);
    let stored = json(c, &["get", "pod", name, "-n", &c.namespace, "-o", "json"]).await?;
    ensure!(
        sidecar_count(&stored) == 1,
        "pod {name} was not stored with one sidecar"
    );
    Ok(())
}

#[tokio::test]
async fn the_operator_publishes_its_ca_and_rotates_its_certificate_without_failing_a_call() -> Result<()> {
    let Some(c) = cluster("certs").await? else {
        return Ok(());
    };
    c.install_crds().await?;
    let dir = tempfile::tempdir()?;
    let certs = Certs::generate(dir.path())?;
    let config_name = format!("sluice-certs-{}", c.namespace);
    // A certificate that lives 20 s and is renewed 15 s before it expires: a rotation every few
    // seconds.
    let args = [
        "--webhook-listen",
        "127.0.0.1:0",
        "--tls-secret-name",
        SECRET,
        "--webhook-config-name",
        &config_name,
        "--cert-lifetime",
        "20s",
        "--cert-renew-before",
        "15s",
    ];
    // Started before its webhook is registered, at the address it reports: the operator fills
    // the caBundle of a configuration that appears later (it looks on every round).
    let mut operator = OperatorProcess::spawn(&c, &certs, "certs-op", &args).await?;
    let webhook = operator
        .webhook_addr
        .context("the operator reported no webhook address")?;
    let registered = c
        .kubectl(
            &["apply", "-f", "-"],
            Some(&webhook_config(
                &config_name,
                &format!("https://{webhook}/mutate"),
                &c.namespace,
            )),
        )
        .await?;
    ensure!(registered.success, "registering the webhook: {}", registered.stderr);
    let labelled = c
        .kubectl(&["label", "namespace", &c.namespace, "sluice.dev/inject=enabled"], None)
        .await?;
    ensure!(labelled.success, "labelling: {}", labelled.stderr);

    let result = async {
        operator.wait_ready(WITHIN).await?;

        // The operator fills caBundle and publishes the CA as it starts, retrying on its own.
        eventually("the operator filling caBundle", WITHIN, || async {
            let webhooks = json(&c, &["get", "mutatingwebhookconfiguration", &config_name, "-o", "json"])
                .await
                .ok()?;
            let bundle = webhooks["webhooks"][0]["clientConfig"]["caBundle"].as_str()?;
            (!bundle.is_empty()).then_some(())
        })
        .await?;
        let first = serving_cert(&c).await?;
        // The CA is published where injected sidecars mount it from.
        let ca = eventually("the CA ConfigMap", WITHIN, || async {
            json(&c, &["get", "configmap", "sluice-ca", "-n", &c.namespace, "-o", "json"])
                .await
                .ok()
        })
        .await?;
        let secret = json(&c, &["get", "secret", SECRET, "-n", &c.namespace, "-o", "json"]).await?;
        let secret_ca = secret["data"]["ca.crt"].as_str().context("no ca.crt in the Secret")?;
        ensure!(
            ca["data"]["ca.crt"].as_str().map(|pem| STANDARD.encode(pem)).as_deref() == Some(secret_ca),
            "the CA ConfigMap does not hold the Secret's CA: {ca:#}"
        );

        // Admit pods one after another until the certificate has been rotated and served: every
        // call must succeed, before, during and after the swap (once the API server has taken
        // the filled caBundle in).
        wait_until_injected(&c, &c.namespace, &pod_manifest("probe"), WITHIN).await?;
        let deadline = Instant::now() + WITHIN;
        let mut admitted = 0;
        loop {
            admit_pod(&c, &format!("app-{admitted}")).await?;
            admitted += 1;
            let rotated = serving_cert(&c).await? != first;
            if rotated
                && operator
                    .process
                    .output()
                    .contains("now serving the rotated certificate")
                && admitted >= 3
            {
                // A few more through the new certificate.
                for _ in 0..3 {
                    admit_pod(&c, &format!("app-{admitted}")).await?;
                    admitted += 1;
                }
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "no rotation within {WITHIN:?} after {admitted} pods:\n{}",
                    operator.process.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }
    .await;
    let _ = c
        .kubectl(&["delete", "mutatingwebhookconfiguration", &config_name], None)
        .await;
    result
}
