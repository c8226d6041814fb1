//! The user's journey on a real node (kubelet, containerd, kube-proxy, CoreDNS): `helm install`
//! of the chart as shipped with images made from the workspace's binaries, a labelled
//! namespace, an app that knows only `OPENAI_BASE_URL`, spend in status, and the day-2
//! operations — upgrades, evictions, restarts, scale to zero, a killed sidecar, an app
//! rollout, uninstall — each as a test.
//!
//! The tests share one node and one Sluice installation; each works in namespaces of its
//! own and holds [`Node::exclusive`] while it runs, because an operation on the installation
//! (an eviction, a restart) is felt by every tenant.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, EvictParams};
use serde_json::{Value, json};
use sluice_tests::cluster::repo_root;
use sluice_tests::node::{Node, node};
use sluice_tests::operator::eventually;
use sluice_tests::upstream::{COMPLETION_TOKENS, PROMPT_TOKENS};

const RELEASE: &str = "sluice";
const SYSTEM: &str = "sluice-system";
/// Long enough for pods to be scheduled, started and probed on a loaded 2-core machine.
const POD_WAIT: Duration = Duration::from_secs(180);
/// Usage reaches status in batches of a few seconds (DESIGN §6.3); this bounds the wait.
const STATUS_WAIT: Duration = Duration::from_secs(90);
/// Prices of the tenant's backend, micro-dollars per token (= dollars per million tokens).
const INPUT_PER_MTOK: u64 = 2;
const OUTPUT_PER_MTOK: u64 = 8;

/// What one `mock-ok` answer costs at the tenant's prices, in micro-dollars.
fn cost_of_one_answer() -> u64 {
    PROMPT_TOKENS * INPUT_PER_MTOK + COMPLETION_TOKENS * OUTPUT_PER_MTOK
}

