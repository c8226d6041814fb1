//! The config snapshot: everything one sidecar needs, as the operator or the local loader builds it.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{BackendName, BudgetSpec, MicroUsd, ModelRouteSpec};

/// A provider API key. Its `Debug` never shows the key; only the wire form carries it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key, for the one place that puts it into an upstream request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Identifies a namespaced resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The version of a snapshot: a digest of its content, so equal content has equal versions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigVersion(String);

impl ConfigVersion {
    /// The version as text (`sha256:…`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConfigVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A full, versioned configuration for one sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSnapshot {
    /// Digest of `routes` and `budgets`.
    pub version: ConfigVersion,
    /// Routes that select this sidecar's pod.
    pub routes: Vec<RouteConfig>,
    /// Budgets those routes spend from, with this sidecar's allowance.
    pub budgets: Vec<BudgetConfig>,
}

/// One route as a sidecar runs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteConfig {
    /// Which resource this came from.
    pub key: ObjectKey,
    /// The validated spec.
    pub spec: ModelRouteSpec,
    /// API keys by backend name, resolved from the referenced Secrets.
    #[serde(default)]
    pub credentials: BTreeMap<BackendName, ApiKey>,
    /// Values of the backends' `headers` given by `valueFrom`, by backend and header name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header_values: BTreeMap<BackendName, BTreeMap<String, ApiKey>>,
    /// This sidecar's share of the route-wide limits.
    #[serde(default)]
    pub share: LimitShare,
}

/// A sidecar's share of route-wide limits; `None` means no route-wide limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitShare {
    /// Requests per minute for this sidecar.
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute for this sidecar.
    pub tokens_per_minute: Option<u32>,
}

/// One budget as a sidecar enforces it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetConfig {
    /// Which resource this came from.
    pub key: ObjectKey,
    /// The validated spec.
    pub spec: BudgetSpec,
    /// Money this sidecar may spend in the period (its own spend included) before it must ask
    /// for more.
    pub allowance: MicroUsd,
    /// Start of the period `allowance` was granted for: a sidecar counts a grant of any other
    /// period as zero, so last period's allowance never spends this period's money. `None`
    /// (local mode, where the allowance is the whole limit): valid in every period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowance_period_start: Option<jiff::Timestamp>,
    /// The budget's money for the period is spent (the operator's reported spend reached the
    /// limit): a sidecar whose allowance is used up refuses with `budget_exceeded` until the
    /// period ends, rather than asking for more.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exhausted: bool,
}

impl ConfigSnapshot {
    /// Builds a snapshot whose version is the SHA-256 of its content.
    pub fn new(routes: Vec<RouteConfig>, budgets: Vec<BudgetConfig>) -> Self {
        #[derive(Serialize)]
        struct Content<'a> {
            routes: &'a [RouteConfig],
            budgets: &'a [BudgetConfig],
        }
        let content = Content {
            routes: &routes,
            budgets: &budgets,
        };
        let mut hasher = Sha256::new();
        // Serializing plain data to a Vec cannot fail; an empty digest input would still version it.
        if let Ok(bytes) = serde_json::to_vec(&content) {
            hasher.update(bytes);
        }
        let version = ConfigVersion(format!("sha256:{:x}", hasher.finalize()));
        Self {
            version,
            routes,
            budgets,
        }
    }
}
