//! The usage ledger out of the tenants' reach (issue #18): it lives in the operator's own
//! namespace, one ConfigMap per tenant namespace; a namespace's `edit` users can neither read,
//! change nor delete it; an administrator who deletes or corrupts it gets a condition saying
//! so, and nothing counts twice; a departed pod's records leave it.
//!
//! Each test runs the operator with `--lease-namespace` set to a second namespace of its own
//! (the operator's home), as the chart runs it in its release namespace.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};
use sluice_crds::Budget;
use sluice_tests::cluster::{TestCluster, cluster};
use sluice_tests::operator::{Certs, OperatorProcess, TestPod, UsagePoster, eventually};

const MANIFESTS: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {name: monthly}
spec: {limitUSD: "10.00", period: monthly, timeZone: Europe/Berlin}
---
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {name: chat}
spec:
  models: [chat]
  budgetRef: {name: monthly}
  backends:
  - name: up
    provider: openai-compatible
    baseUrl: "http://127.0.0.1:9/v1"
    model: mock-ok
    pricing: {inputPerMTok: "1000.00", outputPerMTok: "2000.00", cachedInputPerMTok: "500.00"}
"#;

const WITHIN: Duration = Duration::from_secs(30);

/// The tenant namespace (`c`) and the operator's home namespace.
struct Setup {
    c: TestCluster,
    home: TestCluster,
    dir: tempfile::TempDir,
    certs: Certs,
}

impl Setup {
    async fn new(test: &str) -> Result<Option<Self>> {
        let Some(c) = cluster(test).await? else {
            return Ok(None);
        };
        let home = cluster(&format!("{test}_home")).await?.context("a second namespace")?;
        c.install_crds().await?;
        c.kubectl_ns(&["apply", "-f", "-"], Some(MANIFESTS)).await?.ok()?;
        let dir = tempfile::tempdir()?;
        let certs = Certs::generate(dir.path())?;
        Ok(Some(Self { c, home, dir, certs }))
    }

    async fn operator(&self, identity: &str) -> Result<OperatorProcess> {
        let mut operator = OperatorProcess::spawn(
            &self.c,
            &self.certs,
            identity,
            &["--lease-namespace", &self.home.namespace],
        )
        .await?;
        operator.wait_ready(Duration::from_secs(60)).await?;
        Ok(operator)
    }

    fn ledger_name(&self) -> String {
        format!("sluice-usage-{}", self.c.namespace)
    }

    fn ledgers(&self) -> Api<ConfigMap> {
        Api::namespaced(self.c.client.clone(), &self.home.namespace)
    }

    async fn ledger(&self) -> Result<Option<ConfigMap>> {
        Ok(self.ledgers().get_opt(&self.ledger_name()).await?)
    }

    async fn ledger_json(&self) -> Result<Value> {
        let cm = self.ledger().await?.context("no ledger")?;
        let text = cm.data.and_then(|d| d.get("ledger.json").cloned()).unwrap_or_default();
        Ok(serde_json::from_str(&text)?)
    }

    async fn budget(&self) -> Result<Value> {
        let budget = Api::<Budget>::namespaced(self.c.client.clone(), &self.c.namespace)
            .get("monthly")
            .await?;
        Ok(serde_json::to_value(budget.status)?)
    }

    async fn spent(&self) -> Result<String> {
        Ok(self.budget().await?["spentUSD"].as_str().unwrap_or_default().to_owned())
    }

    /// The Budget's `UsageLedger` condition, once its reason is `reason`.
    async fn ledger_condition(&self, reason: &str) -> Result<Value> {
        eventually(&format!("a UsageLedger condition {reason}"), WITHIN, || async {
            let status = self.budget().await.ok()?;
            let conditions = status["conditions"].as_array()?.clone();
            conditions
                .into_iter()
                .find(|c| c["type"] == "UsageLedger" && c["reason"] == reason)
        })
        .await
    }
}

