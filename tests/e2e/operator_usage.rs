//! Usage into status (DESIGN §6.3, §6.4) at the protocol level: reports sent with pods'
//! tokens, as sidecars send them, are applied exactly once per (pod, sequence), acked only
//! once status shows them, and survive an operator killed between taking a report and
//! writing it.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use kube::Api;
use serde_json::{Value, json};
use sluice_crds::{Budget, ModelRoute};
use sluice_tests::cluster::{TestCluster, cluster};
use sluice_tests::operator::{Certs, OperatorProcess, TestPod, UsagePoster};

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

fn report(c: &TestCluster, pod: &TestPod, sequence: u64, requests: u64, cost: &str) -> Value {
    report_for(c, pod, "chat", sequence, requests, cost)
}

fn report_for(c: &TestCluster, pod: &TestPod, route: &str, sequence: u64, requests: u64, cost: &str) -> Value {
    json!({
        "podUid": pod.uid, "sequence": sequence,
        "deltas": [{
            "route": {"namespace": c.namespace, "name": route}, "backend": "up", "model": "mock-ok",
            "outcome": "ok", "requests": requests, "inputTokens": 12 * requests, "cachedInputTokens": 4 * requests,
            "outputTokens": 5 * requests, "cost": cost, "failovers": 0, "estimated": false
        }]
    })
}

async fn budget_status(c: &TestCluster) -> Result<Value> {
    let budget = Api::<Budget>::namespaced(c.client.clone(), &c.namespace)
        .get("monthly")
        .await?;
    Ok(serde_json::to_value(budget.status)?)
}

async fn route_usage(c: &TestCluster) -> Result<Value> {
    let route = Api::<ModelRoute>::namespaced(c.client.clone(), &c.namespace)
        .get("chat")
        .await?;
    Ok(serde_json::to_value(route.status.and_then(|s| s.usage))?)
}

async fn setup(test: &str) -> Result<Option<(TestCluster, tempfile::TempDir, Certs)>> {
    let Some(c) = cluster(test).await? else {
        return Ok(None);
    };
    c.install_crds().await?;
    c.kubectl_ns(&["apply", "-f", "-"], Some(MANIFESTS)).await?.ok()?;
    let dir = tempfile::tempdir()?;
    let certs = Certs::generate(dir.path())?;
    Ok(Some((c, dir, certs)))
}

