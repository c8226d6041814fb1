//! A counting OTLP receiver for the tracing row (issue 22): the field's own gRPC `TraceService`
//! from `opentelemetry-proto` served by tonic, which keeps no span, only how many spans and
//! export calls arrived; a plain HTTP listener answers `/healthz` and `/count` for the driver.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tokio::net::TcpListener;

/// What arrived so far.
#[derive(Debug, Default)]
pub struct Counts {
    spans: AtomicU64,
    exports: AtomicU64,
}

impl Counts {
    /// `{"spans":N,"exports":M}`: the body of `/count`.
    pub fn json(&self) -> String {
        format!(
            "{{\"spans\":{},\"exports\":{}}}",
            self.spans.load(Ordering::Relaxed),
            self.exports.load(Ordering::Relaxed)
        )
    }
}

#[derive(Debug, Clone)]
struct Grpc(Arc<Counts>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| r.scope_spans.iter())
            .map(|s| s.spans.len())
            .sum();
        self.0.spans.fetch_add(spans as u64, Ordering::Relaxed);
        self.0.exports.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves OTLP/gRPC on `grpc` and `/healthz` + `/count` on `listen` until the process ends;
/// `address_file` gets both bound addresses (`listen` and `grpc`).
pub async fn run(listen: SocketAddr, grpc: SocketAddr, address_file: Option<&Path>) -> Result<()> {
    let grpc_listener = TcpListener::bind(grpc)
        .await
        .with_context(|| format!("binding {grpc}"))?;
    let http_listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    if let Some(path) = address_file {
        let bound = [
            ("listen".to_owned(), http_listener.local_addr()?),
            ("grpc".to_owned(), grpc_listener.local_addr()?),
        ];
        sluice_crds::address_file::write(path, &bound.into())?;
    }
    let counts = Arc::new(Counts::default());
    let service = TraceServiceServer::new(Grpc(counts.clone()));
    tokio::spawn(async move {
        while let Ok((socket, _)) = grpc_listener.accept().await {
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                // An exporter that goes away mid-call is not worth reporting here.
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    crate::serve::http1(http_listener, move |request: Request<Incoming>| {
        let counts = counts.clone();
        async move { Ok::<_, Infallible>(answer(&request, &counts)) }
    })
    .await
}

fn answer(request: &Request<Incoming>, counts: &Counts) -> Response<Full<Bytes>> {
    let (status, body) = match request.uri().path() {
        "/healthz" => (StatusCode::OK, "ok".to_owned()),
        "/count" => (StatusCode::OK, counts.json()),
        _ => (StatusCode::NOT_FOUND, "not found".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