#[tokio::test(flavor = "multi_thread")]
async fn a_labelled_namespace_is_served_through_the_sidecar_and_its_spend_lands_in_status() -> Result<()> {
    let Some(scene) = Scene::open("journey").await? else {
        return Ok(());
    };
    let (node, tenant) = (scene.node, &scene.tenant);

    let pods = tenant.app_pods().await?;
    ensure!(pods.len() == 2, "two app replicas, got {pods:?}");
    for pod in &pods {
        ensure!(
            pod.native_sidecar,
            "{} runs the sidecar as a native sidecar: {pod:?}",
            pod.name
        );
        let env = http_get(&format!("http://{}:8080/env", pod.ip)).await?;
        ensure!(
            env["OPENAI_BASE_URL"] == "http://127.0.0.1:4000/v1",
            "{}'s app was given the sidecar's URL: {env}",
            pod.name
        );
        admin_is_private(pod).await?;
    }
    let mut spent = 0;
    for pod in &pods {
        for _ in 0..5 {
            let answer = chat(&pod.ip).await?;
            ensure!(
                answer["status"] == 200,
                "{} answered through the sidecar: {answer}",
                pod.name
            );
            let route = format!("{}/chat", tenant.namespace);
            ensure!(
                answer["headers"]["x-sluice-route"] == route.as_str(),
                "the route answered: {answer}"
            );
            ensure!(
                answer["headers"]["x-sluice-backend"] == "upstream",
                "the backend answered: {answer}"
            );
            spent += micro_usd(answer["headers"]["x-sluice-cost-usd"].as_str().unwrap_or_default())?;
        }
    }
    ensure!(tenant.upstream_calls().await? == 10, "the upstream billed ten calls");
    ensure!(
        spent == 10 * cost_of_one_answer(),
        "each call cost {} µ$, the sidecars said {spent} for ten",
        cost_of_one_answer()
    );
    tenant.wait_spent(spent).await?;
    tenant.wait_sidecars_in_sync(2).await?;

    let listed = node
        .kubectl(&["-n", &tenant.namespace, "get", "modelroutes,budgets"], None)
        .await?
        .ok()?;
    let route_row = listed
        .lines()
        .find(|l| l.starts_with("modelroute.sluice.dev/chat"))
        .unwrap_or_default();
    let budget_row = listed
        .lines()
        .find(|l| l.starts_with("budget.sluice.dev/team"))
        .unwrap_or_default();
    ensure!(
        route_row.split_whitespace().any(|c| c == "2"),
        "kubectl shows 2 sidecars in sync:\n{listed}"
    );
    ensure!(
        budget_row.contains(&format_usd(spent)),
        "kubectl shows the spend {}:\n{listed}",
        format_usd(spent)
    );

    // A pod opted in from a namespace without the label starts and is served.
    let lone = format!("{}-optin", tenant.namespace);
    node.kubectl(&["create", "namespace", &lone], None).await?.ok()?;
    apply(node, &opt_in_pod(&lone, node.image("sluice-test-app")?)).await?;
    node.kubectl(
        &[
            "-n",
            &lone,
            "wait",
            "pod/lone",
            "--for=condition=Ready",
            "--timeout=180s",
        ],
        None,
    )
    .await?
    .ok()
    .context("the opted-in pod became Ready")?;
    let ip = pod_ip(node, &lone, "lone").await?;
    let answer = chat_model(&ip, "sim").await?;
    ensure!(answer["status"] == 200, "the opted-in pod is served: {answer}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_upgrade_with_a_changed_value_rolls_the_operator_out_and_wait_returns() -> Result<()> {
    let Some(scene) = Scene::open("upgrade").await? else {
        return Ok(());
    };
    let (node, tenant) = (scene.node, &scene.tenant);
    let traffic = Traffic::start(tenant.app_pods().await?);
    let before = operator_pods(node).await?;
    install(node, &["--set", "operator.logLevel=debug"]).await?;
    let after = operator_pods(node).await?;
    ensure!(after.len() == 2, "two operator replicas after the upgrade: {after:?}");
    ensure!(
        after.iter().all(|p| !before.contains(p)),
        "every replica was replaced: {before:?} → {after:?}"
    );
    tenant.wait_sidecars_in_sync(2).await?;
    let summary = traffic.stop().await;
    ensure!(
        summary.failed == 0,
        "no request failed through the rollout: {summary:?}"
    );
    tenant.wait_spent(summary.spent).await?;
    install(node, &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_evicted_then_deleted_hands_over_without_a_failed_request_or_lost_spend() -> Result<()> {
    let Some(scene) = Scene::open("leader").await? else {
        return Ok(());
    };
    let (node, tenant) = (scene.node, &scene.tenant);
    let traffic = Traffic::start(tenant.app_pods().await?);
    // Evicted through the Eviction API, with the PDB in place; then deleted outright.
    replace_leader(node, Removal::Evict).await?;
    tenant.wait_sidecars_in_sync(2).await?;
    replace_leader(node, Removal::Delete).await?;
    tenant.wait_sidecars_in_sync(2).await?;

    let summary = traffic.stop().await;
    ensure!(
        summary.failed == 0,
        "no request failed through both handovers: {summary:?}"
    );
    ensure!(summary.ok > 0, "traffic flowed: {summary:?}");
    tenant.wait_spent(summary.spent).await?;
    ensure!(
        tenant.upstream_calls().await? == summary.ok,
        "the upstream billed every answer once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_operator_scaled_to_zero_pods_are_served_and_usage_lands_when_it_is_back() -> Result<()> {
    let Some(scene) = Scene::open("zero").await? else {
        return Ok(());
    };
    let (node, tenant) = (scene.node, &scene.tenant);
    scale_operator(node, 0).await?;

    let mut spent = 0;
    for pod in tenant.app_pods().await? {
        let answer = chat(&pod.ip).await?;
        ensure!(answer["status"] == 200, "served from the last config: {answer}");
        spent += micro_usd(answer["headers"]["x-sluice-cost-usd"].as_str().unwrap_or_default())?;
    }
    // The chart's choice (failurePolicy Fail, documented in values.yaml): no pod of a labelled
    // namespace starts without its sidecar, so none is created while no replica serves the webhook.
    let refused = node
        .kubectl(
            &[
                "-n",
                &tenant.namespace,
                "run",
                "while-away",
                "--image",
                node.image("sluice-test-app")?,
                "--image-pull-policy=Never",
            ],
            None,
        )
        .await?;
    ensure!(
        !refused.success,
        "a pod is refused while the webhook is away: {}",
        refused.stdout
    );
    ensure!(
        refused.stderr.contains("inject.sluice.dev"),
        "the refusal names the webhook: {}",
        refused.stderr
    );

    scale_operator(node, 2).await?;
    tenant.wait_spent(spent).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_operator_restarts_in_a_row_never_take_a_route_from_a_sidecar() -> Result<()> {
    let Some(scene) = Scene::open("restarts").await? else {
        return Ok(());
    };
    let (node, tenant) = (scene.node, &scene.tenant);
    let pods = tenant.app_pods().await?;
    let watcher = RouteWatcher::start(pods.clone());
    let traffic = Traffic::start(pods);
    for _ in 0..10 {
        replace_leader(node, Removal::Delete).await?;
    }
    tenant.wait_sidecars_in_sync(2).await?;
    let summary = traffic.stop().await;
    let lost = watcher.stop().await;
    ensure!(lost.is_empty(), "no sidecar ever lost its route: {lost:?}");
    ensure!(summary.failed == 0, "no request failed: {summary:?}");
    tenant.wait_spent(summary.spent).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_sidecar_restarts_serves_its_saved_config_and_counts_nothing_twice() -> Result<()> {
    let Some(scene) = Scene::open("sidecar-kill").await? else {
        return Ok(());
    };
    let (node, tenant) = (scene.node, &scene.tenant);
    let pods = tenant.app_pods().await?;
    let mut spent = 0;
    for pod in &pods {
        spent += served_cost(&chat(&pod.ip).await?)?;
    }
    tenant.wait_spent(spent).await?;

    // With no operator to ask, whatever the restarted sidecar serves comes from its saved state.
    scale_operator(node, 0).await?;
    let victim = &pods[0];
    let restarts = sidecar_restarts(node, &tenant.namespace, &victim.name).await?;
    kill_container(node, &tenant.namespace, &victim.name, "sluice-sidecar").await?;
    eventually("the sidecar restarts", POD_WAIT, || async {
        sidecar_restarts(node, &tenant.namespace, &victim.name)
            .await
            .ok()
            .filter(|n| *n > restarts)
    })
    .await?;
    let answer = eventually("the restarted sidecar serves", POD_WAIT, || async {
        chat(&victim.ip).await.ok().filter(|a| a["status"] == 200)
    })
    .await?;
    spent += served_cost(&answer)?;

    scale_operator(node, 2).await?;
    tenant.wait_spent(spent).await?;
    ensure!(tenant.upstream_calls().await? == 3, "three calls, each billed once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_rolled_out_after_an_upgrade_gets_the_current_sidecar() -> Result<()> {
    let Some(scene) = Scene::open("rollout").await? else {
        return Ok(());
    };
    let (node, tenant) = (scene.node, &scene.tenant);
    // A different sidecar setting: the running pods are now outdated.
    install(node, &["--set", "sidecar.resources.requests.cpu=60m"]).await?;
    eventually("both pods count as outdated", STATUS_WAIT, || async {
        tenant
            .route_status()
            .await
            .ok()
            .filter(|s| s["sidecars"]["outdated"] == 2)
    })
    .await?;
    node.kubectl(&["-n", &tenant.namespace, "rollout", "restart", "deployment/app"], None)
        .await?
        .ok()?;
    node.kubectl(
        &[
            "-n",
            &tenant.namespace,
            "rollout",
            "status",
            "deployment/app",
            "--timeout=180s",
        ],
        None,
    )
    .await?
    .ok()?;
    eventually("no pod counts as outdated", STATUS_WAIT, || async {
        tenant
            .route_status()
            .await
            .ok()
            .filter(|s| s["sidecars"]["outdated"] == 0 && s["sidecars"]["inSync"] == 2)
    })
    .await?;
    for pod in tenant.app_pods().await? {
        ensure!(
            chat(&pod.ip).await?["status"] == 200,
            "the new pod {} is served",
            pod.name
        );
    }
    install(node, &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_uninstall_leaves_nothing_that_blocks_pod_creation() -> Result<()> {
    let Some(scene) = Scene::open("uninstall").await? else {
        return Ok(());
    };
    let (node, tenant) = (scene.node, &scene.tenant);
    node.helm(&["uninstall", RELEASE, "-n", SYSTEM, "--wait", "--timeout", "3m"])
        .await?
        .ok()?;
    let hooks = node
        .kubectl(
            &[
                "get",
                "mutatingwebhookconfigurations,validatingwebhookconfigurations",
                "-o",
                "name",
            ],
            None,
        )
        .await?
        .ok()?;
    ensure!(!hooks.contains("sluice"), "no Sluice webhook is left: {hooks}");
    node.kubectl(
        &[
            "-n",
            &tenant.namespace,
            "run",
            "after-uninstall",
            "--image",
            node.image("sluice-test-app")?,
            "--image-pull-policy=Never",
        ],
        None,
    )
    .await?
    .ok()
    .context("a pod of the labelled namespace is created after uninstall")?;
    node.kubectl(
        &[
            "-n",
            &tenant.namespace,
            "wait",
            "pod/after-uninstall",
            "--for=condition=Ready",
            "--timeout=180s",
        ],
        None,
    )
    .await?
    .ok()?;
    install(node, &[]).await
}

// ---- the installation -------------------------------------------------------------------

/// One test's hold on the shared node: the chart installed as shipped, the node to itself
/// (an operation on the installation is felt by every tenant), and a tenant of its own.
struct Scene {
    node: &'static Node,
    tenant: Tenant<'static>,
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
}

impl Scene {
    /// `None` when no node can run on this machine (outside CI the test then passes after a
    /// banner; under `SLUICE_REQUIRE_CLUSTER=1` that is an error).
    async fn open(name: &str) -> Result<Option<Self>> {
        let Some(node) = node(&format!("node_{name}")).await? else {
            return Ok(None);
        };
        let one_at_a_time = node.exclusive().await;
        install(node, &[]).await?;
        let tenant = Tenant::create(node, name).await?;
        Ok(Some(Self {
            node,
            tenant,
            _one_at_a_time: one_at_a_time,
        }))
    }
}

/// How the leading operator replica goes.
#[derive(Debug, Clone, Copy)]
enum Removal {
    /// Through the Eviction API, as a drain does: the PDB decides.
    Evict,
    /// Deleted outright.
    Delete,
}

/// Removes the leading replica and waits until another one leads and the Deployment is whole.
async fn replace_leader(node: &Node, how: Removal) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(node.client().await?, SYSTEM);
    let current = leader(node).await?;
    match how {
        Removal::Evict => pods.evict(&current, &EvictParams::default()).await.map(drop),
        Removal::Delete => pods.delete(&current, &DeleteParams::default()).await.map(drop),
    }
    .with_context(|| format!("{how:?} the leader {current}"))?;
    eventually(&format!("another replica leads after {current}"), POD_WAIT, || async {
        leader(node).await.ok().filter(|l| *l != current)
    })
    .await?;
    wait_operator_ready(node).await
}

/// Scales the operator; to 0 it waits until no replica is left, else until the rollout is done.
async fn scale_operator(node: &Node, replicas: u32) -> Result<()> {
    let deployment = operator_deployment(node).await?;
    let replicas_flag = format!("--replicas={replicas}");
    node.kubectl(&["-n", SYSTEM, "scale", &deployment, &replicas_flag], None)
        .await?
        .ok()?;
    if replicas > 0 {
        return wait_operator_ready(node).await;
    }
    eventually("every operator pod is gone", POD_WAIT, || async {
        operator_pods(node).await.ok().filter(Vec::is_empty)
    })
    .await
    .map(drop)
}

/// `helm install --wait` of the chart as shipped with the node's images, or `helm upgrade
/// --wait` once it is installed.
async fn install(node: &Node, extra: &[&str]) -> Result<()> {
    let (operator_repo, operator_tag) = split_ref(node.image("sluice-operator")?)?;
    let (sidecar_repo, sidecar_tag) = split_ref(node.image("sluice-sidecar")?)?;
    let chart = repo_root().join("charts/sluice");
    let chart = chart.to_str().context("chart path")?;
    let sets = [
        format!("image.repository={operator_repo}"),
        format!("image.tag={operator_tag}"),
        "image.pullPolicy=Never".to_owned(),
        format!("sidecar.image.repository={sidecar_repo}"),
        format!("sidecar.image.tag={sidecar_tag}"),
        "sidecar.image.pullPolicy=Never".to_owned(),
    ];
    let installed = node.helm(&["status", RELEASE, "-n", SYSTEM]).await?.success;
    let mut args = if installed {
        vec!["upgrade", RELEASE, chart, "-n", SYSTEM]
    } else {
        vec!["install", RELEASE, chart, "-n", SYSTEM, "--create-namespace"]
    };
    args.extend(["--wait", "--timeout", "5m"]);
    for set in &sets {
        args.extend(["--set", set.as_str()]);
    }
    args.extend(extra);
    node.helm(&args)
        .await?
        .ok()
        .with_context(|| format!("helm {}", args[0]))?;
    Ok(())
}

fn split_ref(reference: &str) -> Result<(&str, &str)> {
    reference
        .rsplit_once(':')
        .with_context(|| format!("{reference} has no tag"))
}

async fn operator_pods(node: &Node) -> Result<Vec<String>> {
    let out = node
        .kubectl(
            &[
                "-n",
                SYSTEM,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/component=operator",
                "-o",
                "json",
            ],
            None,
        )
        .await?
        .ok()?;
    let list: Value = serde_json::from_str(&out)?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect())
}

async fn operator_deployment(node: &Node) -> Result<String> {
    let out = node
        .kubectl(
            &[
                "-n",
                SYSTEM,
                "get",
                "deployments",
                "-l",
                "app.kubernetes.io/component=operator",
                "-o",
                "name",
            ],
            None,
        )
        .await?
        .ok()?;
    out.lines()
        .next()
        .map(str::to_owned)
        .context("the chart made an operator Deployment")
}

async fn wait_operator_ready(node: &Node) -> Result<()> {
    let deployment = operator_deployment(node).await?;
    node.kubectl(
        &["-n", SYSTEM, "rollout", "status", &deployment, "--timeout=180s"],
        None,
    )
    .await?
    .ok()
    .context("the operator's rollout completes")?;
    Ok(())
}

/// The pod holding the operator's Lease, if a live one does.
async fn leader(node: &Node) -> Result<String> {
    let client = node.client().await?;
    let leases: Api<Lease> = Api::namespaced(client, SYSTEM);
    let pods = operator_pods(node).await?;
    for lease in leases.list(&Default::default()).await? {
        if let Some(holder) = lease.spec.and_then(|s| s.holder_identity)
            && pods.contains(&holder)
        {
            return Ok(holder);
        }
    }
    bail!("no live operator pod holds a Lease (pods {pods:?})")
}

// ---- a tenant: a labelled namespace with an upstream, a route, a budget and an app ------

struct Tenant<'a> {
    node: &'a Node,
    namespace: String,
}

#[derive(Debug, Clone)]
struct AppPod {
    name: String,
    ip: String,
    native_sidecar: bool,
}

impl<'a> Tenant<'a> {
    async fn create(node: &'a Node, name: &str) -> Result<Self> {
        let namespace = format!("node-{name}");
        // A namespace left by an earlier test run on the same node would carry its spend.
        node.kubectl(
            &[
                "delete",
                "namespace",
                &namespace,
                "--ignore-not-found",
                "--wait=true",
                "--timeout=120s",
            ],
            None,
        )
        .await?
        .ok()?;
        node.kubectl(&["create", "namespace", &namespace], None).await?.ok()?;
        node.kubectl(&["label", "namespace", &namespace, "sluice.dev/inject=enabled"], None)
            .await?
            .ok()?;
        apply(
            node,
            &tenant_manifests(
                &namespace,
                node.image("sluice-test-upstream")?,
                node.image("sluice-test-app")?,
            ),
        )
        .await?;
        for deployment in ["upstream", "app"] {
            node.kubectl(
                &[
                    "-n",
                    &namespace,
                    "rollout",
                    "status",
                    &format!("deployment/{deployment}"),
                    "--timeout=180s",
                ],
                None,
            )
            .await?
            .ok()
            .with_context(|| format!("deployment/{deployment} in {namespace} rolls out"))?;
        }
        let tenant = Self { node, namespace };
        tenant.wait_sidecars_in_sync(2).await?;
        Ok(tenant)
    }

    async fn app_pods(&self) -> Result<Vec<AppPod>> {
        let out = self
            .node
            .kubectl(
                &["-n", &self.namespace, "get", "pods", "-l", "app=app", "-o", "json"],
                None,
            )
            .await?
            .ok()?;
        let list: Value = serde_json::from_str(&out)?;
        let mut pods = Vec::new();
        for pod in list["items"].as_array().into_iter().flatten() {
            if !pod["metadata"]["deletionTimestamp"].is_null() || !is_ready(pod) {
                continue;
            }
            let native_sidecar = pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == "sluice-sidecar" && c["restartPolicy"] == "Always");
            pods.push(AppPod {
                name: pod["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                ip: pod["status"]["podIP"].as_str().unwrap_or_default().to_owned(),
                native_sidecar,
            });
        }
        Ok(pods)
    }

    async fn route_status(&self) -> Result<Value> {
        let out = self
            .node
            .kubectl(
                &["-n", &self.namespace, "get", "modelroute", "chat", "-o", "json"],
                None,
            )
            .await?
            .ok()?;
        let route: Value = serde_json::from_str(&out)?;
        Ok(route["status"].clone())
    }

    async fn wait_sidecars_in_sync(&self, count: u64) -> Result<()> {
        eventually(
            &format!("{count} sidecars in sync in {}", self.namespace),
            STATUS_WAIT,
            || async {
                self.route_status()
                    .await
                    .ok()
                    .filter(|s| s["sidecars"]["inSync"] == count && s["sidecars"]["desired"] == count)
            },
        )
        .await
        .map(drop)
    }

    /// Waits until the Budget's `status.spentUSD` is exactly `micro` micro-dollars.
    async fn wait_spent(&self, micro: u64) -> Result<()> {
        let want = format_usd(micro);
        let found = eventually(
            &format!("spentUSD {want} in {}", self.namespace),
            STATUS_WAIT,
            || async {
                let spent = self.spent().await.ok()?;
                (micro_usd(&spent).ok()? == micro).then_some(())
            },
        )
        .await;
        match found {
            Ok(()) => Ok(()),
            Err(e) => Err(e.context(format!("the Budget says {:?}", self.spent().await.unwrap_or_default()))),
        }
    }

    async fn spent(&self) -> Result<String> {
        self.node
            .kubectl(
                &[
                    "-n",
                    &self.namespace,
                    "get",
                    "budget",
                    "team",
                    "-o",
                    "jsonpath={.status.spentUSD}",
                ],
                None,
            )
            .await?
            .ok()
    }

    /// Chat calls the upstream pod has answered.
    async fn upstream_calls(&self) -> Result<u64> {
        let ip = self
            .node
            .kubectl(
                &[
                    "-n",
                    &self.namespace,
                    "get",
                    "service",
                    "upstream",
                    "-o",
                    "jsonpath={.spec.clusterIP}",
                ],
                None,
            )
            .await?
            .ok()?;
        let requests = http_get(&format!("http://{ip}:8080/_requests")).await?;
        Ok(requests
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["path"] == "/v1/chat/completions")
            .count() as u64)
    }
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn tenant_manifests(namespace: &str, upstream_image: &str, app_image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: upstream-key, namespace: {namespace}}}
stringData: {{apiKey: sk-node-test-not-a-real-key}}
---
# The provider: an OpenAI-format upstream behind a Service, opted out of injection.
apiVersion: apps/v1
kind: Deployment
metadata: {{name: upstream, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: upstream}}}}
  template:
    metadata: {{labels: {{app: upstream, sluice.dev/inject: "false"}}}}
    spec:
      containers:
      - name: upstream
        image: {upstream_image}
        imagePullPolicy: Never
        args: [--listen, "0.0.0.0:8080"]
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: upstream, namespace: {namespace}}}
spec:
  selector: {{app: upstream}}
  ports: [{{port: 8080, targetPort: http}}]
---
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: chat, namespace: {namespace}}}
spec:
  models: [chat]
  backends:
  - name: upstream
    provider: openai-compatible
    baseUrl: http://upstream.{namespace}.svc.cluster.local:8080/v1
    model: mock-ok
    credentialsRef: {{name: upstream-key, key: apiKey}}
    pricing: {{inputPerMTok: "{INPUT_PER_MTOK}.00", outputPerMTok: "{OUTPUT_PER_MTOK}.00", cachedInputPerMTok: "{INPUT_PER_MTOK}.00"}}
  budgetRef: {{name: team}}
