//! The Helm chart `charts/sluice` against the real `helm` and a real kube-apiserver (see
//! `tests/cluster/README.md`): it lints strictly, renders for several value sets, every
//! rendered object passes the API server's own validation (`kubectl apply --dry-run=server
//! --validate=strict`), it installs, and its RBAC allows exactly what the chart README's table
//! says, checked verb by verb with `kubectl auth can-i` as the operator's ServiceAccount.
//!
//! Not covered here: the schemas of the lowest supported Kubernetes (only a v1.34 API server
//! is at hand; `helm lint --kube-version` checks deprecations at 1.27), and the webhook
//! injecting real pods, which needs the operator's HTTPS handler.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use sluice_tests::cluster::{TestCluster, cluster, repo_root};

/// The lowest and highest Kubernetes versions the chart supports (`kubeVersion` in Chart.yaml,
/// and the test API server's version).
const LOWEST: &str = "1.27.0";
const HIGHEST: &str = "1.34.0";

/// A named set of `--set` values and the kinds it renders (sorted, with repeats).
struct ValueSet {
    name: &'static str,
    set: &'static [&'static str],
    kinds: &'static [&'static str],
}

const BASE_KINDS: [&str; 9] = [
    "ClusterRole",
    "ClusterRoleBinding",
    "Deployment",
    "MutatingWebhookConfiguration",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "Service",
    "ServiceAccount",
];

const VALUE_SETS: &[ValueSet] = &[
    ValueSet {
        name: "default",
        set: &[],
        kinds: &BASE_KINDS,
    },
    ValueSet {
        name: "plain-container",
        set: &[
            "sidecar.mode=plain",
            "webhook.failurePolicy=Ignore",
            "webhook.podOptIn=false",
        ],
        kinds: &BASE_KINDS,
    },
    ValueSet {
        name: "cert-manager",
        set: &["certificates.certManager.enabled=true"],
        kinds: &[
            "Certificate",
            "Certificate",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Issuer",
            "Issuer",
            "MutatingWebhookConfiguration",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ],
    },
    ValueSet {
        name: "cert-manager-cluster-issuer",
        set: &[
            "certificates.certManager.enabled=true",
            "certificates.certManager.issuerRef.name=corp-ca",
            "certificates.certManager.issuerRef.kind=ClusterIssuer",
        ],
        kinds: &[
            "Certificate",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "MutatingWebhookConfiguration",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ],
    },
    ValueSet {
        name: "monitoring",
        set: &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.podMonitor.enabled=true",
            "metrics.dashboard.enabled=true",
            "metrics.prometheusRule.enabled=true",
            "otel.endpoint=http://otel-collector.observability:4317",
        ],
        kinds: &[
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "MutatingWebhookConfiguration",
            "PodDisruptionBudget",
            "PodMonitor",
            "PrometheusRule",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ],
    },
];

fn chart() -> String {
    repo_root().join("charts/sluice").display().to_string()
}

fn set_args(set: &[&str]) -> Vec<String> {
    set.iter().flat_map(|s| ["--set".to_owned(), (*s).to_owned()]).collect()
}

/// `helm template` of the chart as release `release` in `namespace`.
async fn render(c: &TestCluster, release: &str, namespace: &str, extra: &[String]) -> Result<String> {
    let chart = chart();
    let mut args = vec![
        "template",
        release,
        chart.as_str(),
        "--namespace",
        namespace,
        "--kube-version",
        HIGHEST,
    ];
    args.extend(extra.iter().map(String::as_str));
    c.helm(&args, None)
        .await?
        .ok()
        .with_context(|| format!("helm template {extra:?}"))
}

/// The `kind` of each YAML document, sorted.
fn kinds(rendered: &str) -> Vec<String> {
    let mut kinds: Vec<String> = rendered
        .split("\n---")
        .filter_map(|doc| doc.lines().find_map(|l| l.strip_prefix("kind: ")))
        .map(|k| k.trim().to_owned())
        .collect();
    kinds.sort();
    kinds
}

