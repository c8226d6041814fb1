//! The control API's endpoints.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, runtime::reflector::ObjectRef};
use serde::{Serialize, de::DeserializeOwned};
use sluice_crds::{
    ObjectKey, UsageAck, UsageReport,
    control::{
        ACK_PATH, ALLOWANCE_PATH, AllowanceAnswer, AllowanceRequest, BudgetSpend, ConfigAck, ControlError, Hello,
        NDJSON, PodIdentity, USAGE_PATH, WATCH_PATH, WatchEvent,
    },
};

use tokio::sync::watch;

use super::auth::Authenticator;
pub use crate::serve::Body;
use crate::{
    context::Context,
    push,
    token::{self, TokenDigest},
    usage,
    wire::{self, line},
};

/// What the handlers share.
#[derive(Debug)]
pub struct ControlServer {
    /// The operator's state.
    pub ctx: Arc<Context>,
    /// Token reviews.
    pub auth: Authenticator,
    /// True while this replica leads (only then are calls served).
    pub leading: watch::Receiver<bool>,
}

/// What a follower answers to every control call.
pub const NOT_LEADING: &str = "this operator replica is not the leader; reconnect (only the leader serves sidecars)";

const MAX_ACK_BYTES: usize = 64 << 10;
const MAX_REPORT_BYTES: usize = 16 << 20;

/// Dispatches one request.
pub async fn handle(req: Request<Incoming>, server: Arc<ControlServer>) -> Response<Body> {
    if !*server.leading.borrow() {
        // Not even authenticated: a follower holds no state a caller could learn from.
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &ControlError {
                message: NOT_LEADING.to_owned(),
            },
        );
    }
    let result = match (req.method(), req.uri().path()) {
        (&Method::GET, WATCH_PATH) => watch(req, &server).await,
        (&Method::POST, ACK_PATH) => ack(req, &server).await,
        (&Method::POST, USAGE_PATH) => usage(req, &server).await,
        (&Method::POST, ALLOWANCE_PATH) => allowance(req, &server).await,
        _ => Err((StatusCode::NOT_FOUND, "no such endpoint".to_owned())),
    };
    result.unwrap_or_else(|(status, message)| {
        if status.is_server_error() {
            tracing::warn!(%status, message, "control request failed");
        } else {
            tracing::info!(%status, message, "control request refused");
        }
        json(status, &ControlError { message })
    })
}

type Refusal = (StatusCode, String);

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

async fn identity(req: &Request<Incoming>, server: &ControlServer) -> Result<PodIdentity, Refusal> {
    let pod = server
        .auth
        .authenticate(req.headers())
        .await
        .map_err(|e| (e.status(), e.to_string()))?;
    match &server.ctx.settings.watch_namespace {
        Some(ns) if *ns != pod.namespace => Err((
            StatusCode::FORBIDDEN,
            format!("this operator serves namespace {ns} only"),
        )),
        _ => Ok(pod),
    }
}

async fn read_json<T: DeserializeOwned>(req: Request<Incoming>, limit: usize) -> Result<T, Refusal> {
    let body = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid body: {e}")))
}

/// The pod's labels, checked against the token's UID (a re-created pod of the same name is
/// another pod). Read from the API server, not the reflector: a cache that has not yet seen the
/// pod's deletion would let the token of a deleted pod in.
async fn labels_of(ctx: &Context, pod: &PodIdentity) -> Result<std::collections::BTreeMap<String, String>, Refusal> {
    let stored = Api::<Pod>::namespaced(ctx.client.clone(), &pod.namespace)
        .get_opt(&pod.name)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("reading the pod: {e}")))?
        .filter(|p| p.metadata.uid.as_deref() == Some(pod.uid.as_str()))
        .ok_or((
            StatusCode::FORBIDDEN,
            format!("pod {}/{} no longer exists", pod.namespace, pod.name),
        ))?;
    Ok(stored.metadata.labels.unwrap_or_default())
}

/// Forgets the session when its stream is dropped (the sidecar went away).
struct SessionGuard {
    ctx: Arc<Context>,
    uid: String,
    conn: u64,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        tracing::info!(pod_uid = %self.uid, "control stream closed");
        push::unregister(&self.ctx, &self.uid, self.conn);
    }
}

/// What a sidecar is told first: who it is, the last usage sequence applied for it, and what
/// it has spent of each budget this period.
fn hello(ctx: &Context, pod: &PodIdentity) -> Hello {
    let (last_applied_sequence, budgets) = ctx
        .ledgers
        .read(&pod.namespace, |l| {
            let budgets = l
                .budgets
                .iter()
                .filter_map(|(name, totals)| {
                    let grant = totals.pods.get(&pod.uid)?;
                    Some(BudgetSpend {
                        budget: ObjectKey {
                            namespace: pod.namespace.clone(),
                            name: name.clone(),
                        },
                        period_start: totals.period_start?,
                        spent: grant.spent,
                    })
                })
                .collect();
            (l.sequence(&pod.uid), budgets)
        })
        .unwrap_or_default();
    Hello {
        pod: pod.clone(),
        last_applied_sequence,
        heartbeat_secs: ctx.settings.heartbeat.as_secs().max(1),
        budgets,
    }
}

