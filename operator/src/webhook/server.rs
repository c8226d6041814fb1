//! The webhook's HTTPS endpoint: `POST /mutate` takes an `AdmissionReview` of a Pod and answers
//! with the injection patch, nothing (not selected, opted out, already injected), or a denial
//! that says what is wrong with the pod's annotations. Before it admits an injected pod it makes
//! sure the CA ConfigMap the sidecar mounts exists in the pod's namespace (not for dry runs):
//! a pod opted in from an unlabelled namespace would otherwise never start.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

use super::inject::{InjectConfig, inject};
use crate::{ca_publisher::CaPublisher, serve::Body};

/// The path the webhook configuration calls.
pub const MUTATE_PATH: &str = "/mutate";

/// The largest review accepted: a Pod is far smaller; the API server's own limit is 3 MiB.
const MAX_REVIEW_BYTES: usize = 3 << 20;

/// Answers one webhook call; `ca` publishes the CA into the pod's namespace (`None`: the CA
/// reaches the pods some other way, e.g. cert-manager mode).
pub async fn handle(req: Request<Incoming>, config: Arc<InjectConfig>, ca: Option<Arc<CaPublisher>>) -> Response<Body> {
    if (req.method(), req.uri().path()) != (&Method::POST, MUTATE_PATH) {
        return reply(
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"{\"message\":\"POST /mutate only\"}"),
        );
    }
    let body = match Limited::new(req.into_body(), MAX_REVIEW_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, error_json(&format!("reading the review: {e}"))),
    };
    let review: AdmissionReview<Pod> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                error_json(&format!("not an AdmissionReview: {e}")),
            );
        }
    };
    let request: AdmissionRequest<Pod> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                error_json(&format!("not an AdmissionReview request: {e}")),
            );
        }
    };
    let mut response = review_response(&request, &config);
    if let (Some(ca), Some(_), false) = (&ca, &response.patch, request.dry_run) {
        let namespace = request.namespace.as_deref().unwrap_or_default();
        if let Err(e) = ca.ensure(namespace).await {
            // Admitted without its CA the pod would hang in PodInitializing; refused, its
            // controller tries again and the error says why.
            tracing::warn!(namespace, error = %e, "could not publish the CA; pod refused");
            response = AdmissionResponse::from(&request).deny(format!(
                "sluice: the CA ConfigMap the sidecar mounts could not be written in namespace {namespace}: {e}"
            ));
        }
    }
    reply(
        StatusCode::OK,
        Bytes::from(serde_json::to_vec(&response.into_review()).unwrap_or_default()),
    )
}

/// The answer to one review: pure, so it is tested without a server.
pub fn review_response(request: &AdmissionRequest<Pod>, config: &InjectConfig) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let Some(pod) = &request.object else { return response };
    let name = pod
        .metadata
        .name
        .as_deref()
        .or(pod.metadata.generate_name.as_deref())
        .unwrap_or("");
    match inject(pod, config) {
        Ok(None) => response,
        Ok(Some(patch)) => match response.clone().with_patch(patch) {
            Ok(patched) => {
                tracing::info!(
                    namespace = request.namespace.as_deref().unwrap_or(""),
                    pod = name,
                    "sidecar injected"
                );
                patched
            }
            Err(e) => response.deny(format!("sluice: the injection patch could not be encoded: {e}")),
        },
        Err(e) => {
            tracing::info!(namespace = request.namespace.as_deref().unwrap_or(""), pod = name, error = %e, "pod refused");
            response.deny(format!("sluice: {e}"))
        }
    }
}

fn error_json(message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "message": message }).to_string())
}

fn reply(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).map_err(|e: Infallible| match e {}).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::MUTATE_PATH;

    #[test]
    fn the_chart_registers_the_webhook_at_the_path_the_operator_serves() {
        let template = include_str!("../../../charts/sluice/templates/webhook.yaml");
        let paths: Vec<&str> = template
            .lines()
            .filter_map(|l| l.trim().strip_prefix("path:"))
            .map(str::trim)
            .collect();
        assert_eq!(paths, [MUTATE_PATH]);
    }
}