/// The cert-manager and Prometheus Operator stand-in CRDs, once per test binary.
static STUB_CRDS: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

async fn with_stub_crds(c: &TestCluster) -> Result<()> {
    STUB_CRDS
        .get_or_try_init(|| async {
            c.kubectl(&["apply", "-f", "-"], Some(include_str!("chart/stub_crds.yaml")))
                .await?
                .ok()
                .context("applying the stub CRDs")?;
            c.wait_established(&[
                "crd/certificates.cert-manager.io",
                "crd/issuers.cert-manager.io",
                "crd/servicemonitors.monitoring.coreos.com",
                "crd/podmonitors.monitoring.coreos.com",
                "crd/prometheusrules.monitoring.coreos.com",
            ])
            .await
            .context("waiting for the stub CRDs")?;
            anyhow::Ok(())
        })
        .await?;
    Ok(())
}

#[test]
fn the_charts_crds_are_the_repositorys_crds() -> Result<()> {
    // Helm installs charts/sluice/crds/; `kubectl apply -f crds/` installs crds/. They must be
    // the same bytes: copy crds/*.yaml into charts/sluice/crds/ after regenerating.
    let root = repo_root();
    let list = |dir: &str| -> Result<BTreeMap<String, Vec<u8>>> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(root.join(dir)).with_context(|| format!("reading {dir}"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let name = path.file_name().context("file name")?.to_string_lossy().into_owned();
                files.insert(name, std::fs::read(&path)?);
            }
        }
        Ok(files)
    };
    let repo = list("crds")?;
    let chart = list("charts/sluice/crds")?;
    ensure!(
        repo.keys().eq(chart.keys()),
        "crds/ has {:?}, charts/sluice/crds/ has {:?}",
        repo.keys(),
        chart.keys()
    );
    for (name, bytes) in &repo {
        ensure!(
            chart.get(name) == Some(bytes),
            "charts/sluice/crds/{name} differs from crds/{name}: run `cp crds/*.yaml charts/sluice/crds/`"
        );
    }
    Ok(())
}

#[test]
fn the_grafana_dashboard_is_json_over_the_sidecar_metrics() -> Result<()> {
    let text = std::fs::read_to_string(repo_root().join("charts/sluice/dashboards/sluice.json"))?;
    let dashboard: serde_json::Value = serde_json::from_str(&text).context("dashboard JSON")?;
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .context("panels")?
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    for metric in [
        "sluice_requests_total",
        "sluice_tokens_total",
        "sluice_spend_microdollars_total",
        "gen_ai_client_operation_duration_seconds_bucket",
        "sluice_budget_remaining_microdollars",
    ] {
        ensure!(exprs.iter().any(|e| e.contains(metric)), "no panel over {metric}");
    }
    Ok(())
}