fn report(c: &TestCluster, pod: &TestPod, sequence: u64, cost: &str) -> Value {
    json!({
        "podUid": pod.uid, "sequence": sequence,
        "deltas": [{
            "route": {"namespace": c.namespace, "name": "chat"}, "backend": "up", "model": "mock-ok",
            "outcome": "ok", "requests": 1, "inputTokens": 12, "cachedInputTokens": 4,
            "outputTokens": 5, "cost": cost, "failovers": 0, "estimated": false
        }]
    })
}

/// Gives the built-in ClusterRoles `view` and `edit` their rules, as the cluster's controller
/// manager does: they are aggregated roles (`edit`'s rules are those of the roles labelled
/// `rbac.authorization.k8s.io/aggregate-to-edit`, `view` among them), and the test control
/// plane runs no controller manager to aggregate them. Idempotent; nothing else changes.
async fn aggregate_edit(c: &TestCluster) -> Result<()> {
    aggregate(c, "view").await?;
    aggregate(c, "edit").await
}

async fn aggregate(c: &TestCluster, name: &str) -> Result<()> {
    let roles: Api<ClusterRole> = Api::all(c.client.clone());
    let edit = roles.get(name).await?;
    let selectors = edit
        .aggregation_rule
        .and_then(|a| a.cluster_role_selectors)
        .unwrap_or_default();
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in selectors {
        let labels = selector.match_labels.unwrap_or_default();
        let query = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        for role in roles.list(&ListParams::default().labels(&query)).await? {
            for rule in role.rules.unwrap_or_default() {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
    }
    ensure!(!rules.is_empty(), "no roles aggregate into {name}");
    roles
        .patch(name, &PatchParams::default(), &Patch::Merge(&json!({"rules": rules})))
        .await?;
    Ok(())
}

/// A client acting as ServiceAccount `editor` of `c`'s namespace, bound there to the built-in
/// ClusterRole `edit` (what a team member usually has), by its own token.
async fn editor(c: &TestCluster) -> Result<Client> {
    aggregate_edit(c).await?;
    let ns = &c.namespace;
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("editor".into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), ns);
    sas.create(&PostParams::default(), &sa).await?;
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("editor-edit".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "edit".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "editor".into(),
            namespace: Some(ns.clone()),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(c.client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await?;
    let request = k8s_openapi::api::authentication::v1::TokenRequest {
        spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer: k8s_openapi::api::authentication::v1::TokenRequest = sas
        .create_subresource("token", "editor", &PostParams::default(), &request)
        .await
        .context("requesting the editor's token")?;
    let token = answer.status.map(|s| s.token).unwrap_or_default();
    let kubeconfig = Kubeconfig::read_from(&c.kubeconfig)?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.auth_info = serde_json::from_value::<AuthInfo>(json!({"token": token}))?;
    // The editor's rights are in place once it can list the namespace's ConfigMaps.
    let client = Client::try_from(config)?;
    let own: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    eventually("the editor's RoleBinding in effect", WITHIN, || async {
        own.list(&Default::default()).await.ok()
    })
    .await?;
    Ok(client)
}

fn forbidden<T: std::fmt::Debug>(result: kube::Result<T>) -> Result<()> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
        other => anyhow::bail!("expected 403, got {other:?}"),
    }
}

#[tokio::test]
async fn an_edit_user_can_neither_read_change_nor_delete_the_ledger_and_nothing_counts_twice() -> Result<()> {
    let Some(s) = Setup::new("operator_ledger_edit").await? else {
        return Ok(());
    };
    let mut operator = s.operator("op-1").await?;
    let a = TestPod::create(&s.c, s.dir.path(), "pod-a", &[]).await?;
    let b = TestPod::create(&s.c, s.dir.path(), "pod-b", &[]).await?;
    let caller = UsagePoster::new(&s.certs, &operator.control_url)?;
    ensure!(caller.send(&a, &report(&s.c, &a, 1, "0.060000")).await? == 1);
    ensure!(caller.send(&b, &report(&s.c, &b, 1, "0.040000")).await? == 1);
    ensure!(s.spent().await? == "0.100000");

    // The ledger is in the operator's namespace, labelled with the tenant's; none in the tenant's.
    let cm = s.ledger().await?.context("the ledger in the operator's namespace")?;
    let labels = cm.metadata.labels.unwrap_or_default();
    ensure!(labels.get("sluice.dev/namespace") == Some(&s.c.namespace), "{labels:?}");
    let tenant: Api<ConfigMap> = Api::namespaced(s.c.client.clone(), &s.c.namespace);
    ensure!(tenant.get_opt("sluice-usage").await?.is_none());

    let editor = editor(&s.c).await?;
    let theirs: Api<ConfigMap> = Api::namespaced(editor.clone(), &s.home.namespace);
    let name = s.ledger_name();
    forbidden(theirs.get(&name).await)?;
    let lowered = json!({"data": {"ledger.json": "{\"budgets\":{}}"}});
    forbidden(
        theirs
            .patch(&name, &PatchParams::default(), &Patch::Merge(&lowered))
            .await,
    )?;
    forbidden(theirs.delete(&name, &DeleteParams::default()).await)?;
    let mut forged = cm_named("sluice-usage", &s.c.namespace, "{\"budgets\":{}}");
    forged.metadata.namespace = Some(s.home.namespace.clone());
    forbidden(theirs.create(&PostParams::default(), &forged).await)?;
    // What they can write, a `sluice-usage` in their own namespace (where earlier versions kept
    // the ledger), is never read.
    let own: Api<ConfigMap> = Api::namespaced(editor, &s.c.namespace);
    own.create(
        &PostParams::default(),
        &cm_named("sluice-usage", &s.c.namespace, r#"{"pods":{},"budgets":{}}"#),
    )
    .await
    .context("the editor writes ConfigMaps of its namespace")?;
    ensure!(s.spent().await? == "0.100000");

    // Reports after, and resent ones, count once; also across a restart that reloads the ledger.
    ensure!(caller.send(&a, &report(&s.c, &a, 2, "0.020000")).await? == 2);
    ensure!(caller.send(&a, &report(&s.c, &a, 1, "0.060000")).await? == 2);
    ensure!(s.spent().await? == "0.120000");
    operator.process.terminate().await?;
    let operator = s.operator("op-2").await?;
    let caller = UsagePoster::new(&s.certs, &operator.control_url)?;
    ensure!(caller.send(&a, &report(&s.c, &a, 2, "0.020000")).await? == 2);
    ensure!(caller.send(&b, &report(&s.c, &b, 1, "0.040000")).await? == 1);
    ensure!(caller.send(&b, &report(&s.c, &b, 2, "0.010000")).await? == 2);
    let status = s.budget().await?;
    ensure!(status["spentUSD"] == "0.130000", "{status}");
    ensure!(status["byRoute"] == json!({"chat": "0.130000"}), "{status}");
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    ensure!(
        !conditions.iter().any(|c| c["type"] == "UsageLedger"),
        "nothing happened to the ledger: {status}"
    );
    Ok(())
}

fn cm_named(name: &str, namespace: &str, ledger: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        data: Some([("ledger.json".to_owned(), ledger.to_owned())].into()),
        ..ConfigMap::default()
    }
}

#[tokio::test]
async fn a_deleted_ledger_is_written_again_from_memory_or_rebuilt_from_status_and_said_so() -> Result<()> {
    let Some(s) = Setup::new("operator_ledger_deleted").await? else {
        return Ok(());
    };
    let mut operator = s.operator("op-1").await?;
    let a = TestPod::create(&s.c, s.dir.path(), "pod-a", &[]).await?;
    let b = TestPod::create(&s.c, s.dir.path(), "pod-b", &[]).await?;
    let caller = UsagePoster::new(&s.certs, &operator.control_url)?;
    ensure!(caller.send(&a, &report(&s.c, &a, 1, "0.060000")).await? == 1);
    ensure!(caller.send(&b, &report(&s.c, &b, 1, "0.040000")).await? == 1);

    // Deleted while the operator holds it: the next write finds it gone and writes it again
    // from memory, sequences included.
    s.ledgers().delete(&s.ledger_name(), &DeleteParams::default()).await?;
    ensure!(caller.send(&a, &report(&s.c, &a, 2, "0.020000")).await? == 2);
    let condition = s.ledger_condition("Recreated").await?;
    let message = condition["message"].as_str().unwrap_or_default();
    let full_name = format!("{}/{}", s.home.namespace, s.ledger_name());
    ensure!(
        condition["status"] == "True" && message.contains(&full_name) && message.contains("deleted"),
        "{condition}"
    );
    ensure!(caller.send(&a, &report(&s.c, &a, 1, "0.060000")).await? == 2);
    ensure!(caller.send(&b, &report(&s.c, &b, 1, "0.040000")).await? == 1);
    ensure!(s.spent().await? == "0.120000");
    ensure!(s.ledger_json().await?["pods"][&a.uid]["sequence"] == 2);

    // Deleted while no operator runs: rebuilt from status, and said so (with what it may cost).
    operator.process.terminate().await?;
    s.ledgers().delete(&s.ledger_name(), &DeleteParams::default()).await?;
    let operator = s.operator("op-2").await?;
    let caller = UsagePoster::new(&s.certs, &operator.control_url)?;
    ensure!(caller.send(&b, &report(&s.c, &b, 2, "0.010000")).await? == 2);
    let condition = s.ledger_condition("RebuiltFromStatus").await?;
    let message = condition["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains(&full_name)
            && message.contains("rebuilt from status")
            && message.contains("at most one per pod"),
        "{condition}"
    );
    ensure!(caller.send(&b, &report(&s.c, &b, 2, "0.010000")).await? == 2);
    let status = s.budget().await?;
    ensure!(status["spentUSD"] == "0.130000", "{status}");
    let usage = s.ledger_json().await?;
    ensure!(usage["routes"]["chat"]["usage"]["requests"] == 4, "{usage}");
    Ok(())
}

#[tokio::test]
async fn a_corrupt_ledger_holds_reports_until_an_administrator_deletes_it_and_none_is_lost() -> Result<()> {
    let Some(s) = Setup::new("operator_ledger_corrupt").await? else {
        return Ok(());
    };
    let operator = s.operator("op-1").await?;
    let a = TestPod::create(&s.c, s.dir.path(), "pod-a", &[]).await?;
    let caller = UsagePoster::new(&s.certs, &operator.control_url)?;
    ensure!(caller.send(&a, &report(&s.c, &a, 1, "0.060000")).await? == 1);

    let garbage = json!({"data": {"ledger.json": "{\"pods\": [not a ledger"}});
    s.ledgers()
        .patch(&s.ledger_name(), &PatchParams::default(), &Patch::Merge(&garbage))
        .await?;
    // Refused (503) while it cannot be read: the sidecar would keep the report and resend it.
    let refused = eventually("reports held with the reason", WITHIN, || async {
        let (status, text) = caller.post(&a, &report(&s.c, &a, 2, "0.020000")).await.ok()?;
        (status == 503 && text.contains("cannot be read")).then_some(text)
    })
    .await?;
    ensure!(refused.contains(&s.ledger_name()), "{refused}");
    let condition = s.ledger_condition("Unreadable").await?;
    let message = condition["message"].as_str().unwrap_or_default();
    ensure!(
        condition["status"] == "False"
            && message.contains(&s.ledger_name())
            && message.contains("held")
            && message.contains("deletes"),
        "{condition}"
    );
    ensure!(s.spent().await? == "0.060000");
    // Never overwritten.
    let cm = s.ledger().await?.context("the corrupt ledger")?;
    let text = cm.data.and_then(|d| d.get("ledger.json").cloned()).unwrap_or_default();
    ensure!(text.contains("not a ledger"), "{text}");

    // Deleted: rebuilt from status; the held report now counts, once.
    s.ledgers().delete(&s.ledger_name(), &DeleteParams::default()).await?;
    ensure!(caller.send(&a, &report(&s.c, &a, 2, "0.020000")).await? == 2);
    ensure!(caller.send(&a, &report(&s.c, &a, 2, "0.020000")).await? == 2);
    s.ledger_condition("RebuiltFromStatus").await?;
    ensure!(s.spent().await? == "0.080000");
    Ok(())
}

#[tokio::test]
async fn a_deleted_pods_records_leave_the_ledger_once_nothing_of_it_can_arrive() -> Result<()> {
    let Some(s) = Setup::new("operator_ledger_prune").await? else {
        return Ok(());
    };
    let operator = s.operator("op-1").await?;
    let a = TestPod::create(&s.c, s.dir.path(), "pod-a", &[]).await?;
    let b = TestPod::create(&s.c, s.dir.path(), "pod-b", &[]).await?;
    let caller = UsagePoster::new(&s.certs, &operator.control_url)?;
    ensure!(caller.send(&a, &report(&s.c, &a, 1, "0.060000")).await? == 1);
    let mut last = report(&s.c, &a, 2, "0.010000");
    last["final"] = json!(true);
    ensure!(caller.send(&a, &last).await? == 2);
    ensure!(caller.send(&b, &report(&s.c, &b, 1, "0.040000")).await? == 1);
    ensure!(s.ledger_json().await?["pods"].get(&a.uid).is_some());

    Api::<Pod>::namespaced(s.c.client.clone(), &s.c.namespace)
        .delete("pod-a", &DeleteParams::default().grace_period(0))
        .await?;
    // A minute after the deletion (RECLAIM_WAIT), its sequence and grant are gone.
    let ledger = eventually("pod-a's records removed", Duration::from_secs(90), || async {
        let ledger = s.ledger_json().await.ok()?;
        let in_budgets = ledger["budgets"]["monthly"]["pods"].get(&a.uid).is_some();
        (ledger["pods"].get(&a.uid).is_none() && !in_budgets).then_some(ledger)
    })
    .await?;
    ensure!(ledger["pods"].get(&b.uid).is_some(), "{ledger}");
    // Its spend stays counted.
    ensure!(ledger["budgets"]["monthly"]["spentUSD"] == "0.110000", "{ledger}");
    ensure!(s.spent().await? == "0.110000");
    // Its token no longer authenticates: it cannot report again.
    let (status, text) = caller.post(&a, &report(&s.c, &a, 1, "0.060000")).await?;
    ensure!(status == 401 || status == 403, "{status}: {text}");
    ensure!(s.spent().await? == "0.110000");
    Ok(())
}

#[tokio::test]
async fn a_pod_deleted_while_no_operator_ran_leaves_the_ledger_after_the_next_start() -> Result<()> {
    let Some(s) = Setup::new("operator_ledger_sweep").await? else {
        return Ok(());
    };
    let mut operator = s.operator("op-1").await?;
    let a = TestPod::create(&s.c, s.dir.path(), "pod-a", &[]).await?;
    let b = TestPod::create(&s.c, s.dir.path(), "pod-b", &[]).await?;
    let caller = UsagePoster::new(&s.certs, &operator.control_url)?;
    ensure!(caller.send(&a, &report(&s.c, &a, 1, "0.060000")).await? == 1);
    ensure!(caller.send(&b, &report(&s.c, &b, 1, "0.040000")).await? == 1);
    operator.process.terminate().await?;
    // No operator sees this deletion.
    Api::<Pod>::namespaced(s.c.client.clone(), &s.c.namespace)
        .delete("pod-a", &DeleteParams::default().grace_period(0))
        .await?;

    let operator = s.operator("op-2").await?;
    // Found absent after the start, then removed a minute later; the live pod stays.
    let ledger = eventually("pod-a's records removed", Duration::from_secs(100), || async {
        let ledger = s.ledger_json().await.ok()?;
        ledger["pods"].get(&a.uid).is_none().then_some(ledger)
    })
    .await?;
    ensure!(ledger["pods"][&b.uid]["sequence"] == 1, "{ledger}");
    ensure!(ledger["budgets"]["monthly"]["spentUSD"] == "0.100000", "{ledger}");
    let caller = UsagePoster::new(&s.certs, &operator.control_url)?;
    ensure!(caller.send(&b, &report(&s.c, &b, 1, "0.040000")).await? == 1);
    ensure!(s.spent().await? == "0.100000");
    Ok(())
}
