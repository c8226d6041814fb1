//! The Budget and ModelRoute the simulated sidecars run, in `kubectl apply` form.
//!
//! Each change rewrites the backend's model to `fanout-v<n>`: the route's content changes, so
//! every selected sidecar gets a new snapshot version, and the model names which change a
//! snapshot carries.

/// The route every simulated pod's labels select.
pub const ROUTE: &str = "fanout";
/// The budget the route spends from.
pub const BUDGET: &str = "fanout";
/// The backend the usage reports name.
pub const BACKEND: &str = "up";
/// The label that selects the pods.
pub const APP_LABEL: (&str, &str) = ("app", "fanout");

/// The upstream model of change `n` (0: the state before the first change).
pub fn model(n: usize) -> String {
    format!("fanout-v{n}")
}

/// The Budget and the ModelRoute at change `n`. The budget is large (a share of $1,000 for
/// each of 1,000 pods) so allowances never run short and no re-grant adds pushes; the route has
/// a route-wide rate limit so each snapshot carries a computed per-pod share.
pub fn manifests(n: usize) -> String {
    let (key, value) = APP_LABEL;
    let model = model(n);
    format!(
        r#"
apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {{name: {BUDGET}}}
spec: {{limitUSD: "1000000.00", period: monthly}}
---
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {{name: {ROUTE}}}
spec:
  models: [fanout]
  podSelector: {{matchLabels: {{{key}: {value}}}}}
  budgetRef: {{name: {BUDGET}}}
  rateLimit: {{requestsPerMinute: 600000}}
  backends:
  - name: {BACKEND}
    provider: openai-compatible
    baseUrl: "http://127.0.0.1:9/v1"
    model: {model}
    pricing: {{inputPerMTok: "1.00", outputPerMTok: "2.00"}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_names_its_model_once() {
        let text = manifests(3);
        assert_eq!(text.matches("model: fanout-v3").count(), 1);
        assert!(!manifests(4).contains("fanout-v3"));
    }
}
