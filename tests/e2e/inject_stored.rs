//! What the injector makes, as the real API server takes it: injected pods (native sidecar
//! and plain container, with overrides) pass strict server-side validation, are stored, and
//! read back are neither injected again nor seen as outdated by the drift check, despite
//! everything the API server adds (defaults, canonical quantities, the ServiceAccount token
//! mount in every container).
//!
//! The webhook itself (HTTPS, registered by URL) is exercised by the operator's end-to-end
//! tests; this checks the pure injector against the API server's validation and defaulting.

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use sluice_operator::webhook::inject::{InjectConfig, SidecarMode, inject, is_outdated};
use sluice_tests::cluster::cluster;

#[tokio::test]
async fn injected_pods_are_valid_and_current_once_stored() -> Result<()> {
    let Some(c) = cluster("inject_stored").await? else {
        return Ok(());
    };
    for mode in [SidecarMode::Native, SidecarMode::Plain] {
        let config = InjectConfig {
            mode,
            ..InjectConfig::default()
        };
        let name = format!("bot-{mode:?}").to_lowercase();
        // Values the API server rewrites: `0.1` → `100m`, `0.125Gi` → `128Mi`.
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": c.namespace,
                "labels": {"app": "bot"},
                "annotations": {"sluice.dev/sidecar-cpu": "0.1", "sluice.dev/sidecar-memory": "0.125Gi"}
            },
            "spec": {
                "initContainers": [{"name": "migrate", "image": "bot:1"}],
                "containers": [{"name": "app", "image": "bot:1", "env": [{"name": "LOG", "value": "debug"}]}]
            }
        });
        let patch = inject(&serde_json::from_value(pod.clone())?, &config)?.context("nothing injected")?;
        json_patch::patch(&mut pod, &patch)?;
        let text = serde_json::to_string(&pod)?;
        c.kubectl_ns(
            &["apply", "--dry-run=server", "--validate=strict", "-f", "-"],
            Some(&text),
        )
        .await?
        .ok()
        .with_context(|| format!("{mode:?}: strict validation"))?;

        let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.namespace);
        pods.create(&PostParams::default(), &serde_json::from_value(pod)?)
            .await?;
        let stored = pods.get(&name).await?;
        ensure!(
            !is_outdated(&stored, &config),
            "{mode:?}: the stored pod looks outdated"
        );
        ensure!(inject(&stored, &config)?.is_none(), "{mode:?}: injected twice");
        let changed = InjectConfig {
            image: "sluice/sluice-sidecar:9.9.9".to_owned(),
            ..config
        };
        ensure!(is_outdated(&stored, &changed), "{mode:?}: a new image is not drift");
    }
    Ok(())
}
