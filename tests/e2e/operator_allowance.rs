//! Allowances that behave like one budget (DESIGN §6.3), through a real kube-apiserver, the
//! real operator and real sidecars: a sidecar whose slice runs out asks for more and is served
//! after the top-up; only a budget that is spent answers `budget_exceeded`, with a Retry-After
//! that runs to the period's end; an idle pod's slice goes back to the busy one.
//!
//! Every request is priced exactly: only output tokens cost, and a request capped at the 5
//! tokens the upstream answers costs $0.020000, its worst case being its cost.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use kube::Api;
use serde_json::{Value, json};
use sluice_crds::{Budget, MicroUsd, ModelRoute, Period};
use sluice_tests::cluster::{TestCluster, cluster};
use sluice_tests::operator::{Certs, ClusterSidecar, OperatorProcess, TestPod, eventually};
use sluice_tests::upstream::{Upstream, Wire};

/// How long a test waits for something eventual: a bound, never a target.
const EVENTUALLY: Duration = Duration::from_secs(60);

/// A request's exact cost: 5 output tokens at $4,000 per million.
const REQUEST: u64 = 20_000;

/// The budget and a route to the upstream's `model` at `output_price` per million output tokens.
fn manifests(upstream: &Upstream, limit: &str, model: &str, output_price: &str) -> String {
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
    model: {model}
    pricing: {{inputPerMTok: "0", outputPerMTok: "{output_price}"}}
"#,
        upstream.addr
    )
}

/// A namespace with the budget of `limit` and its route, `pods` pods (the budget is shared
/// among them all), and an operator with `operator_args`.
struct Shared {
    c: TestCluster,
    _upstream: Upstream,
    _dir: tempfile::TempDir,
    certs: Certs,
    operator: OperatorProcess,
    pods: Vec<TestPod>,
}

async fn shared(test: &str, limit: &str, pods: usize, operator_args: &[&str]) -> Result<Option<Shared>> {
    shared_with(test, limit, ("mock-ok", "4000.00"), pods, operator_args).await
}

async fn shared_with(
    test: &str,
    limit: &str,
    (model, output_price): (&str, &str),
    pods: usize,
    operator_args: &[&str],
) -> Result<Option<Shared>> {
    let Some(c) = cluster(test).await? else {
        return Ok(None);
    };
    c.install_crds().await?;
    let upstream = Upstream::start(&[Wire::OpenAi]).await?;
    c.kubectl_ns(
        &["apply", "-f", "-"],
        Some(&manifests(&upstream, limit, model, output_price)),
    )
    .await?
    .ok()?;
    let dir = tempfile::tempdir()?;
    let certs = Certs::generate(dir.path())?;
    let operator = OperatorProcess::spawn(&c, &certs, "op-1", operator_args).await?;
    let mut created = Vec::new();
    for i in 0..pods {
        created.push(TestPod::create(&c, dir.path(), &format!("pod-{i}"), &[]).await?);
    }
    // Shares are sized over the pods the operator knows: wait until it knows them all.
    let routes = Api::<ModelRoute>::namespaced(c.client.clone(), &c.namespace);
    let expected = i64::try_from(pods)?;
    eventually("the operator seeing every pod", EVENTUALLY, || async {
        let desired = routes.get("chat").await.ok()?.status?.sidecars?.desired;
        (i64::from(desired) == expected).then_some(())
    })
    .await?;
    Ok(Some(Shared {
        c,
        _upstream: upstream,
        _dir: dir,
        certs,
        operator,
        pods: created,
    }))
}

impl Shared {
    /// Starts the sidecar of pod `i` and waits for its first allowance.
    async fn sidecar(&self, i: usize) -> Result<ClusterSidecar> {
        let sidecar = ClusterSidecar::spawn(&self.pods[i], &self.operator.control_url, &self.certs.ca()).await?;
        eventually("an allowance granted", EVENTUALLY, || async {
            allowance(&sidecar).await.filter(|a| *a > 0)
        })
        .await?;
        Ok(sidecar)
    }

    async fn spent(&self) -> Result<Value> {
        let budget = Api::<Budget>::namespaced(self.c.client.clone(), &self.c.namespace)
            .get("monthly")
            .await?;
        Ok(serde_json::to_value(budget.status)?["spentUSD"].clone())
    }

