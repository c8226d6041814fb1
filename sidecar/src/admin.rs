//! The admin listener: probes, metrics, budgets and the active config, never a secret.
//!
//! An injected sidecar binds it on the pod IP (`0.0.0.0:4001`) because the kubelet probes there
//! and Prometheus scrapes there, so every pod of the cluster can reach it too. What it says to
//! whom is therefore split by path ([`audience`]): the probes and `/metrics` answer anyone;
//! `/config` (every route, backend, price, limit and circuit) and `/budgets` (every budget's
//! spend) answer only the sidecar's own pod — a loopback peer, which only a process sharing the
//! pod's network namespace can be (the kernel drops loopback-sourced packets arriving on any other
//! interface) — and refuse anyone else with 403 `loopback_only`. Locally (`127.0.0.1:4001`, the
//! default) every caller is loopback and nothing changes. `kubectl port-forward` reaches the pod
//! from its own loopback, so an operator can still read `/config` from a laptop.

use std::{net::SocketAddr, sync::Arc};

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use sluice_serve::Peer;

use crate::{
    config::ConfigStore,
    error::ApiError,
    response::{self, Response},
    wire::error_body,
};

/// Who may read an admin path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Whoever reaches the listener: the kubelet's probes, Prometheus.
    Anyone,
    /// Only the sidecar's own pod: a loopback peer.
    ThisPod,
}

/// Who may read `path`: `/config` and `/budgets` show what other pods have no business seeing
/// (routes, prices, spend); probes, `/metrics` and unknown paths (a 404 either way) are for anyone.
pub fn audience(path: &str) -> Audience {
    match path {
        "/config" | "/budgets" => Audience::ThisPod,
        _ => Audience::Anyone,
    }
}

/// Whether a connection from `peer` may read `path`; an unknown peer is no loopback peer.
pub fn allowed(path: &str, peer: Option<SocketAddr>) -> bool {
    match audience(path) {
        Audience::Anyone => true,
        // `to_canonical`: on a dual-stack socket 127.0.0.1 arrives as ::ffff:127.0.0.1.
        Audience::ThisPod => peer.is_some_and(|peer| peer.ip().to_canonical().is_loopback()),
    }
}

/// Serves `/healthz`, `/readyz`, `/metrics` to anyone and `/config`, `/budgets` to this pod.
pub async fn handle(req: Request<Incoming>, config: Arc<ConfigStore>) -> Response {
    let path = req.uri().path();
    if req.method() != Method::GET {
        return ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            path: path.to_owned(),
        }
        .into_response();
    }
    let peer = req.extensions().get::<Peer>().map(|Peer(addr)| *addr);
    if !allowed(path, peer) {
        return ApiError::LoopbackOnly {
            path: path.to_owned(),
            peer: peer.map_or_else(|| "an unknown peer".to_owned(), |p| p.ip().to_canonical().to_string()),
        }
        .into_response();
    }
    match path {
        "/healthz" => response::text(StatusCode::OK, "ok\n"),
        "/readyz" => match config.current() {
            Some(_) => response::text(StatusCode::OK, "ready\n"),
            None => response::text(StatusCode::SERVICE_UNAVAILABLE, "no configuration loaded yet\n"),
        },
        "/config" => match config.current() {
            Some(active) => response::json(StatusCode::OK, active.view()),
            None => response::json(
                StatusCode::SERVICE_UNAVAILABLE,
                error_body(
                    "no configuration loaded yet",
                    "service_unavailable",
                    Some("not_ready"),
                    None,
                ),
            ),
        },
        "/metrics" => match config
            .recorder()
            .metrics
            .encode(config.budgets(), circuits(config.current().as_deref()))
        {
            Ok(text) => response::typed(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text),
            Err(_) => response::text(StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be encoded\n"),
        },
        "/budgets" => {
            let now = jiff::Timestamp::now();
            let views: Vec<_> = config.budgets().all().iter().map(|a| a.view(now)).collect();
            response::json(StatusCode::OK, serde_json::to_vec_pretty(&views).unwrap_or_default())
        }
        _ => ApiError::UnknownEndpoint {
            method: "GET".into(),
            path: path.to_owned(),
        }
        .into_response(),
    }
}

/// Whether each backend's circuit breaker is open now, for the `sluice_circuit_open` gauge.
fn circuits(active: Option<&crate::config::ActiveConfig>) -> Vec<(crate::metrics::CircuitLabels, bool)> {
    let now = tokio::time::Instant::now();
    let routes = active.map(|c| c.routes.routes()).unwrap_or_default();
    routes
        .iter()
        .flat_map(|route| {
            route.backends.iter().map(move |backend| {
                let labels = crate::metrics::CircuitLabels {
                    route: route.key.to_string(),
                    backend: backend.name.to_string(),
                };
                let open = matches!(
                    backend.state.circuit.availability(now),
                    crate::circuit::Availability::Open(_)
                );
                (labels, open)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
