//! The pod watcher: keeps the cache of pods carrying a sidecar, and on every change of one
//! recomputes its namespace's snapshots (labels decide which routes select a pod; a pod's
//! coming or going changes limit shares and allowances), takes back a deleted pod's unspent
//! allowance, and marks the routes whose sidecar counts may have changed.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    ResourceExt,
    runtime::{WatchStreamExt, reflector, watcher},
};
use tokio_util::sync::CancellationToken;

use crate::{SIDECAR_LABEL, context::Context, push, status};

/// What one watch event changes.
fn observe(ctx: &Context, event: &watcher::Event<Pod>) {
    match event {
        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
            if let Some(uid) = pod.uid() {
                ctx.sessions.relabel(&uid, pod.labels().clone());
            }
            push::recompute_soon(ctx, &pod.namespace().unwrap_or_default());
            status::routes_changed(ctx, pod.namespace().as_deref());
        }
        watcher::Event::Delete(pod) => {
            let uid = pod.uid().unwrap_or_default();
            ctx.marks
                .routes(ctx.health.pod_deleted(&uid, std::time::Instant::now()));
            push::pod_deleted(
                ctx,
                &pod.namespace().unwrap_or_default(),
                &pod.uid().unwrap_or_default(),
            );
            status::routes_changed(ctx, pod.namespace().as_deref());
        }
        watcher::Event::InitDone => {
            ctx.cache_filled(|c| c.pods = true);
            // Counts written before the pods were known are stale: write them again.
            status::routes_changed(ctx, None);
        }
        watcher::Event::Init => {}
    }
}

/// Watches pods labelled [`SIDECAR_LABEL`] until `shutdown`, filling `writer`'s store.
pub async fn run(ctx: Arc<Context>, writer: reflector::store::Writer<Pod>, shutdown: CancellationToken) {
    let api = ctx.watched::<Pod>();
    let pods = watcher(api, watcher::Config::default().labels(SIDECAR_LABEL))
        .default_backoff()
        .reflect(writer)
        .inspect(|event| {
            if let Ok(event) = event {
                observe(&ctx, event);
            }
        });
    tokio::select! {
        () = pods.for_each(|_| std::future::ready(())) => {}
        () = shutdown.cancelled() => {}
    }
}
