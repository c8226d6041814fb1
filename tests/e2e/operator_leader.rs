//! Two operator replicas (DESIGN §6.4): one leads through a Lease; the other is ready too (it
//! serves the webhook) but refuses control connections with 503; when the leader dies the
//! other takes over, serves the sidecars and pushes changes; a leader stopped with SIGTERM
//! hands over at once by releasing the lease. And an operator restarted again and again never
//! sends a connected sidecar a config judged from caches that were still filling.

use std::time::Duration;

use anyhow::{Result, ensure};
use sluice_crds::{Budget, MicroUsd};
use sluice_tests::cluster::cluster;
use sluice_tests::operator::{Certs, ClusterSidecar, OperatorProcess, TestPod, eventually, lease_holder};
use sluice_tests::upstream::{Upstream, Wire};

const WITHIN: Duration = Duration::from_secs(60);
const LEASE: &str = "sluice-operator";

/// A route spending from a budget; every answer of the upstream costs exactly $0.020000
/// (5 completion tokens at $4000 per million, prompts free).
fn route(upstream: &Upstream, backend: &str) -> String {
    format!(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {{name: team}}
spec: {{limitUSD: "100"}}
---
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: chat}}
spec:
  models: [chat]
  budgetRef: {{name: team}}
  backends:
  - name: {backend}
    provider: openai-compatible
    baseUrl: "http://{addr}/v1"
    model: mock-ok
    pricing: {{inputPerMTok: "0", outputPerMTok: "4000"}}
"#,
        addr = upstream.addr
    )
}

/// Sends requests until `backend` answers; returns the micro-dollars all answered requests cost.
async fn spend_until_served_by(sidecar: &ClusterSidecar, backend: &str) -> Result<u64> {
    let deadline = std::time::Instant::now() + WITHIN;
    let mut spent = 0;
    loop {
        if let Some(answer) = sidecar.chat("chat").await
            && answer.status == 200
        {
            spent += answer.cost.parse::<MicroUsd>().map(|m| m.micros()).unwrap_or(0);
            if answer.backend == backend {
                return Ok(spent);
            }
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "not served by {backend} within {WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn spent(c: &sluice_tests::cluster::TestCluster) -> Option<String> {
    let budget = kube::Api::<Budget>::namespaced(c.client.clone(), &c.namespace)
        .get("team")
        .await
        .ok()?;
    Some(budget.status?.spent_usd.to_string())
}

#[tokio::test]
async fn one_replica_leads_and_the_other_takes_over_when_it_dies() -> Result<()> {
    let Some(c) = cluster("operator_leader").await? else {
        return Ok(());
    };
    c.install_crds().await?;
    let dir = tempfile::tempdir()?;
    let upstream = Upstream::start(&[Wire::OpenAi]).await?;
    c.kubectl_ns(&["apply", "-f", "-"], Some(&route(&upstream, "first")))
        .await?
        .ok()?;
    let certs = Certs::generate(dir.path())?;
    let mut first = OperatorProcess::start(&c, &certs, "op-1").await?;
    let second = OperatorProcess::spawn(&c, &certs, "op-2", &[]).await?;
    second
        .process
        .wait_for_output("waiting to become the leader", WITHIN)
        .await?;
    ensure!(lease_holder(&c.client, &c.namespace, LEASE).await.as_deref() == Some("op-1"));
    // Readiness is about serving, not leading: the follower is ready (so rollouts and the PDB
    // work with two replicas) and refuses control calls, which only the leader serves.
    eventually("the follower ready", WITHIN, || async {
        second.is_ready().await.then_some(())
    })
    .await?;
    ensure!(lease_holder(&c.client, &c.namespace, LEASE).await.as_deref() == Some("op-1"));
    let refusal = control_client(&certs)?
        .get(format!("{}/v1/watch", second.control_url))
        .send()
        .await?;
    ensure!(
        refusal.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refusal.status()
    );
    let body = refusal.text().await?;
    ensure!(body.contains("not the leader"), "{body}");

    let pod = TestPod::create(&c, dir.path(), "bot", &[]).await?;
    let urls = format!("{},{}", first.control_url, second.control_url);
    let sidecar = ClusterSidecar::spawn(&pod, &urls, &certs.ca()).await?;
    let mut total = spend_until_served_by(&sidecar, "first").await?;
    let expected = MicroUsd::new(total).to_string();
    eventually("the first leader's status", WITHIN, || async {
        spent(&c).await.filter(|s| *s == expected)
    })
    .await?;

    // The leader dies without releasing its lease: the follower waits out the lease and leads.
    first.process.kill()?;
    eventually("the second replica leading", WITHIN, || async {
        let holder = lease_holder(&c.client, &c.namespace, LEASE).await;
        (holder.as_deref() == Some("op-2")).then_some(())
    })
    .await?;
    ensure!(second.is_ready().await, "a replica taking over stays ready");
    // It serves the sidecar (which moved to it) and pushes an edit.
    c.kubectl_ns(&["apply", "-f", "-"], Some(&route(&upstream, "second")))
        .await?
        .ok()?;
    total += spend_until_served_by(&sidecar, "second").await?;
    // Status stays exact across the change of leader: nothing lost, nothing counted twice.
    let expected = MicroUsd::new(total).to_string();
    eventually("the new leader's status", WITHIN, || async {
        spent(&c).await.filter(|s| *s == expected)
    })
    .await?;

    // A graceful stop releases the lease: a new replica leads without waiting it out.
    let mut second = second;
    let third = OperatorProcess::spawn(&c, &certs, "op-3", &[]).await?;
    eventually("the third replica ready as a follower", WITHIN, || async {
        third.is_ready().await.then_some(())
    })
    .await?;
    second.process.terminate().await?;
    ensure!(
        second.process.output().contains("released the leader lease"),
        "{}",
        second.process.output()
    );
    eventually("the third replica leading", WITHIN, || async {
        let holder = lease_holder(&c.client, &c.namespace, LEASE).await;
        (holder.as_deref() == Some("op-3")).then_some(())
    })
    .await?;
    Ok(())
}

fn control_client(certs: &Certs) -> Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.ca())?)?;
    Ok(reqwest::Client::builder().tls_certs_only([ca]).build()?)
}

