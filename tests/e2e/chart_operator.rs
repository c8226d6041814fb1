//! The install path end to end on a real kube-apiserver: `helm install` of the chart, then the
//! real operator binary run with the chart's own flags under the chart's ServiceAccount token
//! (so its RBAC is what is exercised), the chart's webhook pointed at it by URL (no Service
//! routing here: only host and port are replaced, the path is the chart's own). A pod of a
//! labelled namespace is stored with the sidecar and the namespace gets the CA ConfigMap the
//! sidecar mounts; an opted-out pod, a pod of an unlabelled namespace and an already-injected
//! pod are stored as sent; a pod opted in by its label from an unlabelled namespace is injected
//! and its namespace has the CA before the pod is stored; a route in the labelled namespace is
//! reconciled to Accepted, and once the operator injects another sidecar image its status
//! counts the two pods running the old one as outdated. With the operator gone, the chart's
//! `failurePolicy: Fail` refuses pods of the labelled namespace, and opted-out pods still start.

use std::{net::SocketAddr, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;
use sluice_tests::addresses::listener;
use sluice_tests::cluster::{TestCluster, cluster};
use sluice_tests::operator::{Process, eventually, operator_binary, sidecar_count, wait_until_injected};

/// Bounds for things to happen, never targets.
const WITHIN: Duration = Duration::from_secs(90);
const RELEASE: &str = "sl";

async fn json(c: &TestCluster, args: &[&str]) -> Result<Value> {
    let out = c.kubectl(args, None).await?;
    ensure!(out.success, "kubectl {args:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout).context("kubectl JSON")
}

async fn kubectl_ok(c: &TestCluster, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let out = c.kubectl(args, stdin).await?;
    ensure!(out.success, "kubectl {args:?}: {}", out.stderr);
    Ok(out.stdout)
}

/// A kubeconfig for the chart's ServiceAccount: the cluster of the admin kubeconfig, a token
/// from the TokenRequest API.
async fn service_account_kubeconfig(c: &TestCluster, account: &str, path: &std::path::Path) -> Result<()> {
    let token = kubectl_ok(
        c,
        &["create", "token", account, "-n", &c.namespace, "--duration", "1h"],
        None,
    )
    .await?;
    let view = |field: &str| format!("jsonpath={{.clusters[0].cluster.{field}}}");
    let server = kubectl_ok(c, &["config", "view", "--raw", "-o", &view("server")], None).await?;
    let ca = kubectl_ok(
        c,
        &["config", "view", "--raw", "-o", &view("certificate-authority-data")],
        None,
    )
    .await?;
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\", certificate-authority-data: {ca}}}}}]\n\
         users: [{{name: sa, user: {{token: {token}}}}}]\ncontexts: [{{name: sa, context: {{cluster: c, user: sa}}}}]\n\
         current-context: sa\n",
        token = token.trim()
    );
    std::fs::write(path, kubeconfig)?;
    Ok(())
}

/// The chart's operator arguments, with listeners moved to loopback port 0 (the operator reports
/// the ports it got in its address file).
fn operator_args(deployment: &Value) -> Result<Vec<String>> {
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .context("no args")?;
    let mut out: Vec<String> = args
        .iter()
        .filter_map(Value::as_str)
        .map(|a| match a.split_once('=') {
            Some((flag @ ("--webhook-listen" | "--control-listen" | "--admin-listen"), _)) => {
                format!("{flag}=127.0.0.1:0")
            }
            _ => a.to_owned(),
        })
        .collect();
    // The API server calls the webhook at 127.0.0.1: the certificate must name it too.
    out.push("--san=127.0.0.1".to_owned());
    Ok(out)
}

/// Points the chart's webhooks at the operator process's webhook listener by URL (no Service
/// routing here), leaving the caBundle the operator keeps current alone.
async fn point_webhooks_at(c: &TestCluster, config: &str, webhook: SocketAddr) -> Result<()> {
    let current = json(c, &["get", "mutatingwebhookconfiguration", config, "-o", "json"]).await?;
    let webhooks = current["webhooks"].as_array().context("no webhooks")?;
    let mut patch = Vec::new();
    for (i, hook) in webhooks.iter().enumerate() {
        // Only the host and port stand in for the Service: the path is the one the chart
        // registers (kept in the URL after a first patch), so a chart calling a path the
        // operator does not serve fails here.
        let registered = &hook["clientConfig"];
        let chart_path = match registered["service"]["path"].as_str() {
            Some(path) => path.to_owned(),
            None => registered["url"]
                .as_str()
                .and_then(|u| u.strip_prefix("https://"))
                .and_then(|u| u.find('/').map(|at| u[at..].to_owned()))
                .context("the chart's webhook names no path")?,
        };
        let url = format!("https://{webhook}{chart_path}");
        let path = format!("/webhooks/{i}/clientConfig");
        // The chart's Service reference goes (a restart finds it gone already); `add` sets the URL.
        if registered.get("service").is_some() {
            patch.push(serde_json::json!({"op": "remove", "path": format!("{path}/service")}));
        }
        patch.push(serde_json::json!({"op": "add", "path": format!("{path}/url"), "value": url}));
    }
    let patch = Value::Array(patch).to_string();
    kubectl_ok(
        c,
        &[
            "patch",
            "mutatingwebhookconfiguration",
            config,
            "--type=json",
            "-p",
            &patch,
        ],
        None,
    )
    .await?;
    Ok(())
}

fn pod(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}{annotations}}}\n\
         spec: {{containers: [{{name: app, image: example/app:1}}]}}\n"
    )
}