async fn watch(req: Request<Incoming>, server: &ControlServer) -> Result<Response<Body>, Refusal> {
    let pod = identity(&req, server).await?;
    let ctx = server.ctx.clone();
    ctx.wait_synced().await;
    usage::ensure_ledger(&ctx, &pod.namespace)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let labels = labels_of(&ctx, &pod).await?;
    let hello = hello(&ctx, &pod);
    tracing::info!(pod = %pod.name, namespace = %pod.namespace, "sidecar connected");
    let token = token::bearer(req.headers()).map(TokenDigest::of);
    let (conn, rx) = push::register(&ctx, pod.clone(), labels, token);
    let guard = SessionGuard {
        ctx: ctx.clone(),
        uid: pod.uid.clone(),
        conn,
    };
    let heartbeat = ctx.settings.heartbeat;
    let tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let first = Some(line(&WatchEvent::Hello(hello)));
    let stream = futures::stream::unfold(
        (first, rx, tick, guard),
        |(mut first, mut rx, mut tick, guard)| async move {
            if let Some(hello) = first.take() {
                return Some((Ok::<_, Infallible>(Frame::data(hello)), (None, rx, tick, guard)));
            }
            loop {
                tokio::select! {
                    changed = rx.changed() => {
                        // The session was replaced by a newer connection or the operator stops.
                        changed.ok()?;
                        let pushed = rx.borrow_and_update().clone();
                        if let Some(pushed) = pushed {
                            let bytes = match crate::telemetry::carried(&pushed.snapshot.version) {
                                Some(carried) => wire::traced(&pushed.line, &carried),
                                None => pushed.line.clone(),
                            };
                            return Some((Ok(Frame::data(bytes)), (None, rx, tick, guard)));
                        }
                    }
                    _ = tick.tick() => {
                        return Some((Ok(Frame::data(wire::heartbeat())), (None, rx, tick, guard)));
                    }
                }
            }
        },
    );
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(NDJSON));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    Ok(response)
}

/// An ack: from the token of the pod's open stream, recognised as that pod's
/// ([`crate::sessions::Sessions::identity_of`]); from any other token, reviewed like every call.
async fn ack(req: Request<Incoming>, server: &ControlServer) -> Result<Response<Body>, Refusal> {
    let streaming = token::bearer(req.headers())
        .map(TokenDigest::of)
        .and_then(|digest| server.ctx.sessions.identity_of(&digest));
    let pod = match streaming {
        Some(pod) => pod,
        None => identity(&req, server).await?,
    };
    // Only a trace needs the headers once the body is read.
    let headers = sluice_telemetry::tracer().is_some().then(|| req.headers().clone());
    let ack: ConfigAck = read_json(req, MAX_ACK_BYTES).await?;
    if let Some(headers) = &headers {
        crate::telemetry::acked(headers, &pod, &ack.version);
    }
    tracing::debug!(pod = %pod.name, version = %ack.version, "sidecar acked");
    push::ack(&server.ctx, &pod.uid, ack.version);
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

async fn usage(req: Request<Incoming>, server: &ControlServer) -> Result<Response<Body>, Refusal> {
    let authenticating = std::time::Instant::now();
    let pod = identity(&req, server).await?;
    let report: UsageReport = read_json(req, MAX_REPORT_BYTES).await?;
    if report.pod_uid != pod.uid {
        return Err((
            StatusCode::FORBIDDEN,
            "podUid does not match the pod the token is bound to".to_owned(),
        ));
    }
    let ctx = &server.ctx;
    ctx.wait_synced().await;
    if let Err(out_of_scope) = in_scope(ctx, &pod, &report).await? {
        ctx.metrics.report("refused");
        tracing::warn!(pod = %pod.name, namespace = %pod.namespace, sequence = report.sequence,
            reason = %out_of_scope, "usage report refused");
        return Err((StatusCode::FORBIDDEN, out_of_scope.to_string()));
    }
    // A report queued long after its token was checked could come from a pod deleted since,
    // after its records were removed (`ledgers::RECLAIM_WAIT`): sent again, it is checked again.
    if authenticating.elapsed() > crate::ledgers::AUTHENTICATED_TO_QUEUED {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the report took too long to be queued after its token was checked; send it again".to_owned(),
        ));
    }
    // Health is about now: it goes into status at the next write, without waiting for the
    // report to be persisted (taken once per sequence all the same).
    let touched = ctx.health.apply(
        &report.pod_uid,
        report.sequence,
        &report.health,
        std::time::Instant::now(),
    );
    ctx.marks.routes(touched);
    let bound = ctx.settings.status_interval.saturating_mul(10) + Duration::from_secs(30);
    tracing::debug!(pod = %pod.name, sequence = report.sequence, deltas = report.deltas.len(), "usage report queued");
    let rx = ctx.ledgers.submit(pod, report);
    match tokio::time::timeout(bound, rx).await {
        Ok(Ok(Ok(sequence))) => Ok(json(StatusCode::OK, &UsageAck { sequence })),
        Ok(Ok(Err(message))) => Err((StatusCode::SERVICE_UNAVAILABLE, message)),
        Ok(Err(_)) | Err(_) => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "usage not persisted in time; send it again".to_owned(),
        )),
    }
}

