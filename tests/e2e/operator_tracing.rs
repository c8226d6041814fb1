//! A route change followed in one trace (issue 22), against a real kube-apiserver: the
//! operator's reconcile span, its push span, the sidecar's apply span and the operator's ack
//! span reach the OTLP collector stand-in, each the child of the one before.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use sluice_tests::cluster::{TestCluster, cluster};
use sluice_tests::operator::{Certs, ClusterSidecar, OperatorProcess, TestPod};
use sluice_tests::otlp::{Collector, ReceivedSpan};
use sluice_tests::upstream::{Upstream, Wire};

/// Generous bound for a change to travel and its spans to be exported.
const WITHIN: Duration = Duration::from_secs(60);

fn secret() -> String {
    "apiVersion: v1\nkind: Secret\nmetadata: {name: upstream}\nstringData: {apiKey: sk-traced}\n".to_owned()
}

fn route(upstream: &Upstream, backend: &str) -> String {
    format!(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: chat}}
spec:
  models: [chat]
  backends:
  - name: {backend}
    provider: openai-compatible
    baseUrl: http://{addr}/v1
    model: mock-ok
    credentialsRef: {{name: upstream, key: apiKey}}
"#,
        addr = upstream.addr
    )
}

/// The variables that point a process at the collector under `service`.
fn otel(endpoint: &str, service: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_SERVICE_NAME", service.to_owned()),
        // Export soon after each span ends.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ]
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn apply(c: &TestCluster, manifest: &str) -> Result<()> {
    c.kubectl_ns(&["apply", "-f", "-"], Some(manifest)).await?.ok()?;
    Ok(())
}

/// The first span of `service` named `name` that `also` accepts.
fn find<'a>(
    spans: &'a [ReceivedSpan],
    service: &str,
    name: &str,
    also: impl Fn(&ReceivedSpan) -> bool,
) -> Option<&'a ReceivedSpan> {
    spans
        .iter()
        .find(|s| s.service == service && s.span.name == name && also(s))
}

/// reconcile → push → apply → ack, each the parent of the next, for the version the sidecar
/// applied after the edit named `backend`.
fn chain(spans: &[ReceivedSpan]) -> Option<[ReceivedSpan; 4]> {
    for push in spans
        .iter()
        .filter(|s| s.service == "operator-under-test" && s.span.name == "push config")
    {
        let Some(reconcile) = find(spans, "operator-under-test", "reconcile ModelRoute", |r| {
            r.span_id() == push.parent_id()
        }) else {
            continue;
        };
        let Some(apply) = find(spans, "sidecar-under-test", "apply config", |a| {
            a.parent_id() == push.span_id()
        }) else {
            continue;
        };
        let Some(ack) = find(spans, "operator-under-test", "config ack", |k| {
            k.parent_id() == apply.span_id()
        }) else {
            continue;
        };
        return Some([reconcile.clone(), push.clone(), apply.clone(), ack.clone()]);
    }
    None
}

#[tokio::test]
async fn a_route_change_is_one_trace_from_the_reconcile_through_the_push_and_the_apply_to_the_ack() -> Result<()> {
    let Some(c) = cluster("operator_tracing").await? else {
        return Ok(());
    };
    c.install_crds().await?;
    let dir = tempfile::tempdir()?;
    let collector = Collector::start().await?;
    let operator_env = otel(&collector.grpc_endpoint(), "operator-under-test");
    let sidecar_env = otel(&collector.grpc_endpoint(), "sidecar-under-test");

    let upstream = Upstream::start(&[Wire::OpenAi]).await?;
    apply(&c, &secret()).await?;
    apply(&c, &route(&upstream, "first")).await?;
    let certs = Certs::generate(dir.path())?;
    let mut operator = OperatorProcess::spawn_with_env(&c, &certs, "op-traced", &[], &refs(&operator_env)).await?;
    operator.wait_ready(WITHIN).await?;
    let pod = TestPod::create(&c, dir.path(), "bot", &[("app", "bot")]).await?;
    let sidecar = ClusterSidecar::spawn_with_env(&pod, &operator.control_url, &certs.ca(), &refs(&sidecar_env)).await?;
    sidecar.wait_served_by("chat", "first", WITHIN).await?;

    // The edit: its reconcile pushes a new version to the sidecar, which applies and acks it.
    apply(&c, &route(&upstream, "second")).await?;
    sidecar.wait_served_by("chat", "second", WITHIN).await?;

    let spans = collector
        .wait_for(WITHIN, |spans| chain(spans).is_some())
        .await
        .with_context(|| format!("operator output:\n{}", operator.process.output()))?;
    let [reconcile, push, apply, ack] = chain(&spans).context("the chain")?;
    for span in [&push, &apply, &ack] {
        ensure!(
            span.trace_id() == reconcile.trace_id(),
            "{} is in another trace",
            span.span.name
        );
    }
    ensure!(reconcile.attr("sluice.kind").as_deref() == Some("ModelRoute"));
    ensure!(apply.attr("sluice.config_version") == ack.attr("sluice.config_version"));
    ensure!(ack.attr("k8s.pod.name").as_deref() == Some("bot"));
    Ok(())
}
