//! The `ModelRoute` resource: which models a workload may call, through which backends.

mod clouds;
mod policy;
mod status;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use self::{
    clouds::{AzureAuth, AzureSpec, BedrockSpec, ExtraHeader, RESERVED_HEADERS, VertexPublisher, VertexSpec},
    policy::{Backoff, CachePolicy, CircuitBreaker, PerUserLimit, RateLimit, RetryOn, RetryPolicy},
    status::{BackendStatus, CircuitState, ModelRouteStatus, RouteUsage, SidecarCounts},
};
use crate::{BackendName, Duration, MicroUsd, ModelName, Ratio};

/// What a workload may call and how: models, backends, strategy, limits, retries, cache, budget.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "ModelRoute",
    doc = "Which models a workload may call, through which providers, at what rate and for how much money.",
    plural = "modelroutes",
    shortname = "mr",
    category = "sluice",
    namespaced,
    status = "ModelRouteStatus",
    printcolumn = r#"{"name":"Models","type":"string","jsonPath":".spec.models"}"#,
    printcolumn = r#"{"name":"Strategy","type":"string","jsonPath":".spec.strategy"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"In Sync","type":"integer","jsonPath":".status.sidecars.inSync"}"#,
    printcolumn = r#"{"name":"Cost","type":"string","jsonPath":".status.usage.costUSD"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.backends.all(b, self.backends.exists_one(c, c.name == b.name))").message("backend names must be unique").field_path(".backends"),
    validation = Rule::new("!has(self.rules) || self.rules.all(r, r.backends.all(n, self.backends.exists(b, b.name == n)))").message("every backend a rule names must be one of spec.backends").field_path(".rules"),
    validation = Rule::new("self.models.all(m, self.models.exists_one(n, n == m))").message("model names must be unique").field_path(".models")
)]
pub struct ModelRouteSpec {
    /// Names a client may send as `model`; each resolves to the backends below.
    #[schemars(length(min = 1, max = 64))]
    pub models: Vec<ModelName>,
    /// Pods whose sidecars get this route; omitted means every injected pod in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// How a backend is chosen among the candidates.
    #[serde(default)]
    pub strategy: Strategy,
    /// The upstreams that can serve this route.
    #[schemars(length(min = 1, max = 32))]
    pub backends: Vec<Backend>,
    /// Content-based routing: the first rule whose `when` matches narrows the backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub rules: Vec<RoutingRule>,
    /// Retries and backoff across attempts.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// When a failing backend is taken out of rotation.
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
    /// Limits for the route across all of its sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Limits per user (`x-sluice-user` header or the body's `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_user: Option<PerUserLimit>,
    /// Exact-match response cache for deterministic requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CachePolicy>,
    /// The Budget (same namespace) this route spends from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_ref: Option<LocalRef>,
}

/// How a backend is chosen among the candidates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// An ordered fallback chain by `priority`.
    #[default]
    Priority,
    /// Smooth weighted choice by `weight`, then the rest as fallbacks.
    Weighted,
    /// Lowest peak-EWMA latency times in-flight requests, power of two choices.
    LeastLatency,
    /// Cheapest healthy backend for this request's estimated tokens.
    LeastCost,
}

/// One upstream that can serve the route.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.provider != 'openai-compatible' || has(self.baseUrl)").message("openai-compatible backends need a baseUrl"),
    validation = Rule::new("!(self.provider in ['openai', 'anthropic', 'gemini']) || has(self.credentialsRef)").message("openai, anthropic and gemini backends need a credentialsRef"),
    validation = Rule::new("!has(self.simulator) || self.provider == 'simulator'").message("simulator settings are only allowed with provider simulator"),
    validation = Rule::new("self.provider != 'azure-openai' || has(self.baseUrl)").message("azure-openai backends need a baseUrl: the resource's endpoint"),
    validation = Rule::new("self.provider != 'azure-openai' || (has(self.azure) && self.azure.auth == 'entra-id') || has(self.credentialsRef)").message("azure-openai backends need a credentialsRef unless azure.auth is entra-id"),
    validation = Rule::new("!has(self.azure) || self.provider == 'azure-openai'").message("azure settings are only allowed with provider azure-openai"),
    validation = Rule::new("!has(self.azure) || !has(self.azure.deployment) || has(self.azure.apiVersion)").message("azure.deployment needs azure.apiVersion"),
    validation = Rule::new("(self.provider == 'bedrock') == has(self.bedrock)").message("provider bedrock needs bedrock settings, and only it may have them"),
    validation = Rule::new("(self.provider == 'vertex') == has(self.vertex)").message("provider vertex needs vertex settings, and only it may have them")
)]
pub struct Backend {
    /// Unique name of this backend within the route.
    pub name: BackendName,
    /// Which wire protocol the upstream speaks.
    pub provider: Provider,
    /// API root as the provider's own SDK takes it; defaulted for the named providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub base_url: Option<String>,
    /// The upstream's own model name.
    pub model: ModelName,
    /// The Secret key that holds the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<SecretKeyRef>,
    /// Relative share for the weighted strategy.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 1000))]
    pub weight: u32,
    /// Order for the priority strategy: lower is tried first.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub priority: u32,
    /// Prices per million tokens, for cost accounting and least-cost routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
    /// Limits for this backend in this sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<BackendLimits>,
    /// Connect, first-byte and total timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Behaviour of the built-in simulator (provider `simulator` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulator: Option<SimulatorSpec>,
    /// Azure OpenAI settings (provider `azure-openai` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureSpec>,
    /// Amazon Bedrock settings (required with provider `bedrock`, and only there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bedrock: Option<BedrockSpec>,
    /// Google Vertex AI settings (required with provider `vertex`, and only there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertex: Option<VertexSpec>,
    /// Headers sent with every request to this backend, for a gateway or proxy in front of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<ExtraHeader>,
}