/// A sidecar asks for more of a budget: the ask is noted on its grant, planning tops it up out
/// of free money, the ledger is persisted (only then may the grant be pushed, see
/// [`crate::allowance`]) and pushed, and the answer says what the pod holds now.
async fn allowance(req: Request<Incoming>, server: &ControlServer) -> Result<Response<Body>, Refusal> {
    let pod = identity(&req, server).await?;
    let ask: AllowanceRequest = read_json(req, MAX_ACK_BYTES).await?;
    if ask.budget.namespace != pod.namespace {
        return Err((
            StatusCode::FORBIDDEN,
            "a pod may ask only for budgets of its own namespace".to_owned(),
        ));
    }
    let ctx = &server.ctx;
    ctx.wait_synced().await;
    usage::ensure_ledger(ctx, &pod.namespace)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let Some(budget) = ctx
        .budgets
        .get(&ObjectRef::new(&ask.budget.name).within(&pod.namespace))
    else {
        return Err((StatusCode::NOT_FOUND, format!("no budget {}", ask.budget)));
    };
    // Planned first, so a period that just began is rolled and the pod has its entry.
    push::recompute(ctx, &pod.namespace);
    let wanted = ask.held + ask.wanted;
    let noted = ctx.ledgers.update(&pod.namespace, |l| {
        let grant = l
            .ledger
            .budgets
            .get_mut(&ask.budget.name)
            .and_then(|t| t.pods.get_mut(&pod.uid));
        grant.map(|g| g.asked = g.asked.max(wanted)).is_some()
    });
    if noted == Some(true) {
        tracing::debug!(pod = %pod.name, budget = %ask.budget, held = %ask.held, wanted = %ask.wanted, "allowance asked");
        push::recompute(ctx, &pod.namespace);
        // A raised grant is pushed only once persisted: write now rather than at the next flush
        // (nothing to write when nothing was raised, or another ask's write already held it).
        let unpersisted = ctx.ledgers.read(&pod.namespace, |l| {
            l.budgets
                .get(&ask.budget.name)
                .and_then(|t| t.pods.get(&pod.uid))
                .is_some_and(|g| g.unpersisted > sluice_crds::MicroUsd::ZERO)
        });
        if unpersisted == Some(true) {
            usage::flush_namespace(ctx, &pod.namespace).await;
        }
    }
    let answer = ctx
        .ledgers
        .read(&pod.namespace, |l| {
            let totals = l.budgets.get(&ask.budget.name)?;
            Some(AllowanceAnswer {
                granted: totals.pods.get(&pod.uid).map(|g| g.pushable()).unwrap_or_default(),
                period_start: totals.period_start,
                exhausted: crate::plan::is_exhausted(totals, &budget.spec),
            })
        })
        .flatten()
        .ok_or((
            StatusCode::SERVICE_UNAVAILABLE,
            "the usage ledger is not loaded; ask again".to_owned(),
        ))?;
    Ok(json(StatusCode::OK, &answer))
}

/// Judges a report by [`usage::scope`]: the routes sent to the pod, and the accepted routes
/// against its labels as known now (its session's, else the pod cache's, else the API server's).
async fn in_scope(
    ctx: &Context,
    pod: &PodIdentity,
    report: &UsageReport,
) -> Result<Result<(), usage::scope::OutOfScope>, Refusal> {
    let known = ctx.sessions.scope(&pod.uid);
    let labels = match known.labels {
        Some(labels) => labels,
        None => match ctx
            .pods
            .get(&ObjectRef::new(&pod.name).within(&pod.namespace))
            .filter(|p| p.metadata.uid.as_deref() == Some(pod.uid.as_str()))
        {
            Some(cached) => cached.metadata.labels.clone().unwrap_or_default(),
            // Not connected and not cached yet (a pod just created): ask the API server.
            None => labels_of(ctx, pod).await?,
        },
    };
    let routes = ctx.verdicts.in_namespace(&pod.namespace);
    let scope = usage::scope::Scope {
        namespace: &pod.namespace,
        pod: &pod.name,
        labels: Some(&labels),
        sent: &known.sent,
        routes: &routes,
    };
    let routes = report.deltas.iter().map(|d| &d.route);
    Ok(usage::scope::check(
        &scope,
        routes.chain(report.health.iter().map(|h| &h.route)),
    ))
}
