//! Publishes the operator's CA as the ConfigMap (`sluice-ca` by default) that injected sidecars
//! mount, in every namespace whose pods may be injected, before the first of those pods needs it.
//!
//! Two paths put it there, and every replica runs both (the ConfigMap is the same whoever
//! writes it, and the write is an idempotent server-side apply):
//! - a watch on Namespaces labelled `sluice.dev/inject=enabled`: a label change publishes at
//!   once (no poll), and a changed CA is written again to every labelled namespace;
//! - the webhook, which calls [`CaPublisher::ensure`] for the pod's own namespace before it
//!   admits an injected pod. That covers a pod opted in by its own label in a namespace without
//!   the label, and a pod created in the instant between labelling and the watch event.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    Api, Client, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams},
    runtime::{WatchStreamExt, reflector, watcher},
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Namespaces whose pods are injected, and so need the CA.
pub const INJECT_NAMESPACE_SELECTOR: &str = "sluice.dev/inject=enabled";
/// The field manager of the ConfigMaps it writes.
const FIELD_MANAGER: &str = "sluice-operator";
/// How long a namespace whose write failed waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Writes the CA into one ConfigMap per namespace; see the module docs.
pub struct CaPublisher {
    client: Client,
    /// The ConfigMap's name.
    name: String,
    /// The key holding the PEM.
    key: String,
    /// The CA certificate (PEM) as currently stored, updated when it changes.
    ca: watch::Receiver<String>,
}

impl std::fmt::Debug for CaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPublisher")
            .field("name", &self.name)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl CaPublisher {
    /// A publisher of ConfigMap `name` with the CA under `key`.
    pub fn new(client: Client, name: String, key: String, ca: watch::Receiver<String>) -> Self {
        Self { client, name, key, ca }
    }

    /// Makes sure ConfigMap `name` of `namespace` holds the current CA: read first, so the
    /// common case (already there) costs one GET and writes nothing.
    pub async fn ensure(&self, namespace: &str) -> Result<(), kube::Error> {
        let ca = self.ca.borrow().clone();
        let config_maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let stored = config_maps
            .get_opt(&self.name)
            .await?
            .and_then(|c| c.data)
            .and_then(|d| d.get(&self.key).cloned());
        if stored.as_deref() == Some(ca.as_str()) {
            return Ok(());
        }
        let wanted = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "sluice-operator".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(self.key.clone(), ca)])),
            ..ConfigMap::default()
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        config_maps.patch(&self.name, &params, &Patch::Apply(&wanted)).await?;
        tracing::info!(namespace, config_map = %self.name, "published the CA for injected sidecars");
        Ok(())
    }

    /// Watches labelled namespaces and CA changes until `shutdown`; a failed write is retried
    /// after [`RETRY_AFTER`].
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (store, writer) = reflector::store::<Namespace>();
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let mut labelled = watcher(namespaces, watcher::Config::default().labels(INJECT_NAMESPACE_SELECTOR))
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .boxed();
        let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<String>();
        let mut ca = self.ca.clone();
        loop {
            let wanted: Vec<String> = tokio::select! {
                () = shutdown.cancelled() => return,
                next = labelled.next() => match next {
                    Some(Ok(namespace)) => vec![namespace.name_any()],
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "watching the namespaces labelled for injection");
                        continue;
                    }
                    None => return,
                },
                changed = ca.changed() => {
                    if changed.is_err() {
                        // The certificate manager stopped: the process is shutting down.
                        return;
                    }
                    ca.borrow_and_update();
                    store.state().iter().map(|n| n.name_any()).collect()
                }
                Some(namespace) = retry_rx.recv() => vec![namespace],
            };
            for namespace in wanted {
                if let Err(e) = self.ensure(&namespace).await {
                    tracing::warn!(namespace, error = %e, "publishing the CA; retrying");
                    let retry_tx = retry_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_AFTER).await;
                        let _ = retry_tx.send(namespace);
                    });
                }
            }
        }
    }
}
