//! The simulated pods: stored (no kubelet runs them) and each given a token bound to it, as the
//! kubelet would project it, through the support library's helpers.

use anyhow::{Context as _, Result};
use futures::{StreamExt as _, TryStreamExt as _};
use kube::Client;
use sluice_crds::control::AUDIENCE;
use sluice_tests::operator::{create_pod, pod_token};

use super::manifests::APP_LABEL;

/// A pod and its `sluice`-audience token.
#[derive(Debug, Clone)]
pub struct PodToken {
    /// The pod's name.
    pub name: String,
    /// Its UID.
    pub uid: String,
    /// The token its sidecar presents.
    pub token: String,
}

/// Creates `count` pods in `namespace` and a token for each, `parallel` API calls at a time;
/// in index order.
pub async fn create(client: &Client, namespace: &str, count: usize, parallel: usize) -> Result<Vec<PodToken>> {
    futures::stream::iter(0..count)
        .map(|i| async move {
            let name = format!("sidecar-{i:04}");
            let uid = create_pod(client, namespace, &name, &[APP_LABEL]).await?;
            let token = pod_token(client, namespace, &name, &uid, AUDIENCE)
                .await
                .with_context(|| format!("token for pod {name}"))?;
            anyhow::ensure!(!token.is_empty(), "the API server returned an empty token for {name}");
            Ok(PodToken { name, uid, token })
        })
        .buffered(parallel.max(1))
        .try_collect()
        .await
}
