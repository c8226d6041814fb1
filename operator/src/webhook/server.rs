//! The webhook's HTTPS endpoint: `POST /mutate` takes an `AdmissionReview` of a Pod and answers
//! with the injection patch, nothing (not selected, opted out, already injected), or a denial
//! that says what is wrong with the pod's annotations.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

use super::inject::{InjectConfig, inject};
use crate::control_server::handlers::Body;

/// The path the webhook configuration calls.
pub const MUTATE_PATH: &str = "/mutate";

/// The largest review accepted: a Pod is far smaller; the API server's own limit is 3 MiB.
const MAX_REVIEW_BYTES: usize = 3 << 20;

/// Answers one webhook call.
pub async fn handle(req: Request<Incoming>, config: Arc<InjectConfig>) -> Response<Body> {
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
    let response = review_response(&request, &config);
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