#[tokio::test]
async fn reports_of_two_pods_sum_exactly_into_status_and_a_resent_report_counts_once() -> Result<()> {
    let Some((c, dir, certs)) = setup("operator_usage_sum").await? else {
        return Ok(());
    };
    let operator = OperatorProcess::start(&c, &certs, "op-1").await?;
    let a = TestPod::create(&c, dir.path(), "pod-a", &[]).await?;
    let b = TestPod::create(&c, dir.path(), "pod-b", &[]).await?;
    let caller = UsagePoster::new(&certs, &operator.control_url)?;

    ensure!(caller.send(&a, &report(&c, &a, 1, 3, "0.060000")).await? == 1);
    // Acked only after the status write: no polling needed.
    ensure!(budget_status(&c).await?["spentUSD"] == "0.060000");
    ensure!(caller.send(&b, &report(&c, &b, 1, 2, "0.040000")).await? == 1);
    ensure!(caller.send(&a, &report(&c, &a, 2, 1, "0.020000")).await? == 2);
    // A resent report (its ack was lost) is recognised: acked, not counted again.
    ensure!(caller.send(&a, &report(&c, &a, 1, 3, "0.060000")).await? == 2);
    ensure!(caller.send(&b, &report(&c, &b, 1, 2, "0.040000")).await? == 1);

    let status = budget_status(&c).await?;
    ensure!(status["spentUSD"] == "0.120000", "{status}");
    ensure!(status["remainingUSD"] == "9.880000", "{status}");
    ensure!(status["byRoute"] == json!({"chat": "0.120000"}), "{status}");
    ensure!(status["byModel"] == json!({"mock-ok": "0.120000"}), "{status}");
    let start = status["periodStart"].as_str().unwrap_or_default();
    ensure!(
        start.ends_with("T00:00:00+01:00") || start.ends_with("T00:00:00+02:00"),
        "{status}"
    );
    let usage = route_usage(&c).await?;
    ensure!(
        usage
            == json!({"requests": 6, "errors": 0, "failovers": 0, "cacheHits": 0,
                        "inputTokens": 72, "outputTokens": 30, "costUSD": "0.120000"}),
        "{usage}"
    );
    // `kubectl get budgets` shows it.
    let table = c.kubectl_ns(&["get", "budgets"], None).await?.ok()?;
    ensure!(table.contains("0.120000") && table.contains("9.880000"), "{table}");
    let metrics = operator.metrics().await?;
    ensure!(
        metrics.contains(r#"sluice_operator_usage_reports_total{result="duplicate"} 2"#),
        "{metrics}"
    );
    Ok(())
}

/// A route of the budget above that selects only pods labelled `app: bot`.
const BOTS_ROUTE: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {name: bots}
spec:
  models: [bots]
  podSelector: {matchLabels: {app: bot}}
  budgetRef: {name: monthly}
  backends:
  - name: up
    provider: openai-compatible
    baseUrl: "http://127.0.0.1:9/v1"
    model: mock-ok
    pricing: {inputPerMTok: "1000.00", outputPerMTok: "2000.00", cachedInputPerMTok: "500.00"}
"#;

#[tokio::test]
async fn a_pod_posting_usage_for_another_pods_route_gets_403_and_spend_is_unchanged() -> Result<()> {
    let Some((c, dir, certs)) = setup("operator_usage_scope").await? else {
        return Ok(());
    };
    c.kubectl_ns(&["apply", "-f", "-"], Some(BOTS_ROUTE)).await?.ok()?;
    let operator = OperatorProcess::start(&c, &certs, "op-1").await?;
    let bot = TestPod::create(&c, dir.path(), "pod-bot", &[("app", "bot")]).await?;
    let intruder = TestPod::create(&c, dir.path(), "pod-intruder", &[("app", "intruder")]).await?;
    let caller = UsagePoster::new(&certs, &operator.control_url)?;

    // The legitimate spend, in status once acked.
    ensure!(
        caller
            .send(&bot, &report_for(&c, &bot, "bots", 1, 3, "0.060000"))
            .await?
            == 1
    );
    ensure!(budget_status(&c).await?["spentUSD"] == "0.060000");

    // The intruder, with its own valid token, tries to spend the budget through `bots`, which
    // does not select it: refused whole, the route and the budget named.
    let hostile = json!({
        "podUid": intruder.uid, "sequence": 1,
        "deltas": [
            report_for(&c, &intruder, "chat", 1, 1, "0.010000")["deltas"][0],
            report_for(&c, &intruder, "bots", 1, 1, "9.000000")["deltas"][0],
        ]
    });
    let (status, body) = caller.post(&intruder, &hostile).await?;
    ensure!(status == 403, "{status} {body}");
    let message = serde_json::from_str::<Value>(&body)?["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(
        message
            == format!(
                "route {}/bots does not select pod pod-intruder and was never sent to it, so it may not spend \
                 from Budget monthly: a pod reports usage only for its own routes; the report is refused, \
                 nothing of it applied",
                c.namespace
            ),
        "{message}"
    );

    // A later legitimate report is acked only once status shows it: a flush has passed since
    // the refusal, and the spend is exactly the legitimate one.
    ensure!(
        caller
            .send(&bot, &report_for(&c, &bot, "bots", 2, 1, "0.020000"))
            .await?
            == 2
    );
    let status = budget_status(&c).await?;
    ensure!(status["spentUSD"] == "0.080000", "{status}");
    ensure!(status["byRoute"] == json!({"bots": "0.080000"}), "{status}");
    // The refusal cost the intruder nothing of its own: its sequence 1 was never applied, and
    // its report for a route that selects it (`chat` selects every pod) goes through.
    ensure!(caller.send(&intruder, &report(&c, &intruder, 1, 1, "0.010000")).await? == 1);
    let status = budget_status(&c).await?;
    ensure!(status["spentUSD"] == "0.090000", "{status}");
    ensure!(
        status["byRoute"] == json!({"bots": "0.080000", "chat": "0.010000"}),
        "{status}"
    );
    let bots = Api::<ModelRoute>::namespaced(c.client.clone(), &c.namespace)
        .get("bots")
        .await?;
    let usage = serde_json::to_value(bots.status.and_then(|s| s.usage))?;
    ensure!(usage["requests"] == 4 && usage["costUSD"] == "0.080000", "{usage}");
    let metrics = operator.metrics().await?;
    ensure!(
        metrics.contains(r#"sluice_operator_usage_reports_total{result="refused"} 1"#),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn a_report_taken_by_an_operator_killed_before_writing_it_is_applied_once_after_restart() -> Result<()> {
    let Some((c, dir, certs)) = setup("operator_usage_crash").await? else {
        return Ok(());
    };
    // This replica takes reports but writes status only once an hour.
    let mut slow = OperatorProcess::spawn(&c, &certs, "op-1", &["--status-interval", "1h"]).await?;
    slow.wait_ready(Duration::from_secs(60)).await?;
    let a = TestPod::create(&c, dir.path(), "pod-a", &[]).await?;
    let body = report(&c, &a, 1, 5, "0.100000");
    let caller = UsagePoster::new(&certs, &slow.control_url)?;
    let pending = {
        let (caller, a, body) = (UsagePoster::new(&certs, &slow.control_url)?, a.clone(), body.clone());
        tokio::spawn(async move { caller.send(&a, &body).await })
    };
    drop(caller);
    slow.process
        .wait_for_output("usage report queued", Duration::from_secs(30))
        .await?;
    slow.process.kill()?;
    ensure!(pending.await?.is_err(), "the report must not have been acked");
    ensure!(budget_status(&c).await?["spentUSD"].as_str().unwrap_or("0.000000") == "0.000000");

    // The sidecar resends the unacked report to the next operator: applied once.
    let next = OperatorProcess::start(&c, &certs, "op-2").await?;
    // Ready means serving the webhook; a replica that started as a follower serves sidecars only
    // once the dead one's lease has run out and it leads.
    next.process
        .wait_for_output("serving sidecars", Duration::from_secs(60))
        .await?;
    let caller = UsagePoster::new(&certs, &next.control_url)?;
    ensure!(caller.send(&a, &body).await? == 1);
    ensure!(caller.send(&a, &body).await? == 1);
    ensure!(budget_status(&c).await?["spentUSD"] == "0.100000");

    // And once more across another restart: the applied sequence is durable with the total.
    drop(next);
    let last = OperatorProcess::start(&c, &certs, "op-3").await?;
    last.process
        .wait_for_output("serving sidecars", Duration::from_secs(60))
        .await?;
    let caller = UsagePoster::new(&certs, &last.control_url)?;
    ensure!(caller.send(&a, &body).await? == 1);
    ensure!(caller.send(&a, &report(&c, &a, 2, 1, "0.020000")).await? == 2);
    ensure!(budget_status(&c).await?["spentUSD"] == "0.120000");
    ensure!(route_usage(&c).await?["requests"] == 6);
    Ok(())
}

/// A budget and a route whose only backend is the in-test upstream. Only output tokens are
/// priced, and requests cap them at what the upstream answers (5), so a request's worst case
/// is its exact cost: 5 × $4000 per million = $0.020000.
fn priced_manifests(upstream: &sluice_tests::upstream::Upstream, limit: &str) -> String {
    format!(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {{name: monthly}}
spec: {{limitUSD: "{limit}", period: monthly, enforcement: hard}}
---
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: chat}}
spec:
  models: [chat]
  budgetRef: {{name: monthly}}
  backends:
  - name: up
    provider: openai-compatible
    baseUrl: "http://{}/v1"
    model: mock-ok
    pricing: {{inputPerMTok: "0", outputPerMTok: "4000.00"}}
"#,
        upstream.addr
    )
}

/// A cluster whose namespace holds [`priced_manifests`] with a Budget of `limit`, and the
/// upstream, certificates and scratch directory the tests around it share.
struct Priced {
    c: TestCluster,
    upstream: sluice_tests::upstream::Upstream,
    manifests: String,
    dir: tempfile::TempDir,
    certs: Certs,
}

async fn priced_cluster(test: &str, limit: &str) -> Result<Option<Priced>> {
    let Some(c) = cluster(test).await? else {
        return Ok(None);
    };
    c.install_crds().await?;
    let upstream = sluice_tests::upstream::Upstream::start(&[sluice_tests::upstream::Wire::OpenAi]).await?;
    let manifests = priced_manifests(&upstream, limit);
    c.kubectl_ns(&["apply", "-f", "-"], Some(&manifests)).await?.ok()?;
    let dir = tempfile::tempdir()?;
    let certs = Certs::generate(dir.path())?;
    Ok(Some(Priced {
        c,
        upstream,
        manifests,
        dir,
        certs,
    }))
}

/// Sends one chat request capped at 5 completion tokens: (status, cost header, error code).
async fn priced_chat(sidecar: &sluice_tests::operator::ClusterSidecar) -> Result<(u16, String, String)> {
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", sidecar.base_url()))
        .json(&json!({"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?;
    let status = response.status().as_u16();
    let cost = response
        .headers()
        .get("x-sluice-cost-usd")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.unwrap_or_default();
    Ok((
        status,
        cost,
        body["error"]["code"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn micros(usd: &str) -> u64 {
    usd.parse::<sluice_crds::MicroUsd>().map(|m| m.micros()).unwrap_or(0)
}

async fn wait_config(sidecar: &sluice_tests::operator::ClusterSidecar) -> Result<()> {
    sluice_tests::operator::eventually("the sidecar's first config", Duration::from_secs(60), || async {
        sidecar
            .config()
            .await
            .filter(|c| c["routes"].as_array().is_some_and(|r| !r.is_empty()))
    })
    .await
    .map(|_| ())
}

async fn wait_spent(c: &TestCluster, expected: &str) -> Result<()> {
    sluice_tests::operator::eventually(&format!("spentUSD = {expected}"), Duration::from_secs(60), || async {
        let status = budget_status(c).await.ok()?;
        (status["spentUSD"] == expected).then_some(())
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}; last status: {:?}",
            futures::executor::block_on(async { None::<()> })
        )
    })
}

#[tokio::test]
async fn spend_through_two_real_sidecars_sums_exactly_and_a_restarted_sidecar_counts_nothing_twice() -> Result<()> {
    let Some(Priced {
        c,
        upstream: _upstream, // kept alive: it answers the sidecars
        dir,
        certs,
        ..
    }) = priced_cluster("operator_usage_sidecars", "10.00").await?
    else {
        return Ok(());
    };
    let operator = OperatorProcess::start(&c, &certs, "op-1").await?;
    let a = TestPod::create(&c, dir.path(), "pod-a", &[]).await?;
    let b = TestPod::create(&c, dir.path(), "pod-b", &[]).await?;
    let mut sidecar_a = sluice_tests::operator::ClusterSidecar::spawn(&a, &operator.control_url, &certs.ca()).await?;
    let sidecar_b = sluice_tests::operator::ClusterSidecar::spawn(&b, &operator.control_url, &certs.ca()).await?;
    wait_config(&sidecar_a).await?;
    wait_config(&sidecar_b).await?;

    let mut total = 0;
    for (sidecar, n) in [(&sidecar_a, 3), (&sidecar_b, 2)] {
        for _ in 0..n {
            let (status, cost, code) = priced_chat(sidecar).await?;
            ensure!(status == 200, "{status} {code}");
            ensure!(cost == "0.020000", "cost header {cost:?}");
            total += micros(&cost);
        }
    }
    ensure!(total == 100_000);
    wait_spent(&c, "0.100000").await?;

    // A crash of sidecar A: its acked usage is not applied again when it comes back (its
    // unacked report, if the crash beat the ack, is resent and recognised).
    sidecar_a.process.kill()?;
    let sidecar_a = sluice_tests::operator::ClusterSidecar::spawn(&a, &operator.control_url, &certs.ca()).await?;
    wait_config(&sidecar_a).await?;
    let (status, cost, _) = priced_chat(&sidecar_a).await?;
    ensure!(status == 200 && cost == "0.020000");
    wait_spent(&c, "0.120000").await?;
    let usage = route_usage(&c).await?;
    ensure!(usage["requests"] == 6 && usage["costUSD"] == "0.120000", "{usage}");
    Ok(())
}

#[tokio::test]
async fn five_sidecars_driven_at_once_never_spend_past_a_hard_limit() -> Result<()> {
    // $0.30: fifteen requests of $0.02.
    let Some(Priced {
        c,
        upstream: _upstream, // kept alive: it answers the sidecars
        dir,
        certs,
        ..
    }) = priced_cluster("operator_usage_hard_limit", "0.30").await?
    else {
        return Ok(());
    };
    let operator = OperatorProcess::start(&c, &certs, "op-1").await?;
    let mut pods = Vec::new();
    for i in 0..5 {
        pods.push(TestPod::create(&c, dir.path(), &format!("pod-{i}"), &[]).await?);
    }
    // The budget is shared among the pods the operator knows: the first sidecar to connect
    // would otherwise be sized for fewer pods than there are, leaving the last with nothing.
    let routes = Api::<ModelRoute>::namespaced(c.client.clone(), &c.namespace);
    sluice_tests::operator::eventually("the operator seeing five pods", Duration::from_secs(60), || async {
        let desired = routes.get("chat").await.ok()?.status?.sidecars?.desired;
        (desired == 5).then_some(())
    })
    .await?;
    let mut sidecars = Vec::new();
    for pod in &pods {
        sidecars.push(sluice_tests::operator::ClusterSidecar::spawn(pod, &operator.control_url, &certs.ca()).await?);
    }
    for s in &sidecars {
        wait_config(s).await?;
    }
    // Every sidecar has been granted its allowance before the load starts.
    sluice_tests::operator::eventually("allowances granted", Duration::from_secs(60), || async {
        let mut all = true;
        for s in &sidecars {
            let config = s.config().await?;
            all &= config["budgets"][0]["allowanceUsd"]
                .as_str()
                .is_some_and(|a| a != "0.000000");
        }
        all.then_some(())
    })
    .await?;

    let results = futures::future::join_all(sidecars.iter().map(|s| async move {
        let mut out = Vec::new();
        for _ in 0..8 {
            out.push(priced_chat(s).await);
        }
        out
    }))
    .await;
    let mut spent = 0;
    let mut served = 0;
    for r in results.into_iter().flatten() {
        let (status, cost, code) = r?;
        match status {
            200 => {
                served += 1;
                spent += micros(&cost);
            }
            // A spent slice is "retry shortly" until the sidecar hears the budget is spent.
            429 => ensure!(
                code == "budget_exceeded" || code == "rate_limited",
                "429 with code {code:?}"
            ),
            other => anyhow::bail!("unexpected status {other} ({code})"),
        }
    }
    // Every pod was granted an equal $0.06 and nothing is free beyond it, so each serves
    // exactly three requests: the budget is spent to the micro-dollar, never past it, and
    // status agrees.
    eprintln!("hard limit: {served} requests served, {spent} micro-dollars");
    ensure!(
        spent == 300_000 && served == 15,
        "spent {spent} micro-dollars in {served} requests"
    );
    wait_spent(&c, "0.300000").await?;
    let status = budget_status(&c).await?;
    let exhausted = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Exhausted").cloned())
        .context("no Exhausted condition")?;
    ensure!(exhausted["status"] == "True", "{exhausted}");
    let threshold = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "ThresholdReached").cloned())
        .context("no ThresholdReached condition")?;
    ensure!(
        threshold["status"] == "True" && threshold["message"].as_str().unwrap_or_default().starts_with("100%"),
        "{threshold}"
    );
    // Events are published after the status write that the wait above saw.
    let args = [
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=monthly",
        "-o",
        "json",
    ];
    sluice_tests::operator::eventually(
        "ThresholdCrossed and Exhausted events",
        Duration::from_secs(60),
        || async {
            let events = c.kubectl_ns(&args, None).await.ok()?.ok().ok()?;
            (events.contains("ThresholdCrossed") && events.contains("Exhausted")).then_some(())
        },
    )
    .await?;
    let metrics = operator.metrics().await?;
    ensure!(
        metrics.contains("sluice_operator_budget_outstanding_allowance_usd"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn with_its_operator_away_a_sidecar_keeps_serving_then_resyncs_and_reports_each_request_once() -> Result<()> {
    let Some(Priced {
        c,
        upstream,
        manifests,
        dir,
        certs,
    }) = priced_cluster("operator_usage_away", "10.00").await?
    else {
        return Ok(());
    };
    let mut operator = OperatorProcess::spawn(&c, &certs, "op-1", &[]).await?;
    // The restarted operator comes back at this address: the sidecar keeps its URL.
    let control = operator.control_addr().to_owned();
    let pinned = ["--control-listen", control.as_str()];
    operator.wait_ready(Duration::from_secs(60)).await?;
    let pod = TestPod::create(&c, dir.path(), "pod-a", &[]).await?;
    let sidecar = sluice_tests::operator::ClusterSidecar::spawn(&pod, &operator.control_url, &certs.ca()).await?;
    wait_config(&sidecar).await?;
    for _ in 0..2 {
        ensure!(priced_chat(&sidecar).await?.0 == 200);
    }
    wait_spent(&c, "0.040000").await?;

    // Away: the sidecar serves from its last config (fail-static) and keeps what it spends.
    operator.process.kill()?;
    for _ in 0..3 {
        let (status, cost, code) = priced_chat(&sidecar).await?;
        ensure!(status == 200 && cost == "0.020000", "{status} {cost} {code}");
    }
    // A change made while it is away reaches the sidecar once the operator is back.
    let renamed = manifests.replace("  - name: up\n", "  - name: up-2\n");
    ensure!(renamed != manifests);
    c.kubectl_ns(&["apply", "-f", "-"], Some(&renamed)).await?.ok()?;
    ensure!(budget_status(&c).await?["spentUSD"] == "0.040000");

    let mut operator = OperatorProcess::spawn(&c, &certs, "op-2", &pinned).await?;
    operator.wait_ready(Duration::from_secs(60)).await?;
    // Waiting on /config, not on requests: every request would count.
    sluice_tests::operator::eventually("the renamed backend in /config", Duration::from_secs(60), || async {
        sidecar.config().await.filter(|c| c.to_string().contains("\"up-2\""))
    })
    .await?;
    let (status, cost, code) = priced_chat(&sidecar).await?;
    ensure!(
        status == 200 && cost == "0.020000",
        "after the resync: {status} {cost} {code}"
    );
    // Two before, three while away, one after the resync: each once.
    wait_spent(&c, "0.120000").await?;
    // A few more report intervals change nothing: nothing is applied twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(budget_status(&c).await?["spentUSD"] == "0.120000");
    let usage = route_usage(&c).await?;
    ensure!(
        usage["requests"] == 6 && usage["costUSD"] == "0.120000",
        "{usage}\n{}",
        operator.process.output()
    );
    ensure!(upstream.requests().len() == 6);
    Ok(())
}

#[tokio::test]
async fn a_sidecar_stopped_with_sigterm_reports_its_last_usage_before_it_exits() -> Result<()> {
    let Some(Priced {
        c,
        upstream: _upstream, // kept alive: it answers the sidecars
        dir,
        certs,
        ..
    }) = priced_cluster("operator_usage_sigterm", "10.00").await?
    else {
        return Ok(());
    };
    let operator = OperatorProcess::start(&c, &certs, "op-1").await?;
    let pod = TestPod::create(&c, dir.path(), "pod-a", &[]).await?;
    // No periodic report within the test: only the shutdown flush can bring the usage.
    let quiet = [("SLUICE_USAGE_INTERVAL", "1h")];
    let mut sidecar =
        sluice_tests::operator::ClusterSidecar::spawn_with_env(&pod, &operator.control_url, &certs.ca(), &quiet)
            .await?;
    wait_config(&sidecar).await?;
    for _ in 0..3 {
        ensure!(priced_chat(&sidecar).await?.0 == 200);
    }
    ensure!(budget_status(&c).await?["spentUSD"] != "0.060000");
    sidecar.process.terminate().await?;
    wait_spent(&c, "0.060000").await?;
    let usage = route_usage(&c).await?;
    ensure!(usage["requests"] == 3, "{usage}\n{}", sidecar.process.output());
    Ok(())
}

/// The sidecar's saved report queue (`usage.json` in its state directory): the requests and
/// micro-dollars it holds.
fn queued(pod: &TestPod) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(pod.state_dir.join("usage.json")).ok()?;
    let state: Value = serde_json::from_str(&text).ok()?;
    let deltas = state["queue"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["deltas"].as_array().cloned().unwrap_or_default());
    Some(deltas.fold((0, 0), |(n, cost), d| {
        (
            n + d["requests"].as_u64().unwrap_or(0),
            cost + micros(d["cost"].as_str().unwrap_or("0")),
        )
    }))
}

#[tokio::test]
async fn a_sidecar_killed_holding_unreported_usage_while_its_operator_is_away_reports_each_request_once() -> Result<()>
{
    let Some(Priced {
        c,
        upstream,
        dir,
        certs,
        ..
    }) = priced_cluster("operator_usage_killed_away", "10.00").await?
    else {
        return Ok(());
    };
    let mut operator = OperatorProcess::spawn(&c, &certs, "op-1", &[]).await?;
    let control = operator.control_addr().to_owned();
    let pinned = ["--control-listen", control.as_str()];
    operator.wait_ready(Duration::from_secs(60)).await?;
    let pod = TestPod::create(&c, dir.path(), "pod-a", &[]).await?;
    let mut sidecar = sluice_tests::operator::ClusterSidecar::spawn(&pod, &operator.control_url, &certs.ca()).await?;
    wait_config(&sidecar).await?;
    let (status, cost, code) = priced_chat(&sidecar).await?;
    ensure!(status == 200, "{status} {code}");
    let mut total = micros(&cost);
    wait_spent(&c, "0.020000").await?;
    sluice_tests::operator::eventually("the first report acked", Duration::from_secs(60), || {
        let held = queued(&pod);
        async move { (held == Some((0, 0))).then_some(()) }
    })
    .await?;

    // Away: what the sidecar spends now cannot be reported.
    operator.process.kill()?;
    let mut spend = |cost: &str| -> Result<()> {
        ensure!(cost == "0.020000", "cost header {cost:?}");
        total += micros(cost);
        Ok(())
    };
    for _ in 0..3 {
        let (status, cost, code) = priced_chat(&sidecar).await?;
        ensure!(status == 200, "{status} {code}");
        spend(&cost)?;
    }
    // Cut into the saved queue although nobody takes reports...
    sluice_tests::operator::eventually(
        "three requests in the saved report queue",
        Duration::from_secs(60),
        || {
            let held = queued(&pod);
            async move { (held == Some((3, 60_000))).then_some(()) }
        },
    )
    .await?;
    // ...and two more settled just before the kill, not cut yet (only in the journal).
    for _ in 0..2 {
        let (status, cost, code) = priced_chat(&sidecar).await?;
        ensure!(status == 200, "{status} {code}");
        spend(&cost)?;
    }
    sidecar.process.kill()?;
    ensure!(total == 120_000, "{total}");

    // The container restarts on the same state directory, the operator comes back.
    let sidecar = sluice_tests::operator::ClusterSidecar::spawn(&pod, &operator.control_url, &certs.ca()).await?;
    let mut operator = OperatorProcess::spawn(&c, &certs, "op-2", &pinned).await?;
    operator.wait_ready(Duration::from_secs(60)).await?;
    let expected = sluice_crds::MicroUsd::new(total).to_string();
    wait_spent(&c, &expected).await?;
    // Everything acked: nothing is left to be sent again, so the figure is final.
    sluice_tests::operator::eventually("the sidecar's queue acked", Duration::from_secs(60), || {
        let held = queued(&pod);
        async move { (held == Some((0, 0))).then_some(()) }
    })
    .await?;
    let status = budget_status(&c).await?;
    ensure!(status["spentUSD"] == expected.as_str(), "{status}");
    let usage = route_usage(&c).await?;
    ensure!(
        usage["requests"] == 6 && usage["costUSD"] == expected.as_str(),
        "{usage}\n{}",
        sidecar.process.output()
    );
    ensure!(upstream.requests().len() == 6);
    Ok(())
}
