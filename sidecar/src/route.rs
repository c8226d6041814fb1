//! The route table: which route serves a model, and its backends ready to call.
//!
//! A [`Route`] is immutable once compiled; what changes while it serves (circuits, buckets,
//! latency, caches) lives in [`state`] and is carried over to the next config version.

pub mod facts;
pub mod health;
pub mod latency;
pub mod plan;
pub mod rules;
pub mod series;
pub mod state;
pub mod strategy;
#[cfg(test)]
pub(crate) mod testing;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use http::HeaderValue;
use sluice_crds::{
    BackendName, CircuitBreaker, ConfigSnapshot, ModelName, ObjectKey, Pricing, Provider, RetryPolicy, RouteConfig,
    Strategy, Timeouts,
    validation::{Invalid, validate_model_route},
};

use crate::{
    error::ApiError,
    providers::{Upstream, UpstreamError, client::UpstreamClient},
    tokenizer::Tokenizer,
};
use state::{BackendState, Pending, RouteState, StateRegistry};

/// Every route of the active config, indexed by the model names clients send.
#[derive(Debug)]
pub struct RouteTable {
    by_model: HashMap<String, Arc<Route>>,
    models: Vec<String>,
}

/// One route, ready to serve.
#[derive(Debug)]
pub struct Route {
    /// The resource it came from.
    pub key: ObjectKey,
    /// Its backends by priority (stable: equal priorities keep their written order).
    pub backends: Vec<Arc<BackendRuntime>>,
    /// How a backend is chosen among the candidates.
    pub strategy: Strategy,
    /// Content rules, in order.
    pub rules: Vec<rules::Rule>,
    /// Attempts and backoff.
    pub retry: RetryPolicy,
    /// When a backend's circuit opens.
    pub circuit_breaker: CircuitBreaker,
    /// How prompt tokens are counted: the primary backend's tokenizer.
    pub tokenizer: Tokenizer,
    /// Limits, strategy counters and cache, carried across config versions.
    pub state: RouteState,
    /// The Budget this route spends from.
    pub budget: Option<ObjectKey>,
    /// `key` as the `x-sluice-route` value, made once (`None` if it cannot be one).
    pub key_header: Option<HeaderValue>,
}

/// One backend, ready to call.
#[derive(Debug)]
pub struct BackendRuntime {
    /// Its name within the route.
    pub name: BackendName,
    /// Which protocol it speaks.
    pub provider: Provider,
    /// The upstream's model name.
    pub model: ModelName,
    /// The client that calls it.
    pub upstream: Upstream,
    /// Its time bounds.
    pub timeouts: Timeouts,
    /// Its prices, when known.
    pub pricing: Option<Pricing>,
    /// Its share for the weighted strategy.
    pub weight: u32,
    /// Its place in the priority order: lower first.
    pub priority: u32,
    /// Its position in `spec.backends`.
    pub index: usize,
    /// Circuit, limits and latency, carried across config versions.
    pub state: Arc<BackendState>,
    /// The metric series its requests count into, looked up once.
    pub series: series::SeriesCache,
    /// `name` as the `x-sluice-backend` value, made once (`None` if it cannot be one).
    pub name_header: Option<HeaderValue>,
}

/// Why a snapshot could not become the active config.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Two routes claim one model name.
    #[error(
        "model {model:?} is claimed by both ModelRoute {first} and ModelRoute {second}: each model may belong to one route"
    )]
    ModelClaimedTwice {
        /// The contested name.
        model: String,
        /// The route that claimed it first.
        first: ObjectKey,
        /// The route that claimed it again.
        second: ObjectKey,
    },
    /// A route breaks a rule.
    #[error("ModelRoute {route}: {source}")]
    Invalid {
        /// The route.
        route: ObjectKey,
        /// What is wrong.
        source: Invalid,
    },
    /// A backend needs an API key that the snapshot lacks.
    #[error("ModelRoute {route}: backend {backend}: no API key resolved for its credentialsRef")]
    MissingCredentials {
        /// The route.
        route: ObjectKey,
        /// The backend.
        backend: BackendName,
    },
    /// A backend's header takes its value from a Secret that the snapshot lacks.
    #[error("ModelRoute {route}: backend {backend}: no value resolved for header {header:?} (its valueFrom)")]
    MissingHeaderValue {
        /// The route.
        route: ObjectKey,
        /// The backend.
        backend: BackendName,
        /// The header's name.
        header: String,
    },
    /// A backend's header has a name or value HTTP does not allow (the value is not shown).
    #[error("ModelRoute {route}: backend {backend}: header {header:?} has a name or value HTTP cannot carry")]
    BadHeader {
        /// The route.
        route: ObjectKey,
        /// The backend.
        backend: BackendName,
        /// The header's name.
        header: String,
    },
    /// A backend's provider is not available in this build, or its credentials are unusable.
    #[error("ModelRoute {route}: backend {backend}: {source}")]
    Unsupported {
        /// The route.
        route: ObjectKey,
        /// The backend.
        backend: BackendName,
        /// Why: the provider, or its credentials.
        source: UpstreamError,
    },
    /// A budget cannot be placed in time.
    #[error(transparent)]
    Budget(#[from] crate::budget::UnknownTimeZone),
    /// A rule cannot be compiled.
    #[error("ModelRoute {route}: {source}")]
    Rule {
        /// The route.
        route: ObjectKey,
        /// What is wrong.
        source: rules::BadHeader,
    },
    /// The HTTP client could not be built (TLS roots unavailable).
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// Connection pools shared across config versions, so a reload keeps warm connections: for model
/// calls one per connect timeout and set of extra headers (the client adds them to every request,
/// so no provider needs to know of them), for identity exchanges one per connect timeout. A pool
/// no config uses any more is dropped at the next one.
#[derive(Debug, Default)]
pub struct ClientCache(Mutex<Pools>);

/// The pools of both kinds.
#[derive(Debug, Default)]
struct Pools {
    /// Model calls' pools.
    upstream: BTreeMap<PoolKey, Pool<UpstreamClient>>,
    /// Identity exchanges' pools (token endpoints, STS): reqwest, never any extra headers.
    identity: BTreeMap<std::time::Duration, Pool<reqwest::Client>>,
}

impl Pools {
    /// How many pools there are.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.upstream.len() + self.identity.len()
    }
}