fn default_weight() -> u32 {
    1
}

/// The wire protocol a backend speaks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// OpenAI's API.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API.
    Gemini,
    /// Any server speaking OpenAI's API (DeepSeek, vLLM, Ollama, aggregators).
    OpenaiCompatible,
    /// Sluice's built-in simulated model: no key, no network.
    Simulator,
    /// OpenAI models deployed in Azure OpenAI.
    AzureOpenai,
    /// Amazon Bedrock's Converse API.
    Bedrock,
    /// Gemini and Claude models on Google Vertex AI.
    Vertex,
}

impl Provider {
    /// The API root used when `baseUrl` is omitted; `None` when one is required or meaningless.
    pub const fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::Openai => Some("https://api.openai.com/v1"),
            Self::Anthropic => Some("https://api.anthropic.com"),
            Self::Gemini => Some("https://generativelanguage.googleapis.com"),
            // The clouds' endpoints depend on the region or resource; see their settings.
            Self::OpenaiCompatible | Self::Simulator | Self::AzureOpenai | Self::Bedrock | Self::Vertex => None,
        }
    }

    /// Whether calls always need a `credentialsRef` (the clouds may use the pod's identity instead).
    pub const fn needs_credentials(self) -> bool {
        matches!(self, Self::Openai | Self::Anthropic | Self::Gemini)
    }
}

/// A key in a Secret of the route's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A reference to another object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalRef {
    /// The object's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Prices in US dollars per million tokens.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    /// Per million prompt tokens.
    pub input_per_m_tok: MicroUsd,
    /// Per million completion tokens.
    pub output_per_m_tok: MicroUsd,
    /// Per million prompt tokens served from the provider's cache; defaults to the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_m_tok: Option<MicroUsd>,
    /// Per million prompt tokens written to the provider's cache (Anthropic's 5-minute writes list
    /// at 1.25× input); defaults to the input price, as providers without a write surcharge bill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_input_per_m_tok: Option<MicroUsd>,
}

/// Limits for one backend in one sidecar.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendLimits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<u32>,
    /// Prompt plus completion tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u32>,
    /// Requests in flight at once; more wait in a bounded priority queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrency: Option<u32>,
}

/// Per-attempt time bounds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Timeouts {
    /// To establish a connection.
    pub connect: Duration,
    /// From sending the request to the first byte of the answer.
    pub first_byte: Duration,
    /// For the whole request, all attempts included.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// Behaviour of the built-in simulator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct SimulatorSpec {
    /// Delay before the first token.
    pub time_to_first_token: Duration,
    /// Delay between tokens.
    pub per_token: Duration,
    /// Completion length in tokens (capped by the request's `max_tokens`).
    #[schemars(range(min = 1, max = 100000))]
    pub output_tokens: u32,
    /// Fraction of requests that fail.
    pub error_rate: Ratio,
    /// How a simulated failure looks.
    pub error_kind: SimulatedError,
    /// Seed for deterministic text and failures; omitted means a random seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Length of embedding vectors.
    #[schemars(range(min = 1, max = 4096))]
    pub embedding_dimensions: u32,
}

impl Default for SimulatorSpec {
    fn default() -> Self {
        Self {
            time_to_first_token: Duration::from_millis(50),
            per_token: Duration::from_millis(5),
            output_tokens: 64,
            error_rate: Ratio::ZERO,
            error_kind: SimulatedError::default(),
            seed: None,
            embedding_dimensions: 16,
        }
    }
}

/// How a simulated failure looks to the caller.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SimulatedError {
    /// HTTP 500 with an OpenAI-shaped error.
    #[default]
    ServerError,
    /// HTTP 429 with `Retry-After: 1`.
    RateLimited,
    /// HTTP 529, the provider is overloaded.
    Overloaded,
}

/// A content-based routing rule: when `when` matches, only `backends` are candidates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingRule {
    /// Conditions that must all hold; an empty `when` matches every request.
    #[serde(default)]
    pub when: RuleMatch,
    /// The backends this rule narrows to.
    #[schemars(length(min = 1, max = 32))]
    pub backends: Vec<BackendName>,
}

/// Conditions of a routing rule; every given one must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleMatch {
    /// The prompt has at least this many tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_prompt_tokens: Option<u32>,
    /// The prompt has at most this many tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<u32>,
    /// The last user message contains one of these words (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub any_keyword: Vec<String>,
    /// A request header has this exact value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    /// The request does (true) or does not (false) declare tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_tools: Option<bool>,
    /// The request does (true) or does not (false) contain images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_images: Option<bool>,
}

/// A request header and the value it must have.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct HeaderMatch {
    /// Header name, case-insensitive.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))]
    pub name: String,
    /// Exact value.
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// Labels of the route's backends by name, for lookups.
pub type BackendsByName<'a> = BTreeMap<&'a str, &'a Backend>;

impl ModelRouteSpec {
    /// The route's backends indexed by name.
    pub fn backends_by_name(&self) -> BackendsByName<'_> {
        self.backends.iter().map(|b| (b.name.as_str(), b)).collect()
    }
}