    /// Waits until status shows `micros` spent.
    async fn wait_spent(&self, micros: u64) -> Result<()> {
        let expected = MicroUsd::new(micros).to_string();
        eventually(&format!("spentUSD = {expected}"), EVENTUALLY, || async {
            (self.spent().await.ok()? == expected.as_str()).then_some(())
        })
        .await
    }
}

/// The sidecar's allowance as its `/config` shows it, in micro-dollars.
async fn allowance(sidecar: &ClusterSidecar) -> Option<u64> {
    let config = sidecar.config().await?;
    let text = config["budgets"][0]["allowanceUsd"].as_str()?.to_owned();
    text.parse::<MicroUsd>().ok().map(MicroUsd::micros)
}

/// What one request got.
#[derive(Debug)]
struct Answer {
    status: u16,
    cost: String,
    code: String,
    retry_after: Option<u64>,
}

/// One chat request capped at 5 completion tokens.
async fn chat(sidecar: &ClusterSidecar) -> Result<Answer> {
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", sidecar.base_url()))
        .timeout(Duration::from_secs(30))
        .json(&json!({"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cost = header("x-sluice-cost-usd").unwrap_or_default();
    let retry_after = header("retry-after").and_then(|v| v.parse().ok());
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    Ok(Answer {
        status,
        cost,
        code: body["error"]["code"].as_str().unwrap_or_default().to_owned(),
        retry_after,
    })
}

/// Sends requests until one is refused as `budget_exceeded`; before, only "retry in a second"
/// (429 `rate_limited`) is allowed. The answer, with the times just before and after it.
async fn until_exhausted(sidecar: &ClusterSidecar) -> Result<(Answer, jiff::Timestamp, jiff::Timestamp)> {
    let (answer, before, after) = eventually("budget_exceeded", EVENTUALLY, || async {
        let before = jiff::Timestamp::now();
        let answer = chat(sidecar).await.ok()?;
        let after = jiff::Timestamp::now();
        if answer.status == 429 && answer.code == "rate_limited" && answer.retry_after == Some(1) {
            return None;
        }
        Some((answer, before, after))
    })
    .await?;
    ensure!(answer.status == 429 && answer.code == "budget_exceeded", "{answer:?}");
    Ok((answer, before, after))
}

#[tokio::test]
async fn a_sidecar_whose_slice_runs_out_is_served_after_a_top_up_not_refused() -> Result<()> {
    // $0.40 over four pods, two with sidecars: each is granted $0.10 (five requests), and
    // $0.20 stays free for whoever needs it.
    let Some(s) = shared("allowance_top_up", "0.40", 4, &[]).await? else {
        return Ok(());
    };
    let a = s.sidecar(0).await?;
    let b = s.sidecar(1).await?;
    ensure!(allowance(&a).await == Some(100_000), "{:?}", allowance(&a).await);
    // Ten requests through `a`, one after the other: twice its slice, all served. Its slice
    // is topped up out of the free money (asked early, or while a request waits).
    for i in 0..10 {
        let answer = chat(&a).await?;
        ensure!(
            answer.status == 200 && answer.cost == "0.020000",
            "request {i}: {answer:?}"
        );
    }
    let granted = allowance(&a).await.context("no config")?;
    ensure!(granted >= 10 * REQUEST, "allowance of a: {granted}");
    // `b` still has its own slice: the top-up came out of free money, not out of `b`'s.
    ensure!(allowance(&b).await == Some(100_000));
    let answer = chat(&b).await?;
    ensure!(answer.status == 200, "{answer:?}");
    s.wait_spent(11 * REQUEST).await?;
    // The call is the pod's, like every control call: no token, no answer; another
    // namespace's budget, refused.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(s.certs.ca())?)?;
    let http = reqwest::Client::builder().tls_certs_only([ca]).build()?;
    let url = format!("{}/v1/allowance", s.operator.control_url);
    let ask = |namespace: &str| json!({"budget": {"namespace": namespace, "name": "monthly"}, "heldUSD": "0.10", "wantedUSD": "0.10"});
    let status = http.post(&url).json(&ask(&s.c.namespace)).send().await?.status();
    ensure!(status == 401, "an ask without a token: {status}");
    let token = std::fs::read_to_string(&s.pods[0].token_file)?;
    let status = http
        .post(&url)
        .bearer_auth(token.trim())
        .json(&ask("elsewhere"))
        .send()
        .await?
        .status();
    ensure!(status == 403, "an ask for another namespace's budget: {status}");
    let metrics = s.operator.metrics().await?;
    ensure!(
        metrics.contains("sluice_operator_budget_outstanding_allowance_usd"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn an_exhausted_budget_answers_budget_exceeded_with_retry_after_at_the_period_end() -> Result<()> {
    // $0.08 over two pods: $0.04 each, two requests each, and then the budget is spent.
    let Some(s) = shared("allowance_exhausted", "0.08", 2, &[]).await? else {
        return Ok(());
    };
    let a = s.sidecar(0).await?;
    let b = s.sidecar(1).await?;
    for sidecar in [&a, &b] {
        for _ in 0..2 {
            let answer = chat(sidecar).await?;
            ensure!(answer.status == 200, "{answer:?}");
        }
    }
    s.wait_spent(4 * REQUEST).await?;
    // Until the sidecar hears that the budget is spent, it may only say its slice is out
    // (429 rate_limited, retry in a second); never may it serve.
    let (answer, before, after) = until_exhausted(&a).await?;
    // Retry-After: the seconds from the sidecar's now to the first of next month (UTC).
    let end = sluice_crds::period::window_in(Period::Monthly, "UTC", after)?
        .end
        .context("a monthly period ends")?;
    let retry_after = answer.retry_after.context("no Retry-After")?;
    let earliest = u64::try_from(end.as_second() - after.as_second())?;
    let latest = u64::try_from(end.as_second() - before.as_second())?;
    ensure!(
        (earliest..=latest).contains(&retry_after),
        "Retry-After {retry_after} not in {earliest}..={latest}"
    );
    // The other sidecar says the same, and nothing more was spent.
    until_exhausted(&b).await?;
    ensure!(s.spent().await? == "0.080000");
    Ok(())
}

#[tokio::test]
async fn an_idle_pods_slice_is_reclaimed_and_the_busy_one_gets_it() -> Result<()> {
    // $0.20 over two pods, $0.10 each; sizing windows of a second, so a pod that spends
    // nothing for three of them has its slice taken back.
    let Some(s) = shared("allowance_idle", "0.20", 2, &["--sizing-window", "1s"]).await? else {
        return Ok(());
    };
    let busy = s.sidecar(0).await?;
    let idle = s.sidecar(1).await?;
    // `busy` spends the whole budget, a request at a time: past its own $0.10 only with the
    // slice `idle` never uses. Meanwhile its requests are only ever told to retry shortly.
    let served = std::cell::Cell::new(0);
    let unexpected = eventually("the whole budget spent through one pod", EVENTUALLY, || async {
        let answer = chat(&busy).await.ok()?;
        match (answer.status, answer.code.as_str()) {
            (200, _) => served.set(served.get() + 1),
            (429, "rate_limited") => {}
            _ => return Some(Some(answer)),
        }
        (served.get() == 10).then_some(None)
    })
    .await?;
    ensure!(unexpected.is_none(), "{unexpected:?}");
    eventually("the idle pod's slice taken back", EVENTUALLY, || async {
        (allowance(&idle).await? == 0).then_some(())
    })
    .await?;
    s.wait_spent(10 * REQUEST).await?;
    until_exhausted(&idle).await?;
    Ok(())
}

#[tokio::test]
async fn a_stream_past_its_slice_waits_for_a_top_up_and_ends_whole() -> Result<()> {
    // $4.00 over four pods, one with a sidecar: its slice is $1.00 and $3.00 stay free. The
    // answer is a tool call of ~10,000 tokens at $100 per million (~$1.0007): past the slice,
    // so the stream waits for a top-up mid-way instead of being cut.
    let Some(s) = shared_with("allowance_stream", "4.00", ("mock-long-tool", "100.00"), 4, &[]).await? else {
        return Ok(());
    };
    let a = s.sidecar(0).await?;
    ensure!(allowance(&a).await == Some(1_000_000), "{:?}", allowance(&a).await);
    let text = reqwest::Client::new()
        .post(format!("{}/chat/completions", a.base_url()))
        .timeout(Duration::from_secs(60))
        .json(&json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        text.ends_with("data: [DONE]\n\n") && !text.contains("budget_exceeded"),
        "{}",
        &text[text.len().saturating_sub(400)..]
    );
    let pieces = text.matches("\"arguments\":\"xxxx").count();
    ensure!(pieces == sluice_tests::upstream::LONG_TOOL_PIECES, "{pieces} pieces");
    let granted = allowance(&a).await.context("no config")?;
    ensure!(granted > 1_000_000, "allowance of a: {granted}");
    Ok(())
}
