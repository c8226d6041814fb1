//! The objects, paths and expected bodies the mocked-API-server tests share: the route `chat`
//! and the Budget `monthly` of namespace [`NS`], their Secret and ledger, and the conditions
//! the operator writes.

use serde_json::{Value, json};

/// The namespace every fixture lives in.
pub const NS: &str = "team-a";
/// A transition time from before the test, which a condition that keeps its status keeps.
pub const EARLIER: &str = "2025-06-01T00:00:00Z";

/// The path of the ledger ConfigMap of [`NS`], in the operator's namespace.
pub const LEDGER_PATH: &str = "/api/v1/namespaces/sluice-system/configmaps/sluice-usage-team-a";

/// The status subresource of a `sluice.dev` object of [`NS`], applied as the operator.
pub fn status_path(resource: &str, name: &str) -> String {
    format!(
        "/apis/sluice.dev/v1alpha1/namespaces/team-a/{resource}/{name}/status?&force=true&fieldManager=sluice-operator"
    )
}

/// The `metav1.Condition` JSON the operator writes.
pub fn condition(kind: &str, status: bool, reason: &str, message: &str, generation: i64, since: &str) -> Value {
    json!({
        "lastTransitionTime": since, "message": message, "observedGeneration": generation,
        "reason": reason, "status": if status { "True" } else { "False" }, "type": kind,
    })
}

/// The ledger ConfigMap of [`NS`] holding `ledger` (a JSON document), at `resource_version`
/// (`None`: as created, before the API server gives it one).
pub fn ledger_configmap(ledger: &Value, resource_version: Option<&str>) -> Value {
    let mut cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": "sluice-usage-team-a", "namespace": "sluice-system",
            "labels": {"app.kubernetes.io/managed-by": "sluice-operator", "sluice.dev/namespace": NS},
        },
        "data": {"ledger.json": ledger.to_string()},
    });
    if let Some(version) = resource_version {
        cm["metadata"]["resourceVersion"] = json!(version);
    }
    cm
}

/// The Secret `openai` of [`NS`] with `data` (values base64).
pub fn secret(data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "openai", "namespace": NS, "resourceVersion": "40"},
        "data": data,
    })
}

/// The ModelRoute `chat` of [`NS`]: one priced OpenAI backend keyed by Secret `openai`, with
/// `extra` merged into its spec and `status` as given.
pub fn chat_route(generation: i64, extra: Value, status: Value) -> Value {
    let mut spec = json!({
        "models": ["chat"],
        "backends": [{
            "name": "openai", "provider": "openai", "model": "gpt-4.1",
            "credentialsRef": {"name": "openai", "key": "apiKey"},
            "pricing": {"inputPerMTok": "2.00", "outputPerMTok": "8.00"},
        }],
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    let mut route = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "ModelRoute",
        "metadata": {"name": "chat", "namespace": NS, "uid": "route-uid", "generation": generation, "resourceVersion": "100"},
        "spec": spec,
    });
    if !status.is_null() {
        route["status"] = status;
    }
    route
}

/// The Budget `monthly` of [`NS`] with `spec` and `status` as given.
pub fn monthly_budget(spec: Value, status: Value) -> Value {
    let mut budget = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Budget",
        "metadata": {"name": "monthly", "namespace": NS, "uid": "budget-uid", "generation": 1, "resourceVersion": "200"},
        "spec": spec,
    });
    if !status.is_null() {
        budget["status"] = status;
    }
    budget
}

/// The status of the never-ending 100 USD Budget `monthly` having spent `spent` USD (with
/// `remaining` left), all of it on route `chat` and model `gpt-4.1`, with `conditions`.
pub fn budget_status(spent: &str, remaining: &str, conditions: [Value; 3]) -> Value {
    json!({
        "observedGeneration": 1, "periodStart": "1970-01-01T00:00:00+00:00",
        "spentUSD": spent, "remainingUSD": remaining,
        "byRoute": {"chat": spent}, "byModel": {"gpt-4.1": spent},
        "conditions": conditions,
    })
}

/// `Ready` of a valid budget, true since `since`.
pub fn counting(since: &str) -> Value {
    condition("Ready", true, "Counting", "", 1, since)
}

/// `Exhausted` of the 100 USD budget having spent `spent` USD, at that status since `since`.
pub fn exhausted(reached: bool, spent: &str, since: &str) -> Value {
    let (reason, figures) = (
        if reached { "LimitReached" } else { "WithinLimit" },
        spent_of_100(spent),
    );
    condition("Exhausted", reached, reason, &figures, 1, since)
}

/// `ThresholdReached` of the 100 USD budget having spent `spent` USD, `crossed` the highest
/// threshold reached (`None`: below all), at that status since `since`.
pub fn threshold(crossed: Option<u32>, spent: &str, since: &str) -> Value {
    let figures = spent_of_100(spent);
    match crossed {
        Some(t) => {
            let message = format!("{t}% of the limit reached: {figures}");
            condition("ThresholdReached", true, "ThresholdCrossed", &message, 1, since)
        }
        None => condition("ThresholdReached", false, "BelowThresholds", &figures, 1, since),
    }
}

/// How a budget condition's message gives `spent` USD of a 100 USD limit.
pub fn spent_of_100(spent: &str) -> String {
    format!("{spent} of 100.000000 USD spent")
}
