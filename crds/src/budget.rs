//! The `Budget` resource: money a set of routes may spend per period.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{BackendName, MicroUsd};

/// Money that every route naming this budget may spend together per period.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Budget",
    doc = "Money that every route naming this budget may spend together per period.",
    plural = "budgets",
    shortname = "bud",
    category = "sluice",
    namespaced,
    status = "BudgetStatus",
    printcolumn = r#"{"name":"Limit","type":"string","jsonPath":".spec.limitUSD"}"#,
    printcolumn = r#"{"name":"Spent","type":"string","jsonPath":".status.spentUSD"}"#,
    printcolumn = r#"{"name":"Remaining","type":"string","jsonPath":".status.remainingUSD"}"#,
    printcolumn = r#"{"name":"Period","type":"string","jsonPath":".spec.period"}"#,
    printcolumn = r#"{"name":"Enforcement","type":"string","jsonPath":".spec.enforcement"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.enforcement != 'downgrade' || size(self.downgradeTo) > 0").message("enforcement downgrade needs at least one backend in downgradeTo").field_path(".downgradeTo"),
    validation = Rule::new("self.alertThresholds.all(t, self.alertThresholds.exists_one(u, u == t))").message("alert thresholds must be unique").field_path(".alertThresholds")
)]
pub struct BudgetSpec {
    /// Money allowed per period.
    #[serde(rename = "limitUSD")]
    pub limit_usd: MicroUsd,
    /// When spend resets.
    #[serde(default)]
    pub period: Period,
    /// IANA time zone in which periods start.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// What happens once the limit is reached.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// Backend names used once the limit is reached (enforcement `downgrade`).
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub downgrade_to: Vec<BackendName>,
    /// Percentages of the limit whose crossing sets a condition and emits an Event.
    #[serde(default = "default_thresholds")]
    #[schemars(length(max = 16), inner(range(min = 1, max = 1000)))]
    pub alert_thresholds: Vec<u32>,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}
fn default_thresholds() -> Vec<u32> {
    vec![50, 80, 100]
}

/// When a budget's spend resets.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Period {
    /// At midnight.
    Daily,
    /// At midnight starting Monday.
    Weekly,
    /// At midnight on the first of the month.
    #[default]
    Monthly,
    /// Never: a lifetime limit.
    Never,
}

/// What happens once a budget's limit is reached.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// Refuse with 429 `budget_exceeded`.
    #[default]
    Hard,
    /// Only report.
    Soft,
    /// Serve from the `downgradeTo` backends only.
    Downgrade,
}

/// What the operator observed of a budget.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Start of the current period, RFC 3339 with offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start: Option<String>,
    /// Spent in the current period.
    #[serde(rename = "spentUSD", default)]
    pub spent_usd: MicroUsd,
    /// Left in the current period.
    #[serde(rename = "remainingUSD", default)]
    pub remaining_usd: MicroUsd,
    /// Spend by route name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_route: BTreeMap<String, MicroUsd>,
    /// Spend by upstream model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_model: BTreeMap<String, MicroUsd>,
    /// `Exhausted`, `ThresholdReached` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