#[tokio::test]
async fn helm_install_then_a_label_is_all_it_takes_under_the_charts_own_rbac() -> Result<()> {
    let Some(c) = cluster("chart_operator").await? else {
        return Ok(());
    };
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/sluice");
    let installed = c
        .helm(&["install", RELEASE, chart, "-n", &c.namespace, "--wait=false"], None)
        .await?;
    ensure!(installed.success, "helm install: {}", installed.stderr);
    let account = format!("{RELEASE}-operator");
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("sa.kubeconfig");
    service_account_kubeconfig(&c, &account, &kubeconfig).await?;

    let deployment = json(&c, &["get", "deployment", &account, "-n", &c.namespace, "-o", "json"]).await?;
    let chart_args = operator_args(&deployment)?;
    // Starts the operator with the chart's args (they begin with `run`), optionally injecting
    // another sidecar image than the chart says; once it has bound its listeners, points the
    // chart's webhooks at it and returns it with its admin address.
    let starts = std::cell::Cell::new(0);
    let (c_ref, account_ref, kubeconfig_ref) = (&c, &account, &kubeconfig);
    let start = |image: Option<&str>| {
        starts.set(starts.get() + 1);
        // A new file for each start: the address file is never reused.
        let address_file = dir.path().join(format!("addresses-{}.json", starts.get()));
        let args: Vec<String> = chart_args
            .iter()
            .map(|a| match (image, a.starts_with("--sidecar-image=")) {
                (Some(image), true) => format!("--sidecar-image={image}"),
                _ => a.clone(),
            })
            .collect();
        async move {
            let mut command = Command::new(operator_binary()?);
            command
                .args(args)
                .args(["--identity", "chart-operator"])
                .arg("--address-file")
                .arg(&address_file)
                .env("KUBECONFIG", kubeconfig_ref)
                .env("POD_NAMESPACE", &c_ref.namespace)
                .env("SLUICE_LOG", "info,kube=warn");
            let (process, reported) = Process::spawn_reporting("operator (chart RBAC)", command, &address_file).await?;
            point_webhooks_at(c_ref, account_ref, listener(&reported, "webhook-listen")?).await?;
            anyhow::Ok((process, listener(&reported, "admin-listen")?))
        }
    };
    let wait_ready = |admin: SocketAddr| async move {
        let ready_url = format!("http://{admin}/readyz");
        eventually("the operator is ready", WITHIN, || async {
            let ok = reqwest::get(&ready_url)
                .await
                .ok()
                .is_some_and(|r| r.status().is_success());
            ok.then_some(())
        })
        .await
    };
    // The API server's authorizer reads the roles helm just made through a cache: wait for it
    // to grant them, or a first refusal would be counted against the chart below.
    let subject = format!("system:serviceaccount:{}:{account}", c.namespace);
    for question in [
        ["list", "pods"],
        ["watch", "modelroutes.sluice.dev"],
        ["create", "tokenreviews"],
    ] {
        let args = [
            "auth",
            "can-i",
            "--as",
            subject.as_str(),
            "--all-namespaces",
            question[0],
            question[1],
        ];
        eventually(&format!("RBAC granting {question:?}"), WITHIN, || async {
            let out = c.kubectl(&args, None).await.ok()?;
            (out.stdout.trim() == "yes").then_some(())
        })
        .await?;
    }
    let (mut operator, admin) = start(None).await?;
    if let Err(e) = wait_ready(admin).await {
        let _ = operator.kill();
        bail!("{e}\n{}", operator.output());
    }

    let apps = format!("{}-apps", c.namespace);
    let plain = format!("{}-plain", c.namespace);
    for ns in [&apps, &plain] {
        kubectl_ok(&c, &["create", "namespace", ns], None).await?;
        // No controller-manager runs here to create it.
        kubectl_ok(&c, &["create", "serviceaccount", "default", "-n", ns], None).await?;
    }
    kubectl_ok(&c, &["label", "namespace", &apps, "sluice.dev/inject=enabled"], None).await?;

    let result = async {
        // The webhook's caBundle is the operator's CA: the API server trusts it and injects.
        wait_until_injected(&c, &apps, &pod("app", ""), WITHIN).await?;
        kubectl_ok(&c, &["apply", "-n", &apps, "-f", "-"], Some(&pod("app", ""))).await?;
        let injected = json(&c, &["get", "pod", "app", "-n", &apps, "-o", "json"]).await?;
        ensure!(sidecar_count(&injected) == 1, "not injected once: {injected:#}");

        kubectl_ok(
            &c,
            &["apply", "-n", &apps, "-f", "-"],
            Some(&pod("opted-out", ", annotations: {sluice.dev/inject: \"false\"}")),
        )
        .await?;
        ensure!(
            sidecar_count(&json(&c, &["get", "pod", "opted-out", "-n", &apps, "-o", "json"]).await?) == 0,
            "opted-out pod injected"
        );

        kubectl_ok(&c, &["apply", "-n", &plain, "-f", "-"], Some(&pod("app", ""))).await?;
        ensure!(
            sidecar_count(&json(&c, &["get", "pod", "app", "-n", &plain, "-o", "json"]).await?) == 0,
            "unlabelled namespace injected"
        );

        // The labelled namespace gets the CA its sidecars mount, from the namespace watch.
        let ca_of = |ns: String| {
            let c = &c;
            async move {
                let out = c
                    .kubectl(
                        &["get", "configmap", "sluice-ca", "-n", &ns, "-o", "jsonpath={.data.ca\\.crt}"],
                        None,
                    )
                    .await
                    .ok()?;
                (out.success && out.stdout.contains("BEGIN CERTIFICATE")).then_some(out.stdout)
            }
        };
        let published = eventually("the CA published to the labelled namespace", WITHIN, || ca_of(apps.clone())).await?;
        // A pod opted in by its label from an unlabelled namespace: the webhook puts the CA into
        // its namespace before admitting it, so the pod can mount it.
        ensure!(ca_of(plain.clone()).await.is_none(), "the CA reached an unlabelled namespace unasked");
        let opted_in = "apiVersion: v1\nkind: Pod\nmetadata: {name: opted-in, labels: {sluice.dev/inject: \"true\"}}\n\
                        spec: {containers: [{name: app, image: example/app:1}]}\n";
        wait_until_injected(&c, &plain, opted_in, WITHIN).await?;
        kubectl_ok(&c, &["apply", "-n", &plain, "-f", "-"], Some(opted_in)).await?;
        ensure!(
            sidecar_count(&json(&c, &["get", "pod", "opted-in", "-n", &plain, "-o", "json"]).await?) == 1,
            "opted-in pod not injected"
        );
        ensure!(
            ca_of(plain.clone()).await.as_deref() == Some(published.as_str()),
            "the opted-in pod was admitted before its namespace had the CA"
        );

        // Sending an injected pod again changes nothing: one sidecar, not two.
        let mut again = injected.clone();
        again["metadata"] = serde_json::json!({"name": "again", "labels": injected["metadata"]["labels"],
            "annotations": injected["metadata"]["annotations"]});
        again.as_object_mut().map(|o| o.remove("status"));
        kubectl_ok(&c, &["apply", "-n", &apps, "-f", "-"], Some(&again.to_string())).await?;
        ensure!(
            sidecar_count(&json(&c, &["get", "pod", "again", "-n", &apps, "-o", "json"]).await?) == 1,
            "injected twice"
        );

        // The controllers run under the same RBAC: a route is accepted and its status written.
        let route = "apiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {name: chat}\n\
                     spec: {models: [chat], backends: [{name: sim, provider: simulator, model: sim-1}]}\n";
        kubectl_ok(&c, &["apply", "-n", &apps, "-f", "-"], Some(route)).await?;
        eventually("the route is Accepted", WITHIN, || async {
            let route = json(&c, &["get", "modelroute", "chat", "-n", &apps, "-o", "json"])
                .await
                .ok()?;
            let conditions = route["status"]["conditions"].as_array()?;
            conditions
                .iter()
                .any(|k| k["type"] == "Accepted" && k["status"] == "True")
                .then_some(())
        })
        .await?;
        let denied = operator.output().lines().filter(|l| l.contains("forbidden")).count();
        ensure!(
            denied == 0,
            "the operator was refused something:\n{}",
            operator.output()
        );
        // Drift: the same builder the webhook uses says whether a running sidecar is current.
        let outdated = |want: u64| {
            let (c, apps) = (&c, &apps);
            async move {
                eventually(
                    &format!("{want} outdated sidecars in the route's status"),
                    WITHIN,
                    || async {
                        let route = json(c, &["get", "modelroute", "chat", "-n", apps, "-o", "json"])
                            .await
                            .ok()?;
                        (route["status"]["sidecars"]["outdated"].as_u64() == Some(want)).then_some(())
                    },
                )
                .await
            }
        };
        outdated(0).await?;
        operator.kill()?;
        let admin;
        (operator, admin) = start(Some("sluice/sluice-sidecar:9.9.9")).await?;
        wait_ready(admin).await?;
        // The two injected pods (`app`, `again`) now run an older sidecar than would be injected.
        outdated(2).await?;

        // The operator gone (scaled to 0): with the chart's failurePolicy Fail a pod of the
        // labelled namespace is refused rather than started without its sidecar, and a pod
        // that opted out by label never reaches the webhook, so it still starts.
        operator.kill()?;
        let refused = c.kubectl(&["apply", "-n", &apps, "-f", "-"], Some(&pod("while-down", ""))).await?;
        ensure!(
            !refused.success && refused.stderr.contains("inject.sluice.dev"),
            "a pod was admitted past a webhook that cannot be reached: {}",
            refused.stderr
        );
        let opted_out = "apiVersion: v1\nkind: Pod\nmetadata: {name: opted-out-while-down, labels: {sluice.dev/inject: \"false\"}}\n\
                         spec: {containers: [{name: app, image: example/app:1}]}\n";
        kubectl_ok(&c, &["apply", "-n", &apps, "-f", "-"], Some(opted_out)).await?;
        Ok(())
    }
    .await;
    let _ = operator.kill();
    let _ = c
        .kubectl(&["delete", "mutatingwebhookconfiguration", &account], None)
        .await;
    result.map_err(|e| anyhow::anyhow!("{e}\n--- operator\n{}", operator.output()))
}