---
apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {{name: team, namespace: {namespace}}}
spec:
  limitUSD: "100.00"
  period: monthly
  enforcement: hard
---
# The app knows nothing of Sluice but the OPENAI_BASE_URL the webhook gives it.
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, namespace: {namespace}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec:
      containers:
      - name: app
        image: {app_image}
        imagePullPolicy: Never
        args: [--listen, "0.0.0.0:8080"]
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
"#
    )
}

/// A pod opted in by its own label, in a namespace without one, with a simulator route.
fn opt_in_pod(namespace: &str, app_image: &str) -> String {
    format!(
        r#"apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: sim, namespace: {namespace}}}
spec:
  models: [sim]
  backends:
  - name: sim
    provider: simulator
    model: sim-1
    simulator: {{timeToFirstToken: 1ms, perToken: 0ms, outputTokens: 4, seed: 1}}
---
apiVersion: v1
kind: Pod
metadata:
  name: lone
  namespace: {namespace}
  labels: {{sluice.dev/inject: "true"}}
spec:
  containers:
  - name: app
    image: {app_image}
    imagePullPolicy: Never
    args: [--listen, "0.0.0.0:8080"]
    readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
"#
    )
}

async fn apply(node: &Node, manifests: &str) -> Result<()> {
    node.kubectl(&["apply", "-f", "-"], Some(manifests)).await?.ok()?;
    Ok(())
}

