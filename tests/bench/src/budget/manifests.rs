//! The Budget and ModelRoute the shared-budget benchmark's sidecars run, in `kubectl apply` form.

use sluice_crds::MicroUsd;

/// The route every pod's labels select.
pub const ROUTE: &str = "shared";
/// The budget it spends from.
pub const BUDGET: &str = "shared";
/// The label that selects the pods.
pub const APP_LABEL: (&str, &str) = ("app", "shared-budget");
/// The model clients ask for.
pub const MODEL: &str = "shared";
/// The model of the measured route (its own Budget and a route-wide limit; `route.rs`).
pub const MEASURE_MODEL: &str = "measured";
/// Its route-wide limit per minute: far above what one run can send, so it never refuses, yet
/// split among the sidecars by the operator like any route-wide limit.
const MEASURE_RPM: u64 = 60_000_000;
/// Its route-wide token limit per minute, as far above the run.
const MEASURE_TPM: u64 = 4_000_000_000;
/// `completion_tokens` of every `bench-upstream` answer (`src/upstream.rs`).
pub const COMPLETION_TOKENS: u64 = 9;
/// The price of an output token: $10 per million, so every answer costs exactly $0.00009.
pub const OUTPUT_PER_MTOK: &str = "10.00";
/// What one served request costs.
pub const REQUEST_COST: MicroUsd = MicroUsd::new(COMPLETION_TOKENS * 10);
/// `max_tokens` of every request: the sidecar reserves this worst case before the call and
/// settles at the real cost, as a hard budget does for every client.
pub const MAX_TOKENS: u64 = 16;

/// A hard Budget of `limit` and the route onto `upstream` (`host:port`).
pub fn manifests(limit: MicroUsd, upstream: &str) -> String {
    let (key, value) = APP_LABEL;
    format!(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {{name: {BUDGET}}}
spec: {{limitUSD: "{limit}", period: monthly, enforcement: hard}}
---
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: {ROUTE}}}
spec:
  models: [{MODEL}]
  podSelector: {{matchLabels: {{{key}: {value}}}}}
  budgetRef: {{name: {BUDGET}}}
  backends:
  - name: up
    provider: openai-compatible
    baseUrl: "http://{upstream}/v1"
    model: bench
    pricing: {{inputPerMTok: "0", outputPerMTok: "{OUTPUT_PER_MTOK}"}}
---
apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {{name: measured}}
spec: {{limitUSD: "1000000.00", period: monthly, enforcement: hard}}
---
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: measured}}
spec:
  models: [{MEASURE_MODEL}]
  podSelector: {{matchLabels: {{{key}: {value}}}}}
  budgetRef: {{name: measured}}
  rateLimit: {{requestsPerMinute: {MEASURE_RPM}, tokensPerMinute: {MEASURE_TPM}}}
  backends:
  - name: up
    provider: openai-compatible
    baseUrl: "http://{upstream}/v1"
    model: bench
    pricing: {{inputPerMTok: "0", outputPerMTok: "{OUTPUT_PER_MTOK}"}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_hard_and_priced_so_a_request_costs_ninety_micro_dollars() {
        let text = manifests(MicroUsd::new(2_700_000), "127.0.0.1:1");
        assert!(text.contains(r#"limitUSD: "2.700000""#), "{text}");
        assert!(text.contains("enforcement: hard"));
        assert_eq!(REQUEST_COST, MicroUsd::new(90));
        assert!(
            text.contains("rateLimit: {requestsPerMinute: 60000000, tokensPerMinute: 4000000000}"),
            "{text}"
        );
    }
}
