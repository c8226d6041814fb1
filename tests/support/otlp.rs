//! An OTLP collector stand-in for the tracing tests: the field's own receiver types, not a
//! hand-written decoder. gRPC is `opentelemetry-proto`'s tonic `TraceService` server; HTTP is
//! `POST /v1/traces` with the protobuf body decoded by `prost` into the same request type. Both
//! bind port 0 on loopback and keep every span they receive, for the test to poll with a bound.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, StatusCode, body::Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::Span,
};
use prost::Message as _;
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};

/// One received span with the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// `service.name` from the span's resource.
    pub service: String,
    /// The span as it arrived.
    pub span: Span,
}

impl ReceivedSpan {
    /// The trace id in lowercase hex.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id in lowercase hex.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id in lowercase hex (empty for a root).
    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// An attribute's value as text (numbers and booleans printed), if the span has it.
    pub fn attr(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| text(kv.value.as_ref()))
    }

    /// Every attribute as `key=value` text, events' attributes included: what a leak check scans.
    pub fn all_text(&self) -> String {
        let mut out = format!("name={}\n", self.span.name);
        let events = self.span.events.iter().flat_map(|e| e.attributes.iter());
        for kv in self.span.attributes.iter().chain(events) {
            out.push_str(&format!("{}={}\n", kv.key, text(kv.value.as_ref()).unwrap_or_default()));
        }
        for event in &self.span.events {
            out.push_str(&format!("event={}\n", event.name));
        }
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&AnyValue>) -> Option<String> {
    Some(match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::ArrayValue(a) => a
            .values
            .iter()
            .filter_map(|v| text(Some(v)))
            .collect::<Vec<_>>()
            .join(","),
        any_value::Value::KvlistValue(l) => l
            .values
            .iter()
            .map(|kv| format!("{}={}", kv.key, text(kv.value.as_ref()).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        any_value::Value::BytesValue(b) => hex(b),
        any_value::Value::StringValueStrindex(i) => i.to_string(),
    })
}

/// What both receivers share: the spans so far and a wake-up for those waiting on them.
#[derive(Debug, Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
    arrived: Notify,
}

impl Received {
    fn take(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| service_name(&r.attributes))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| ReceivedSpan {
                    service: service.clone(),
                    span,
                }));
            }
        }
        self.arrived.notify_waiters();
    }
}

fn service_name(attributes: &[KeyValue]) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| text(kv.value.as_ref()))
}

/// The gRPC receiver.
#[derive(Debug, Clone)]
struct Grpc(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The collector stand-in: an OTLP/gRPC and an OTLP/HTTP receiver on loopback.
#[derive(Debug)]
pub struct Collector {
    received: Arc<Received>,
    grpc: SocketAddr,
    http: SocketAddr,
    _tasks: JoinSet<()>,
}

impl Collector {
    /// Starts both receivers on ports the OS picks.
    pub async fn start() -> Result<Self> {
        let received = Arc::new(Received::default());
        let grpc_listener = TcpListener::bind("127.0.0.1:0").await?;
        let http_listener = TcpListener::bind("127.0.0.1:0").await?;
        let (grpc, http) = (grpc_listener.local_addr()?, http_listener.local_addr()?);
        let mut tasks = JoinSet::new();
        let for_grpc = received.clone();
        tasks.spawn(async move {
            let service = TraceServiceServer::new(Grpc(for_grpc));
            accept(grpc_listener, move |socket| {
                let service = TowerToHyperService::new(service.clone());
                async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                }
            })
            .await;
        });
        let for_http = received.clone();
        tasks.spawn(async move {
            accept(http_listener, move |socket| {
                let received = for_http.clone();
                async move {
                    let handle = hyper::service::service_fn(move |request| http_export(request, received.clone()));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), handle)
                        .await;
                }
            })
            .await;
        });
        Ok(Self {
            received,
            grpc,
            http,
            _tasks: tasks,
        })
    }

    /// The gRPC receiver's endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` with `grpc`).
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The HTTP receiver's root (`OTEL_EXPORTER_OTLP_ENDPOINT` with `http/protobuf`; the exporter
    /// appends `/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received
            .spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits until the spans received satisfy `done`, for at most `within`; the spans then.
    pub async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Result<Vec<ReceivedSpan>> {
        let deadline = Instant::now() + within;
        loop {
            // Registered before the check, so spans that land in between still wake us.
            let arrived = self.received.arrived.notified();
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, arrived).await.is_err() {
                let names: Vec<_> = spans.iter().map(|s| format!("{}:{}", s.service, s.span.name)).collect();
                bail!("the collector did not receive the expected spans within {within:?}; it has {names:?}");
            }
        }
    }
}

async fn accept<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    while let Ok((socket, _)) = listener.accept().await {
        connections.spawn(serve(socket));
        while connections.try_join_next().is_some() {}
    }
}

/// `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
async fn http_export(request: Request<Incoming>, received: Arc<Received>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Bytes| {
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/x-protobuf"),
        );
        response
    };
    if request.uri().path() != "/v1/traces" {
        return Ok(reply(StatusCode::NOT_FOUND, Bytes::new()));
    }
    let Ok(body) = request.into_body().collect().await.map(|c| c.to_bytes()) else {
        return Ok(reply(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    match ExportTraceServiceRequest::decode(body) {
        Ok(export) => {
            received.take(export);
            let answer = ExportTraceServiceResponse { partial_success: None }.encode_to_vec();
            Ok(reply(StatusCode::OK, Bytes::from(answer)))
        }
        Err(_) => Ok(reply(StatusCode::BAD_REQUEST, Bytes::new())),
    }
}