async fn pod_ip(node: &Node, namespace: &str, pod: &str) -> Result<String> {
    node.kubectl(
        &["-n", namespace, "get", "pod", pod, "-o", "jsonpath={.status.podIP}"],
        None,
    )
    .await?
    .ok()
}

async fn sidecar_restarts(node: &Node, namespace: &str, pod: &str) -> Result<u64> {
    let out = node
        .kubectl(&["-n", namespace, "get", "pod", pod, "-o", "json"], None)
        .await?
        .ok()?;
    let pod: Value = serde_json::from_str(&out)?;
    pod["status"]["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "sluice-sidecar")
        .and_then(|c| c["restartCount"].as_u64())
        .context("the pod reports its sidecar")
}

/// Kills a container's process the way an OOM kill or a crash would: SIGKILL from the node's
/// runtime, the pod left as it is.
async fn kill_container(node: &Node, namespace: &str, pod: &str, container: &str) -> Result<()> {
    let out = node
        .kubectl(&["-n", namespace, "get", "pod", pod, "-o", "json"], None)
        .await?
        .ok()?;
    let pod_json: Value = serde_json::from_str(&out)?;
    let id = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|k| pod_json["status"][k].as_array().into_iter().flatten())
        .find(|c| c["name"] == container)
        .and_then(|c| c["containerID"].as_str())
        .and_then(|id| id.strip_prefix("containerd://"))
        .with_context(|| format!("{pod} has a running {container}"))?
        .to_owned();
    let socket = node.state_dir.join("containerd/containerd.sock");
    let killed = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(&socket)
        .args(["-n", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", &id])
        .output()
        .await?;
    ensure!(
        killed.status.success(),
        "ctr tasks kill: {}",
        String::from_utf8_lossy(&killed.stderr)
    );
    Ok(())
}

// ---- traffic -----------------------------------------------------------------------------

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .unwrap_or_default()
}

async fn http_get(url: &str) -> Result<Value> {
    let response = http().get(url).send().await.with_context(|| format!("GET {url}"))?;
    Ok(response.json().await?)
}

async fn chat(ip: &str) -> Result<Value> {
    chat_model(ip, "chat").await
}

/// One chat call made by the app in the pod at `ip`; its answer as the app saw it.
async fn chat_model(ip: &str, model: &str) -> Result<Value> {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "Say hello."}]});
    let url = format!("http://{ip}:8080/chat");
    let response = http()
        .post(&url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    Ok(response.json().await?)
}