#[tokio::test]
async fn helm_lint_strict_passes_for_every_value_set_at_the_lowest_and_highest_version() -> Result<()> {
    let Some(c) = cluster("chart_lint").await? else {
        return Ok(());
    };
    let chart = chart();
    for values in VALUE_SETS {
        for version in [LOWEST, HIGHEST] {
            let mut args = vec!["lint".to_owned(), "--strict".to_owned(), chart.clone()];
            args.extend(["--kube-version".to_owned(), version.to_owned()]);
            args.extend(set_args(values.set));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = c.helm(&args, None).await?;
            ensure!(
                out.success && out.stdout.contains("0 chart(s) failed"),
                "helm lint --strict, {} at {version}:\n{}\n{}",
                values.name,
                out.stdout,
                out.stderr
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_rendered_manifest_passes_the_api_servers_strict_validation() -> Result<()> {
    let Some(c) = cluster("chart_dry_run").await? else {
        return Ok(());
    };
    with_stub_crds(&c).await?;
    for values in VALUE_SETS {
        let rendered = render(&c, "dryrun", &c.namespace, &set_args(values.set)).await?;
        let kinds = kinds(&rendered);
        ensure!(kinds == values.kinds, "{}: rendered {kinds:?}", values.name);
        // The API server's own schemas and admission, unknown or duplicate fields refused.
        let out = c
            .kubectl(
                &["apply", "--dry-run=server", "--validate=strict", "-f", "-"],
                Some(&rendered),
            )
            .await?;
        ensure!(
            out.success,
            "{}: the API server refused the chart:\n{}",
            values.name,
            out.stderr
        );
        let accepted = out.stdout.lines().filter(|l| l.ends_with("(server dry run)")).count();
        ensure!(
            accepted == kinds.len(),
            "{}: {accepted} of {} objects accepted:\n{}",
            values.name,
            kinds.len(),
            out.stdout
        );
    }
    Ok(())
}

#[tokio::test]
async fn images_and_pull_policies_set_on_the_command_line_reach_the_operator_and_the_injected_sidecar() -> Result<()> {
    let Some(c) = cluster("chart_images").await? else {
        return Ok(());
    };
    let set = [
        "image.repository=sluice-operator",
        "image.tag=dev",
        "image.pullPolicy=Never",
        "sidecar.image.repository=sluice-sidecar",
        "sidecar.image.tag=dev",
        "sidecar.image.pullPolicy=Never",
    ];
    let out = render(&c, "sluice", "sluice-system", &set_args(&set)).await?;
    for line in [
        "image: \"sluice-operator:dev\"\n",
        "imagePullPolicy: Never\n",
        "- --sidecar-image=sluice-sidecar:dev\n",
        "- --sidecar-image-pull-policy=Never\n",
    ] {
        ensure!(out.contains(line), "rendered without {line:?}:\n{out}");
    }
    Ok(())
}

#[tokio::test]
async fn sidecar_mode_auto_is_native_from_1_29_and_plain_before() -> Result<()> {
    let Some(c) = cluster("chart_sidecar_mode").await? else {
        return Ok(());
    };
    let chart = chart();
    for (version, mode) in [("1.28.9", "plain"), ("1.29.0", "native"), (HIGHEST, "native")] {
        let out = c
            .helm(
                &[
                    "template",
                    "sluice",
                    &chart,
                    "--namespace",
                    "sluice-system",
                    "--kube-version",
                    version,
                ],
                None,
            )
            .await?
            .ok()?;
        ensure!(
            out.contains(&format!("- --sidecar-mode={mode}\n")),
            "Kubernetes {version}: expected --sidecar-mode={mode}"
        );
    }
    let old = c
        .helm(
            &[
                "template",
                "sluice",
                &chart,
                "--namespace",
                "sluice-system",
                "--kube-version",
                "1.26.0",
            ],
            None,
        )
        .await?;
    ensure!(
        !old.success && old.stderr.contains("incompatible with Kubernetes v1.26.0"),
        "Kubernetes 1.26 should be refused: {}",
        old.stderr
    );
    Ok(())
}

#[tokio::test]
async fn the_values_schema_refuses_typos_and_bad_values() -> Result<()> {
    let Some(c) = cluster("chart_schema").await? else {
        return Ok(());
    };
    let chart = chart();
    for (set, message) in [
        ("sidecar.mod=plain", "additional properties 'mod' not allowed"),
        (
            "sidecar.mode=sometimes",
            "value must be one of 'auto', 'native', 'plain'",
        ),
        ("webhook.failurePolicy=Maybe", "value must be one of 'Fail', 'Ignore'"),
        ("webhook.timeoutSeconds=60", "maximum: got 60, want 30"),
        ("sidecar.resources.requests.memory=64m", "does not match pattern"),
        ("sidecar.port=80", "minimum: got 80, want 1,024"),
        (
            "otel.protocol=http/json",
            "value must be one of 'grpc', 'http/protobuf'",
        ),
        ("metrics.prometheusRule.budgetThreshold=2", "maximum: got 2, want 1"),
        ("metrics.prometheusRule.unackedPushSeconds=0", "minimum: got 0, want 1"),
    ] {
        let out = c
            .helm(
                &["template", "sluice", &chart, "--kube-version", HIGHEST, "--set", set],
                None,
            )
            .await?;
        ensure!(
            !out.success && out.stderr.contains(message),
            "--set {set}: expected {message:?}, got:\n{}",
            out.stderr
        );
    }
    Ok(())
}

/// One `kubectl auth can-i` question: the arguments after `can-i`, and the expected answer.
type Question = (Vec<String>, bool);

/// Every permission the chart README's RBAC table lists (yes), and a set of dangerous or
/// merely unneeded ones (no). `app` is some namespace of the operator's users, `own` the
/// release namespace. Keep in step with charts/sluice/README.md.
fn rbac_questions(release: &str, own: &str, cert_manager: bool) -> Vec<Question> {
    let app = "some-app";
    let q = |allowed: bool, args: &[&str]| -> Question { (args.iter().map(|s| (*s).to_owned()).collect(), allowed) };
    let name = |resource: &str, suffix: &str| format!("{resource}/{release}-operator{suffix}");
    let mut questions = Vec::new();
    for resource in ["modelroutes.sluice.dev", "budgets.sluice.dev"] {
        for verb in ["get", "list", "watch"] {
            questions.push(q(true, &[verb, resource, "-n", app]));
        }
        questions.push(q(true, &["list", resource, "--all-namespaces"]));
        questions.push(q(true, &["patch", resource, "--subresource=status", "-n", app]));
        for verb in ["create", "update", "patch", "delete"] {
            questions.push(q(false, &[verb, resource, "-n", app]));
        }
        questions.push(q(false, &["update", resource, "--subresource=status", "-n", app]));
    }
    for resource in ["secrets", "pods"] {
        for verb in ["get", "list", "watch"] {
            questions.push(q(true, &[verb, resource, "-n", app]));
        }
        questions.push(q(true, &["watch", resource, "--all-namespaces"]));
        for verb in ["create", "update", "patch", "delete"] {
            questions.push(q(false, &[verb, resource, "-n", app]));
        }
    }
    questions.push(q(false, &["create", "pods", "--subresource=exec", "-n", app]));
    for verb in ["get", "list", "watch"] {
        questions.push(q(true, &[verb, "namespaces"]));
    }
    questions.push(q(false, &["patch", "namespaces"]));
    questions.push(q(true, &["create", "configmaps", "-n", app]));
    for verb in ["get", "list", "watch", "update", "patch"] {
        questions.push(q(true, &[verb, "configmaps/sluice-ca", "-n", app]));
    }
    questions.push(q(false, &["delete", "configmaps/sluice-ca", "-n", app]));
    // The usage ledgers are in the release namespace; a tenant's `sluice-usage` (where earlier
    // versions kept it) is nothing of the operator's.
    for verb in ["get", "update", "patch", "delete"] {
        questions.push(q(false, &[verb, "configmaps/sluice-usage", "-n", app]));
    }
    questions.push(q(false, &["list", "configmaps", "-n", app]));
    questions.push(q(false, &["update", "configmaps/app-config", "-n", app]));
    for verb in ["get", "create", "update"] {
        questions.push(q(true, &[verb, "configmaps/sluice-usage-some-app", "-n", own]));
    }
    questions.push(q(true, &["create", "configmaps", "-n", own]));
    questions.push(q(false, &["delete", "configmaps/sluice-usage-some-app", "-n", own]));
    questions.push(q(false, &["list", "configmaps", "-n", own]));
    questions.push(q(true, &["create", "tokenreviews.authentication.k8s.io"]));
    for verb in ["create", "patch"] {
        questions.push(q(true, &[verb, "events.events.k8s.io", "-n", app]));
    }
    questions.push(q(false, &["delete", "events.events.k8s.io", "-n", app]));
    let webhook = name("mutatingwebhookconfigurations.admissionregistration.k8s.io", "");
    for verb in ["get", "list", "watch", "patch", "update"] {
        questions.push(q(!cert_manager, &[verb, &webhook]));
    }
    questions.push(q(false, &["delete", &webhook]));
    questions.push(q(
        false,
        &["create", "mutatingwebhookconfigurations.admissionregistration.k8s.io"],
    ));
    questions.push(q(
        false,
        &[
            "patch",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io/other",
        ],
    ));
    questions.push(q(
        false,
        &["patch", "validatingwebhookconfigurations.admissionregistration.k8s.io"],
    ));
    let lease = name("leases.coordination.k8s.io", "");
    questions.push(q(true, &["create", "leases.coordination.k8s.io", "-n", own]));
    for verb in ["get", "update", "patch"] {
        questions.push(q(true, &[verb, &lease, "-n", own]));
    }
    questions.push(q(false, &["delete", &lease, "-n", own]));
    questions.push(q(false, &["update", "leases.coordination.k8s.io/other", "-n", own]));
    questions.push(q(false, &["create", "leases.coordination.k8s.io", "-n", app]));
    let tls = name("secrets", "-tls");
    questions.push(q(!cert_manager, &["create", "secrets", "-n", own]));
    for verb in ["update", "patch"] {
        questions.push(q(!cert_manager, &[verb, &tls, "-n", own]));
    }
    questions.push(q(false, &["delete", &tls, "-n", own]));
    questions.push(q(false, &["update", "secrets/other", "-n", own]));
    // Ways out of least privilege.
    for args in [
        &["create", "clusterrolebindings"][..],
        &["escalate", "clusterroles"],
        &["bind", "clusterroles"],
        &["impersonate", "serviceaccounts"],
        &["create", "serviceaccounts/token", "-n", own],
        &["get", "nodes"],
        &["create", "events", "-n", app],
        &["*", "*"],
    ] {
        questions.push(q(false, args));
    }
    questions
}

/// Asks every question as the operator's ServiceAccount; returns the ones answered wrongly.
/// The answers that differ from the table once RBAC has settled: the API server's authorizer
/// reads roles and bindings through a cache, so ones helm created a moment ago may not count yet.
/// Asks again for a while before reporting what is still wrong.
async fn wrong_answers(c: &TestCluster, service_account: &str, questions: &[Question]) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let wrong = answers_against_table(c, service_account, questions).await?;
        if wrong.is_empty() || Instant::now() > deadline {
            return Ok(wrong);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn answers_against_table(c: &TestCluster, service_account: &str, questions: &[Question]) -> Result<Vec<String>> {
    let mut wrong = Vec::new();
    for (args, allowed) in questions {
        let mut full = vec!["auth", "can-i", "--as", service_account];
        full.extend(args.iter().map(String::as_str));
        let out = c.kubectl(&full, None).await?;
        let answer = match out.stdout.trim() {
            "yes" => true,
            "no" => false,
            other => bail!("kubectl auth can-i {args:?}: {other:?}\n{}", out.stderr),
        };
        if answer != *allowed {
            wrong.push(format!("can-i {} → {answer}, want {allowed}", args.join(" ")));
        }
    }
    Ok(wrong)
}

/// `helm install`s the chart as `release` into the test namespace and checks what it made.
async fn install(c: &TestCluster, release: &str, set: &[&str]) -> Result<()> {
    let chart = chart();
    let mut args = vec!["install", release, chart.as_str(), "--namespace", c.namespace.as_str()];
    let set = set_args(set);
    args.extend(set.iter().map(String::as_str));
    let out = c.helm(&args, None).await?.ok().context("helm install")?;
    ensure!(
        out.contains("kubectl label namespace <your-namespace> sluice.dev/inject=enabled"),
        "the NOTES do not tell the next step:\n{out}"
    );
    let name = format!("{release}-operator");
    for object in [
        format!("clusterrole/{name}"),
        format!("clusterrolebinding/{name}"),
        format!("mutatingwebhookconfiguration/{name}"),
    ] {
        c.kubectl(&["get", &object], None)
            .await?
            .ok()
            .with_context(|| object.clone())?;
    }
    for object in [
        format!("serviceaccount/{name}"),
        format!("role/{name}"),
        format!("rolebinding/{name}"),
        format!("deployment/{name}"),
        format!("service/{name}"),
        format!("poddisruptionbudget/{name}"),
    ] {
        c.kubectl_ns(&["get", &object], None)
            .await?
            .ok()
            .with_context(|| object.clone())?;
    }
    Ok(())
}

#[tokio::test]
async fn helm_install_creates_rbac_that_allows_exactly_the_readme_table() -> Result<()> {
    let Some(c) = cluster("chart_install").await? else {
        return Ok(());
    };
    let release = "sluice";
    install(&c, release, &[]).await?;
    let sa = format!("system:serviceaccount:{}:{release}-operator", c.namespace);
    let wrong = wrong_answers(&c, &sa, &rbac_questions(release, &c.namespace, false)).await?;
    ensure!(wrong.is_empty(), "RBAC differs from the table:\n{}", wrong.join("\n"));

    // The operator writes the webhook's caBundle; an upgrade must leave it in place.
    let webhook = format!("mutatingwebhookconfiguration/{release}-operator");
    let bundle = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";
    let patch = format!(
        r#"[{{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "{bundle}"}},
            {{"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "{bundle}"}}]"#
    );
    c.kubectl(&["patch", &webhook, "--type=json", "-p", &patch], None)
        .await?
        .ok()?;
    let chart = chart();
    c.helm(
        &[
            "upgrade",
            release,
            &chart,
            "--namespace",
            &c.namespace,
            "--set",
            "webhook.timeoutSeconds=7",
        ],
        None,
    )
    .await?
    .ok()
    .context("helm upgrade")?;
    let after = c
        .kubectl(
            &[
                "get",
                &webhook,
                "-o",
                "jsonpath={.webhooks[*].timeoutSeconds} {.webhooks[*].clientConfig.caBundle}",
            ],
            None,
        )
        .await?
        .ok()?;
    ensure!(after == format!("7 7 {bundle} {bundle}"), "after helm upgrade: {after}");

    // Uninstalling removes the operator and its RBAC but keeps the CRDs (and so every route
    // and budget): Helm never deletes what crds/ installed.
    c.helm(&["uninstall", release, "--namespace", &c.namespace], None)
        .await?
        .ok()
        .context("helm uninstall")?;
    let gone = c
        .kubectl(&["get", &format!("clusterrole/{release}-operator")], None)
        .await?;
    ensure!(!gone.success, "the ClusterRole outlived helm uninstall");
    // Nothing is left that could refuse a pod: the webhook configuration (whose caBundle the
    // operator wrote) goes with the release.
    let webhooks = c
        .kubectl(&["get", "mutatingwebhookconfigurations", "-o", "name"], None)
        .await?
        .ok()?;
    ensure!(
        !webhooks.contains(&format!("{release}-operator")),
        "a webhook configuration outlived helm uninstall: {webhooks}"
    );
    c.kubectl(&["get", "crd/modelroutes.sluice.dev", "crd/budgets.sluice.dev"], None)
        .await?
        .ok()
        .context("the CRDs should stay after helm uninstall")?;
    Ok(())
}

#[tokio::test]
async fn in_cert_manager_mode_the_operator_cannot_touch_secrets_or_the_webhook() -> Result<()> {
    let Some(c) = cluster("chart_install_cert_manager").await? else {
        return Ok(());
    };
    with_stub_crds(&c).await?;
    let release = "sluice-cm";
    install(&c, release, &["certificates.certManager.enabled=true"]).await?;
    let annotation = c
        .kubectl(
            &[
                "get",
                &format!("mutatingwebhookconfiguration/{release}-operator"),
                "-o",
                r"jsonpath={.metadata.annotations.cert-manager\.io/inject-ca-from}",
            ],
            None,
        )
        .await?
        .ok()?;
    ensure!(
        annotation == format!("{}/{release}-operator", c.namespace),
        "cainjector annotation: {annotation:?}"
    );
    let sa = format!("system:serviceaccount:{}:{release}-operator", c.namespace);
    let wrong = wrong_answers(&c, &sa, &rbac_questions(release, &c.namespace, true)).await?;
    ensure!(wrong.is_empty(), "RBAC differs from the table:\n{}", wrong.join("\n"));
    Ok(())
}