/// What a model calls' pool is shared by.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PoolKey {
    connect: std::time::Duration,
    /// Name, value, and whether the value is a secret.
    headers: Vec<(String, Vec<u8>, bool)>,
}

impl std::fmt::Debug for PoolKey {
    // Header values may be secrets: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _, _)| n.as_str()).collect();
        f.debug_struct("PoolKey")
            .field("connect", &self.connect)
            .field("headers", &names)
            .finish()
    }
}

#[derive(Debug)]
struct Pool<C> {
    client: C,
    /// Whether the config being compiled uses it.
    used: bool,
}

pub use crate::providers::client::ExtraHeader;

/// The pool under `key` marked used, built by `build` when there is none.
fn pooled<K: Ord, C: Clone>(
    pools: &mut BTreeMap<K, Pool<C>>,
    key: K,
    build: impl FnOnce() -> Result<C, CompileError>,
) -> Result<C, CompileError> {
    if let Some(pool) = pools.get_mut(&key) {
        pool.used = true;
        return Ok(pool.client.clone());
    }
    let client = build()?;
    pools.insert(
        key,
        Pool {
            client: client.clone(),
            used: true,
        },
    );
    Ok(client)
}

impl ClientCache {
    /// The model calls' pool for `timeouts` that sends `headers` with every request (a
    /// request's own headers win: a provider's auth header is never replaced).
    fn upstream(&self, timeouts: &Timeouts, headers: &[ExtraHeader]) -> Result<UpstreamClient, CompileError> {
        let connect = timeouts.connect.get();
        let key = PoolKey {
            connect,
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec(), v.is_sensitive()))
                .collect(),
        };
        let mut pools = self.lock()?;
        pooled(&mut pools.upstream, key, || {
            UpstreamClient::new(connect, headers.to_vec()).map_err(|e| CompileError::Client(e.to_string()))
        })
    }

    /// The identity exchanges' pool for `timeouts`, which sends no extra headers.
    fn identity(&self, timeouts: &Timeouts) -> Result<reqwest::Client, CompileError> {
        let connect = timeouts.connect.get();
        let mut pools = self.lock()?;
        pooled(&mut pools.identity, connect, || {
            reqwest::Client::builder()
                .connect_timeout(connect)
                .pool_idle_timeout(std::time::Duration::from_secs(90))
                .tcp_nodelay(true)
                // A token request must never follow a redirect to another host.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| CompileError::Client(e.to_string()))
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Pools>, CompileError> {
        self.0
            .lock()
            .map_err(|_| CompileError::Client("client cache poisoned".into()))
    }

    /// Starts a compile: no pool is in use until the new config asks for it.
    fn begin(&self) {
        if let Ok(mut pools) = self.0.lock() {
            pools.upstream.values_mut().for_each(|p| p.used = false);
            pools.identity.values_mut().for_each(|p| p.used = false);
        }
    }

    /// Ends a successful compile: pools the new config does not use are dropped (the old config
    /// keeps its own clones while it drains), so rotated header values do not pile up.
    fn keep_used(&self) {
        if let Ok(mut pools) = self.0.lock() {
            pools.upstream.retain(|_, p| p.used);
            pools.identity.retain(|_, p| p.used);
        }
    }
}

impl RouteTable {
    /// Builds the table from a snapshot, refusing it whole if any route is unusable. Runtime
    /// state is taken over from `states` where unchanged and gathered into `pending`.
    pub fn compile(
        snapshot: &ConfigSnapshot,
        clients: &ClientCache,
        states: &StateRegistry,
        pending: &mut Pending,
    ) -> Result<Self, CompileError> {
        clients.begin();
        let mut by_model: HashMap<String, Arc<Route>> = HashMap::new();
        for config in &snapshot.routes {
            let route = Arc::new(compile_route(config, clients, states, pending)?);
            for model in &config.spec.models {
                if let Some(first) = by_model.insert(model.to_string(), route.clone()) {
                    return Err(CompileError::ModelClaimedTwice {
                        model: model.to_string(),
                        first: first.key.clone(),
                        second: config.key.clone(),
                    });
                }
            }
        }
        let mut models: Vec<String> = by_model.keys().cloned().collect();
        models.sort();
        clients.keep_used();
        Ok(Self { by_model, models })
    }

    /// The route serving `model`, or 404 naming the models that exist.
    pub fn resolve(&self, model: &str) -> Result<&Arc<Route>, ApiError> {
        self.by_model.get(model).ok_or_else(|| ApiError::ModelNotFound {
            model: model.to_owned(),
            available: self.models.clone(),
        })
    }

    /// Every model name this pod may use, sorted.
    pub fn models(&self) -> &[String] {
        &self.models
    }

    /// Every route once, in model-name order of its first model.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        let mut seen: Vec<Arc<Route>> = Vec::new();
        for model in &self.models {
            if let Some(route) = self.by_model.get(model)
                && !seen.iter().any(|r| Arc::ptr_eq(r, route))
            {
                seen.push(route.clone());
            }
        }
        seen
    }
}

fn compile_route(
    config: &RouteConfig,
    clients: &ClientCache,
    states: &StateRegistry,
    pending: &mut Pending,
) -> Result<Route, CompileError> {
    let spec = &config.spec;
    validate_model_route(spec).map_err(|source| CompileError::Invalid {
        route: config.key.clone(),
        source,
    })?;
    let rules = rules::Rule::compile_all(&spec.rules).map_err(|source| CompileError::Rule {
        route: config.key.clone(),
        source,
    })?;
    let mut backends = Vec::with_capacity(spec.backends.len());
    for (index, backend) in spec.backends.iter().enumerate() {
        let api_key = config.credentials.get(&backend.name).cloned();
        if backend.credentials_ref.is_some() && api_key.is_none() {
            return Err(CompileError::MissingCredentials {
                route: config.key.clone(),
                backend: backend.name.clone(),
            });
        }
        let headers = extra_headers(config, backend)?;
        let client = clients.upstream(&backend.timeouts, &headers)?;
        let identity_client = clients.identity(&backend.timeouts)?;
        let upstream =
            Upstream::new(backend, api_key, client, identity_client).map_err(|source| CompileError::Unsupported {
                route: config.key.clone(),
                backend: backend.name.clone(),
                source,
            })?;
        backends.push(Arc::new(BackendRuntime {
            name: backend.name.clone(),
            provider: backend.provider,
            model: backend.model.clone(),
            upstream,
            timeouts: backend.timeouts,
            pricing: backend.pricing,
            weight: backend.weight,
            priority: backend.priority,
            index,
            state: states.backend(pending, &config.key, backend),
            series: Default::default(),
            name_header: HeaderValue::try_from(backend.name.as_str()).ok(),
        }));
    }
    // Priority order, stable so equal priorities keep their written order; the strategy
    // reorders per request.
    backends.sort_by_key(|b| b.priority);
    let tokenizer = backends.first().map_or(Tokenizer::Estimate, |b| {
        Tokenizer::for_backend(b.provider, b.model.as_str())
    });
    Ok(Route {
        key: config.key.clone(),
        backends,
        strategy: spec.strategy,
        rules,
        retry: spec.retry.clone(),
        circuit_breaker: spec.circuit_breaker,
        tokenizer,
        state: states.route(pending, config),
        budget: spec.budget_ref.as_ref().map(|b| ObjectKey {
            namespace: config.key.namespace.clone(),
            name: b.name.clone(),
        }),
        key_header: HeaderValue::try_from(config.key.to_string()).ok(),
    })
}

/// A backend's `headers`, values resolved: written ones as they are, Secret ones from the
/// snapshot and marked sensitive (kept out of debug output and HTTP/2 header tables).
fn extra_headers(config: &RouteConfig, backend: &sluice_crds::Backend) -> Result<Vec<ExtraHeader>, CompileError> {
    let mut out = Vec::with_capacity(backend.headers.len());
    for header in &backend.headers {
        let bad = || CompileError::BadHeader {
            route: config.key.clone(),
            backend: backend.name.clone(),
            header: header.name.clone(),
        };
        let name = http::HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| bad())?;
        let value = match (&header.value, &header.value_from) {
            (Some(value), _) => http::HeaderValue::from_str(value).map_err(|_| bad())?,
            (None, _) => {
                let secret = config
                    .header_values
                    .get(&backend.name)
                    .and_then(|values| values.get(&header.name))
                    .ok_or_else(|| CompileError::MissingHeaderValue {
                        route: config.key.clone(),
                        backend: backend.name.clone(),
                        header: header.name.clone(),
                    })?;
                let mut value = http::HeaderValue::from_str(secret.expose()).map_err(|_| bad())?;
                value.set_sensitive(true);
                value
            }
        };
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