/// What an answered call cost, by the sidecar's `x-sluice-cost-usd`.
fn served_cost(answer: &Value) -> Result<u64> {
    ensure!(answer["status"] == 200, "the call was answered: {answer}");
    micro_usd(answer["headers"]["x-sluice-cost-usd"].as_str().unwrap_or_default())
}

/// `"0.000058"` → 58.
fn micro_usd(decimal: &str) -> Result<u64> {
    let (whole, fraction) = decimal.trim().split_once('.').unwrap_or((decimal.trim(), ""));
    ensure!(fraction.len() <= 6, "{decimal:?} has more than six decimals");
    let whole: u64 = whole
        .parse()
        .with_context(|| format!("{decimal:?} is not a dollar amount"))?;
    let fraction: u64 = format!("{fraction:0<6}")
        .parse()
        .with_context(|| format!("{decimal:?} is not a dollar amount"))?;
    Ok(whole * 1_000_000 + fraction)
}

/// 58 → `"0.000058"`.
fn format_usd(micro: u64) -> String {
    format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

#[derive(Debug, Default)]
struct TrafficSummary {
    ok: u64,
    failed: u64,
    spent: u64,
    failures: Vec<String>,
}

/// Chat calls through every app pod in turn, one at a time, until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<TrafficSummary>,
}

