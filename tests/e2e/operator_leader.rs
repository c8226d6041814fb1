//! Two operator replicas (DESIGN §6.4): one leads through a Lease and the other is not ready;
//! when the leader dies the other takes over, serves the sidecars and pushes changes; a
//! leader stopped with SIGTERM hands over at once by releasing the lease.

use std::time::Duration;

use anyhow::{Result, ensure};
use sluice_crds::{Budget, MicroUsd};
use sluice_tests::cluster::cluster;
use sluice_tests::operator::{Certs, ClusterSidecar, OperatorProcess, TestPod, eventually, lease_holder};
use sluice_tests::upstream::Upstream;

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
    let upstream = Upstream::start().await?;
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
    ensure!(!second.is_ready().await, "a follower must not be ready");

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
    eventually("the second replica ready", WITHIN, || async {
        second.is_ready().await.then_some(())
    })
    .await?;
    ensure!(lease_holder(&c.client, &c.namespace, LEASE).await.as_deref() == Some("op-2"));
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
    third
        .process
        .wait_for_output("waiting to become the leader", WITHIN)
        .await?;
    second.process.terminate().await?;
    ensure!(
        second.process.output().contains("released the leader lease"),
        "{}",
        second.process.output()
    );
    eventually("the third replica ready", WITHIN, || async {
        third.is_ready().await.then_some(())
    })
    .await?;
    ensure!(lease_holder(&c.client, &c.namespace, LEASE).await.as_deref() == Some("op-3"));
    Ok(())
}