/// Budgets nobody spends from: they make the Budget list longer than the route list, which is
/// when a route judged before the Budgets were listed would be refused.
fn fillers(n: usize) -> String {
    (0..n)
        .map(|i| format!("apiVersion: sluice.dev/v1alpha1\nkind: Budget\nmetadata: {{name: filler-{i}}}\nspec: {{limitUSD: \"1\"}}\n"))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[tokio::test]
async fn an_operator_restarted_again_and_again_never_sends_a_connected_sidecar_fewer_routes() -> Result<()> {
    let Some(c) = cluster("operator_restarts").await? else {
        return Ok(());
    };
    c.install_crds().await?;
    let dir = tempfile::tempdir()?;
    let upstream = Upstream::start(&[Wire::OpenAi]).await?;
    c.kubectl_ns(&["apply", "-f", "-"], Some(&fillers(20))).await?.ok()?;
    c.kubectl_ns(&["apply", "-f", "-"], Some(&route(&upstream, "only")))
        .await?
        .ok()?;
    let certs = Certs::generate(dir.path())?;
    let mut operator = OperatorProcess::spawn(&c, &certs, "op-0", &[]).await?;
    operator.wait_ready(WITHIN).await?;
    // Every later incarnation listens where the sidecar was told the control plane is: the
    // address the first one reported (see `OperatorProcess::spawn_binary`).
    let control = operator.control_addr().to_owned();
    let pinned = ["--control-listen", control.as_str()];
    let pod = TestPod::create(&c, dir.path(), "bot", &[]).await?;
    let sidecar = ClusterSidecar::spawn(&pod, &operator.control_url, &certs.ca()).await?;
    sidecar.wait_served_by("chat", "only", WITHIN).await?;

    let mut outputs = Vec::new();
    for i in 1..=6 {
        // Alternately a crash (the lease must run out) and a graceful stop (released at once).
        if i % 2 == 0 {
            operator.process.kill()?;
        } else {
            operator.process.terminate().await?;
        }
        outputs.push(operator.process.output());
        operator = OperatorProcess::spawn(&c, &certs, &format!("op-{i}"), &pinned).await?;
        // The new operator has served the reconnected sidecar its snapshot.
        operator.process.wait_for_output("sidecar connected", WITHIN).await?;
        sidecar.wait_served_by("chat", "only", WITHIN).await?;
    }
    outputs.push(operator.process.output());
    // No incarnation judged the route against a Budget cache still being listed…
    for (i, output) in outputs.iter().enumerate() {
        ensure!(
            !output.contains("route not accepted"),
            "op-{i} refused the route:\n{output}"
        );
    }
    // …and the sidecar never applied a config without it.
    let applied = sidecar.process.output();
    ensure!(
        applied.contains("config applied") && !applied.contains("routes=0"),
        "the sidecar lost its route:\n{applied}"
    );
    Ok(())
}