impl Traffic {
    fn start(pods: Vec<AppPod>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut summary = TrafficSummary::default();
            let mut turn = 0;
            while !flag.load(Ordering::Relaxed) && !pods.is_empty() {
                let pod = &pods[turn % pods.len()];
                turn += 1;
                match chat(&pod.ip).await.and_then(|a| served_cost(&a)) {
                    Ok(cost) => {
                        summary.ok += 1;
                        summary.spent += cost;
                    }
                    Err(e) => {
                        summary.failed += 1;
                        if summary.failures.len() < 5 {
                            summary.failures.push(format!("{}: {e:#}", pod.name));
                        }
                    }
                }
                // Paced, not a wait on anything: a steady trickle through the disruption.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            summary
        });
        Self { stop, task }
    }

    async fn stop(self) -> TrafficSummary {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// The sidecar's admin listener on the pod IP answers the kubelet's probes and Prometheus from
/// outside the pod (this test runs on the node, not in the pod) and refuses `/config` and
/// `/budgets` there with 403; the app reads both from inside the pod.
async fn admin_is_private(pod: &AppPod) -> Result<()> {
    for path in ["/healthz", "/readyz", "/metrics", "/config", "/budgets"] {
        let url = format!("http://{}:4001{path}", pod.ip);
        let response = http().get(&url).send().await.with_context(|| format!("GET {url}"))?;
        let (status, body) = (response.status().as_u16(), response.text().await?);
        let expected = if matches!(path, "/config" | "/budgets") {
            403
        } else {
            200
        };
        ensure!(
            status == expected,
            "GET {url} from the node: {status}, not {expected}: {body}"
        );
        if expected == 403 {
            ensure!(body.contains("loopback_only"), "GET {url} from the node: {body}");
        }
        let inside = sidecar_admin(&pod.ip, path).await?;
        ensure!(inside["status"] == 200, "GET {path} from inside {}: {inside}", pod.name);
    }
    Ok(())
}

/// `GET path` on the sidecar's admin listener from inside the pod at `ip`, by its app:
/// `{"status", "body"}`.
async fn sidecar_admin(ip: &str, path: &str) -> Result<Value> {
    http_get(&format!("http://{ip}:8080/sidecar-admin{path}")).await
}

/// Polls every sidecar's `/config` (from inside its pod, through the app: the admin listener
/// shows it to no one else) and remembers each time one served no route.
struct RouteWatcher {
    stop: Arc<AtomicBool>,
    polls: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<BTreeMap<String, u64>>,
}

impl RouteWatcher {
    fn start(pods: Vec<AppPod>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), polls.clone());
        let task = tokio::spawn(async move {
            let mut lost = BTreeMap::new();
            while !flag.load(Ordering::Relaxed) {
                for pod in &pods {
                    let routes = sidecar_admin(&pod.ip, "/config")
                        .await
                        .map(|c| c["body"]["routes"].as_array().map_or(0, Vec::len));
                    if !matches!(routes, Ok(n) if n > 0) {
                        *lost.entry(pod.name.clone()).or_insert(0) += 1;
                    }
                }
                count.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            lost
        });
        Self { stop, polls, task }
    }

    async fn stop(self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let polls = self.polls.load(Ordering::Relaxed);
        let mut lost = self.task.await.unwrap_or_default();
        if polls == 0 {
            lost.insert("(the watcher never polled)".to_owned(), 1);
        }
        lost
    }
}
