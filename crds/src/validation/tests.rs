#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};

use super::*;
use crate::{
    Budget, ModelRoute,
    manifest::{Manifest, ManifestError, parse_manifests},
};

/// A valid route: an OpenAI backend with a key and prices, a simulator fallback, one rule.
fn route() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "ModelRoute",
        "metadata": {"name": "chat", "namespace": "team-a"},
        "spec": {
            "models": ["chat", "gpt-4o"],
            "backends": [
                {
                    "name": "primary",
                    "provider": "openai",
                    "model": "gpt-4o",
                    "credentialsRef": {"name": "openai", "key": "apiKey"},
                    "pricing": {"inputPerMTok": "2.50", "outputPerMTok": "10.00"},
                    "limits": {"requestsPerMinute": 100},
                    "timeouts": {"connect": "2s", "firstByte": "30s", "total": "60s"}
                },
                {
                    "name": "local",
                    "provider": "simulator",
                    "model": "sim-1",
                    "priority": 1,
                    "simulator": {"seed": 7}
                }
            ],
            "rules": [{"when": {"maxPromptTokens": 2000}, "backends": ["local"]}],
            "retry": {"attempts": 3, "backoff": {"base": "200ms", "max": "10s"}},
            "rateLimit": {"requestsPerMinute": 1000},
            "perUser": {"requestsPerMinute": 60},
            "budgetRef": {"name": "team"}
        }
    })
}

/// A valid budget.
fn budget() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Budget",
        "metadata": {"name": "team", "namespace": "team-a"},
        "spec": {"limitUSD": "100.00", "timeZone": "Europe/Berlin", "alertThresholds": [50, 80, 100]}
    })
}

/// How a case must be refused.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// The document does not fit its type (serde, before any rule runs).
    Shape,
    /// The document fits its type but breaks a rule.
    Rule,
}

/// One invalid resource: `base` edited by `edit` must be refused with exactly one error at `path`.
struct Case {
    name: &'static str,
    base: Base,
    edit: Edit,
    refused: Refused,
    path: &'static str,
    message: &'static str,
}

fn spec(doc: &mut Value) -> &mut Value {
    &mut doc["spec"]
}

fn backend(doc: &mut Value, i: usize) -> &mut Value {
    &mut doc["spec"]["backends"][i]
}

fn push_backend(doc: &mut Value, backend: Value) {
    doc["spec"]["backends"].as_array_mut().unwrap().push(backend);
}

fn remove(value: &mut Value, field: &str) {
    value.as_object_mut().unwrap().remove(field);
}

const CASES: &[Case] = &[
    // ---- Shape: refused while parsing, with the serde path ----
    Case {
        name: "bad duration",
        base: route,
        edit: |d| backend(d, 0)["timeouts"]["connect"] = json!("2 seconds"),
        refused: Refused::Shape,
        path: "spec.backends[0].timeouts.connect",
        message: r#"invalid duration "2 seconds": expected groups like 250ms, 30s, 5m or 1h"#,
    },
    Case {
        name: "duration without unit",
        base: route,
        edit: |d| spec(d)["retry"]["backoff"]["max"] = json!("10"),
        refused: Refused::Shape,
        path: "spec.retry.backoff.max",
        message: r#"duration "10" lacks a unit"#,
    },
    Case {
        name: "negative price",
        base: route,
        edit: |d| backend(d, 0)["pricing"]["inputPerMTok"] = json!("-2.50"),
        refused: Refused::Shape,
        path: "spec.backends[0].pricing.inputPerMTok",
        message: r#""-2.50" is negative"#,
    },
    Case {
        name: "price with more than six decimals",
        base: route,
        edit: |d| backend(d, 0)["pricing"]["outputPerMTok"] = json!("0.0000001"),
        refused: Refused::Shape,
        path: "spec.backends[0].pricing.outputPerMTok",
        message: "more than 6 decimal places",
    },
    Case {
        name: "price written as a YAML number",
        base: route,
        edit: |d| backend(d, 0)["pricing"]["inputPerMTok"] = json!(2.5),
        refused: Refused::Shape,
        path: "spec.backends[0].pricing.inputPerMTok",
        message: "expected a string",
    },
    Case {
        name: "negative cache-write price",
        base: route,
        edit: |d| backend(d, 0)["pricing"]["cacheWriteInputPerMTok"] = json!("-3.75"),
        refused: Refused::Shape,
        path: "spec.backends[0].pricing.cacheWriteInputPerMTok",
        message: r#""-3.75" is negative"#,
    },
    Case {
        name: "cache-write price with more than six decimals",
        base: route,
        edit: |d| backend(d, 0)["pricing"]["cacheWriteInputPerMTok"] = json!("3.7500001"),
        refused: Refused::Shape,
        path: "spec.backends[0].pricing.cacheWriteInputPerMTok",
        message: "more than 6 decimal places",
    },
    Case {
        name: "backend name not a DNS label",
        base: route,
        edit: |d| backend(d, 1)["name"] = json!("Local_Sim"),
        refused: Refused::Shape,
        path: "spec.backends[1].name",
        message: r#"invalid backend name "Local_Sim""#,
    },
    Case {
        name: "model name with a line break",
        base: route,
        edit: |d| spec(d)["models"][1] = json!("gpt-4o\r\nx-evil: 1"),
        refused: Refused::Shape,
        path: "spec.models[1]",
        message: "invalid model name",
    },
    Case {
        name: "unknown provider",
        base: route,
        edit: |d| backend(d, 0)["provider"] = json!("azure"),
        refused: Refused::Shape,
        path: "spec.backends[0].provider",
        message: "unknown variant `azure`",
    },
    Case {
        name: "unknown strategy",
        base: route,
        edit: |d| spec(d)["strategy"] = json!("random"),
        refused: Refused::Shape,
        path: "spec.strategy",
        message: "unknown variant `random`",
    },
    Case {
        name: "error rate above one",
        base: route,
        edit: |d| backend(d, 1)["simulator"]["errorRate"] = json!("1.5"),
        refused: Refused::Shape,
        path: "spec.backends[1].simulator.errorRate",
        message: r#""1.5" is above 1"#,
    },
    Case {
        name: "cache size with an unknown unit",
        base: route,
        edit: |d| spec(d)["cache"] = json!({"maxBytes": "64MB"}),
        refused: Refused::Shape,
        path: "spec.cache.maxBytes",
        message: r#"invalid size "64MB""#,
    },
    Case {
        name: "missing backends",
        base: route,
        edit: |d| remove(spec(d), "backends"),
        refused: Refused::Shape,
        path: "spec",
        message: "missing field `backends`",
    },
    Case {
        name: "negative budget limit",
        base: budget,
        edit: |d| spec(d)["limitUSD"] = json!("-1"),
        refused: Refused::Shape,
        path: "spec.limitUSD",
        message: "is negative",
    },
    Case {
        name: "unknown budget period",
        base: budget,
        edit: |d| spec(d)["period"] = json!("yearly"),
        refused: Refused::Shape,
        path: "spec.period",
        message: "unknown variant `yearly`",
    },
    // ---- Rules: refused by validate_model_route ----
    Case {
        name: "no models",
        base: route,
        edit: |d| spec(d)["models"] = json!([]),
        refused: Refused::Rule,
        path: "spec.models",
        message: "list at least one model name",
    },
    Case {
        name: "duplicate models",
        base: route,
        edit: |d| spec(d)["models"] = json!(["chat", "gpt-4o", "chat"]),
        refused: Refused::Rule,
        path: "spec.models[2]",
        message: r#"duplicate model "chat" (also spec.models[0])"#,
    },
    Case {
        name: "no backends",
        base: route,
        edit: |d| {
            spec(d)["backends"] = json!([]);
            remove(spec(d), "rules");
        },
        refused: Refused::Rule,
        path: "spec.backends",
        message: "list at least one backend",
    },
    Case {
        name: "duplicate backend names",
        base: route,
        edit: |d| push_backend(d, json!({"name": "primary", "provider": "simulator", "model": "sim-2"})),
        refused: Refused::Rule,
        path: "spec.backends[2].name",
        message: r#"duplicate backend name "primary" (also spec.backends[0].name)"#,
    },
    Case {
        name: "rule naming a missing backend",
        base: route,
        edit: |d| spec(d)["rules"][0]["backends"] = json!(["local", "ghost"]),
        refused: Refused::Rule,
        path: "spec.rules[0].backends[1]",
        message: r#"names backend "ghost", which is not in spec.backends"#,
    },
    Case {
        name: "rule with no backends",
        base: route,
        edit: |d| spec(d)["rules"][0]["backends"] = json!([]),
        refused: Refused::Rule,
        path: "spec.rules[0].backends",
        message: "list at least one backend",
    },
    Case {
        name: "min prompt tokens above max",
        base: route,
        edit: |d| spec(d)["rules"][0]["when"] = json!({"minPromptTokens": 3000, "maxPromptTokens": 2000}),
        refused: Refused::Rule,
        path: "spec.rules[0].when.minPromptTokens",
        message: "must not exceed maxPromptTokens",
    },
    Case {
        name: "openai-compatible without baseUrl",
        base: route,
        edit: |d| {
            push_backend(
                d,
                json!({"name": "compat", "provider": "openai-compatible", "model": "llama"}),
            )
        },
        refused: Refused::Rule,
        path: "spec.backends[2].baseUrl",
        message: "provider openai-compatible needs a baseUrl such as https://api.deepseek.com/v1",
    },
    Case {
        name: "openai without credentialsRef",
        base: route,
        edit: |d| remove(backend(d, 0), "credentialsRef"),
        refused: Refused::Rule,
        path: "spec.backends[0].credentialsRef",
        message: "this provider needs an API key: set credentialsRef {name, key}",
    },
    Case {
        name: "anthropic without credentialsRef",
        base: route,
        edit: |d| {
            push_backend(
                d,
                json!({"name": "claude", "provider": "anthropic", "model": "claude-sonnet-4"}),
            )
        },
        refused: Refused::Rule,
        path: "spec.backends[2].credentialsRef",
        message: "needs an API key",
    },
    Case {
        name: "azure-openai without a baseUrl",
        base: route,
        edit: |d| {
            push_backend(
                d,
                json!({"name": "az", "provider": "azure-openai", "model": "gpt-4o",
                    "credentialsRef": {"name": "azure", "key": "apiKey"}}),
            )
        },
        refused: Refused::Rule,
        path: "spec.backends[2].baseUrl",
        message: "provider azure-openai needs a baseUrl",
    },
    Case {
        name: "azure-openai with an api key but no credentialsRef",
        base: route,
        edit: |d| {
            push_backend(
                d,
                json!({"name": "az", "provider": "azure-openai", "model": "gpt-4o",
                    "baseUrl": "https://r.openai.azure.com"}),
            )
        },
        refused: Refused::Rule,
        path: "spec.backends[2].credentialsRef",
        message: "needs an API key",
    },
    Case {
        name: "azure deployment without an api version",
        base: route,
        edit: |d| {
            push_backend(
                d,
                json!({"name": "az", "provider": "azure-openai", "model": "gpt-4o",
                    "baseUrl": "https://r.openai.azure.com", "azure": {"deployment": "prod", "auth": "entra-id"}}),
            )
        },
        refused: Refused::Rule,
        path: "spec.backends[2].azure.apiVersion",
        message: "needed with azure.deployment",
    },
    Case {
        name: "azure settings on an openai backend",
        base: route,
        edit: |d| backend(d, 0)["azure"] = json!({"apiVersion": "2024-10-21"}),
        refused: Refused::Rule,
        path: "spec.backends[0].azure",
        message: "only allowed with provider azure-openai",
    },
    Case {
        name: "unknown azure auth",
        base: route,
        edit: |d| {
            push_backend(
                d,
                json!({"name": "az", "provider": "azure-openai", "model": "gpt-4o",
                    "baseUrl": "https://r.openai.azure.com", "azure": {"auth": "managed"}}),
            )
        },
        refused: Refused::Shape,
        path: "spec.backends[2].azure.auth",
        message: "unknown variant",
    },
    Case {
        name: "bedrock without its settings",
        base: route,
        edit: |d| {
            push_backend(
                d,
                json!({"name": "br", "provider": "bedrock", "model": "anthropic.claude-sonnet-4-v1:0"}),
            )
        },
        refused: Refused::Rule,
        path: "spec.backends[2].bedrock",
        message: "provider bedrock needs bedrock settings",
    },
    Case {
        name: "vertex settings on a bedrock backend",
        base: route,
        edit: |d| {
            push_backend(
                d,
                json!({"name": "br", "provider": "bedrock", "model": "amazon.nova-pro-v1:0",
                    "bedrock": {"region": "us-east-1"}, "vertex": {"project": "my-project", "region": "us-east5"}}),
            )
        },
        refused: Refused::Rule,
        path: "spec.backends[2].vertex",
        message: "only allowed with provider vertex",
    },
    Case {
        name: "vertex without its settings",
        base: route,
        edit: |d| {
            push_backend(
                d,
                json!({"name": "vx", "provider": "vertex", "model": "gemini-2.5-pro"}),
            )
        },
        refused: Refused::Rule,
        path: "spec.backends[2].vertex",
        message: "provider vertex needs vertex settings",
    },
    Case {
        name: "header with both value and valueFrom",
        base: route,
        edit: |d| {
            backend(d, 0)["headers"] = json!([{"name": "x-gateway-key", "value": "a",
                "valueFrom": {"name": "gw", "key": "token"}}])
        },
        refused: Refused::Rule,
        path: "spec.backends[0].headers[0]",
        message: "set exactly one of value and valueFrom",
    },
    Case {
        name: "header the transport owns",
        base: route,
        edit: |d| backend(d, 0)["headers"] = json!([{"name": "Content-Length", "value": "1"}]),
        refused: Refused::Rule,
        path: "spec.backends[0].headers[0].name",
        message: "belongs to the transport",
    },
    Case {
        name: "header replacing the backend's own key",
        base: route,
        edit: |d| backend(d, 0)["headers"] = json!([{"name": "Authorization", "value": "Bearer other"}]),
        refused: Refused::Rule,
        path: "spec.backends[0].headers[0].name",
        message: "carries this backend's own credentials",
    },
    Case {
        name: "header replacing azure's api-key",
        base: route,
        edit: |d| {
            push_backend(
                d,
                json!({"name": "az", "provider": "azure-openai", "model": "gpt-4o",
                    "baseUrl": "https://contoso.openai.azure.com", "credentialsRef": {"name": "az", "key": "key"},
                    "headers": [{"name": "api-key", "valueFrom": {"name": "other", "key": "key"}}]}),
            )
        },
        refused: Refused::Rule,
        path: "spec.backends[2].headers[0].name",
        message: "carries this backend's own credentials",
    },
    Case {
        name: "header set twice",
        base: route,
        edit: |d| {
            backend(d, 0)["headers"] = json!([{"name": "x-team", "value": "a"}, {"name": "X-Team", "value": "b"}])
        },
        refused: Refused::Rule,
        path: "spec.backends[0].headers[1].name",
        message: "is set twice",
    },
    Case {
        name: "simulator settings on a non-simulator backend",
        base: route,
        edit: |d| backend(d, 0)["simulator"] = json!({"seed": 1}),
        refused: Refused::Rule,
        path: "spec.backends[0].simulator",
        message: "only allowed with provider simulator",
    },
    Case {
        name: "zero timeout",
        base: route,
        edit: |d| backend(d, 0)["timeouts"]["connect"] = json!("0s"),
        refused: Refused::Rule,
        path: "spec.backends[0].timeouts.connect",
        message: "must be above zero",
    },
    Case {
        name: "firstByte above total",
        base: route,
        edit: |d| backend(d, 0)["timeouts"] = json!({"firstByte": "2m", "total": "1m"}),
        refused: Refused::Rule,
        path: "spec.backends[0].timeouts.firstByte",
        message: "must not exceed timeouts.total",
    },
    Case {
        name: "backoff base above max",
        base: route,
        edit: |d| spec(d)["retry"]["backoff"] = json!({"base": "20s", "max": "10s"}),
        refused: Refused::Rule,
        path: "spec.retry.backoff.base",
        message: "must not exceed spec.retry.backoff.max",
    },
    Case {
        name: "zero retry attempts",
        base: route,
        edit: |d| spec(d)["retry"]["attempts"] = json!(0),
        refused: Refused::Rule,
        path: "spec.retry.attempts",
        message: "must be at least 1 (the first attempt counts)",
    },
    Case {
        name: "zero consecutive failures",
        base: route,
        edit: |d| spec(d)["circuitBreaker"] = json!({"consecutiveFailures": 0}),
        refused: Refused::Rule,
        path: "spec.circuitBreaker.consecutiveFailures",
        message: "must be at least 1",
    },
    Case {
        name: "weighted with every weight zero",
        base: route,
        edit: |d| {
            spec(d)["strategy"] = json!("weighted");
            backend(d, 0)["weight"] = json!(0);
            backend(d, 1)["weight"] = json!(0);
        },
        refused: Refused::Rule,
        path: "spec.backends",
        message: "strategy weighted needs at least one backend with weight above 0",
    },
    Case {
        name: "zero backend requests per minute",
        base: route,
        edit: |d| backend(d, 0)["limits"]["requestsPerMinute"] = json!(0),
        refused: Refused::Rule,
        path: "spec.backends[0].limits.requestsPerMinute",
        message: "must be at least 1; omit it for no limit",
    },
    Case {
        name: "zero backend tokens per minute",
        base: route,
        edit: |d| backend(d, 0)["limits"]["tokensPerMinute"] = json!(0),
        refused: Refused::Rule,
        path: "spec.backends[0].limits.tokensPerMinute",
        message: "must be at least 1; omit it for no limit",
    },
    Case {
        name: "zero backend concurrency",
        base: route,
        edit: |d| backend(d, 0)["limits"]["maxConcurrency"] = json!(0),
        refused: Refused::Rule,
        path: "spec.backends[0].limits.maxConcurrency",
        message: "must be at least 1; omit it for no limit",
    },
    Case {
        name: "zero route requests per minute",
        base: route,
        edit: |d| spec(d)["rateLimit"]["requestsPerMinute"] = json!(0),
        refused: Refused::Rule,
        path: "spec.rateLimit.requestsPerMinute",
        message: "must be at least 1; omit it for no limit",
    },
    Case {
        name: "zero per-user requests per day",
        base: route,
        edit: |d| spec(d)["perUser"]["requestsPerDay"] = json!(0),
        refused: Refused::Rule,
        path: "spec.perUser.requestsPerDay",
        message: "must be at least 1; omit it for no limit",
    },
    Case {
        name: "baseUrl without scheme",
        base: route,
        edit: |d| backend(d, 0)["baseUrl"] = json!("api.openai.com/v1"),
        refused: Refused::Rule,
        path: "spec.backends[0].baseUrl",
        message: r#""api.openai.com/v1" must start with https:// or http://"#,
    },
    Case {
        name: "baseUrl with a query",
        base: route,
        edit: |d| backend(d, 0)["baseUrl"] = json!("https://api.openai.com/v1?key=sk"),
        refused: Refused::Rule,
        path: "spec.backends[0].baseUrl",
        message: "must not carry a query or fragment",
    },
    Case {
        name: "baseUrl with a fragment",
        base: route,
        edit: |d| backend(d, 0)["baseUrl"] = json!("https://api.openai.com/v1#x"),
        refused: Refused::Rule,
        path: "spec.backends[0].baseUrl",
        message: "must not carry a query or fragment",
    },
    Case {
        name: "baseUrl without host",
        base: route,
        edit: |d| backend(d, 0)["baseUrl"] = json!("https:///v1"),
        refused: Refused::Rule,
        path: "spec.backends[0].baseUrl",
        message: "has no host",
    },
    Case {
        name: "baseUrl with a header smuggled in",
        base: route,
        edit: |d| backend(d, 0)["baseUrl"] = json!("https://api.openai.com/v1\r\nHost: evil"),
        refused: Refused::Rule,
        path: "spec.backends[0].baseUrl",
        message: "contains whitespace or control characters",
    },
    // ---- Rules: refused by validate_budget ----
    Case {
        name: "budget with an unknown time zone",
        base: budget,
        edit: |d| spec(d)["timeZone"] = json!("Mars/Olympus_Mons"),
        refused: Refused::Rule,
        path: "spec.timeZone",
        message: r#""Mars/Olympus_Mons" is not an IANA time zone such as UTC or Europe/Berlin"#,
    },
    Case {
        name: "downgrade without downgradeTo",
        base: budget,
        edit: |d| spec(d)["enforcement"] = json!("downgrade"),
        refused: Refused::Rule,
        path: "spec.downgradeTo",
        message: "enforcement downgrade needs at least one backend name here",
    },
    Case {
        name: "threshold zero",
        base: budget,
        edit: |d| spec(d)["alertThresholds"] = json!([0, 80]),
        refused: Refused::Rule,
        path: "spec.alertThresholds[0]",
        message: "must be a percentage from 1 to 1000",
    },
    Case {
        name: "threshold above 1000",
        base: budget,
        edit: |d| spec(d)["alertThresholds"] = json!([80, 1001]),
        refused: Refused::Rule,
        path: "spec.alertThresholds[1]",
        message: "must be a percentage from 1 to 1000",
    },
    Case {
        name: "duplicate thresholds",
        base: budget,
        edit: |d| spec(d)["alertThresholds"] = json!([50, 80, 50]),
        refused: Refused::Rule,
        path: "spec.alertThresholds[2]",
        message: "duplicate threshold 50 (also spec.alertThresholds[0])",
    },
];

/// Parses `doc` as a manifest and returns how it was refused, or `None` when it was accepted.
fn refusal(doc: &Value) -> Option<(Refused, Vec<FieldError>)> {
    let text = serde_json::to_string(doc).unwrap();
    match parse_manifests(&text) {
        Ok(_) => None,
        Err(ManifestError::Shape { path, message, .. }) => Some((Refused::Shape, vec![FieldError { path, message }])),
        Err(ManifestError::Invalid { source, .. }) => Some((Refused::Rule, source.0)),
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn every_invalid_case_is_refused_with_exactly_one_error_naming_the_field() {
    let mut failures = Vec::new();
    for case in CASES {
        let mut doc = (case.base)();
        (case.edit)(&mut doc);
        match refusal(&doc) {
            None => failures.push(format!("{}: accepted", case.name)),
            Some((refused, errors)) => {
                let matches = matches!(
                    (refused, case.refused),
                    (Refused::Shape, Refused::Shape) | (Refused::Rule, Refused::Rule)
                ) && errors.len() == 1
                    && errors[0].path == case.path
                    && errors[0].message.contains(case.message);
                if !matches {
                    failures.push(format!(
                        "{}: expected {:?} at {} containing {:?}, got {refused:?} {errors:?}",
                        case.name, case.refused, case.path, case.message
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn base_route_and_budget_are_valid() {
    assert!(refusal(&route()).is_none());
    assert!(refusal(&budget()).is_none());
}

/// Builds a valid resource.
type Base = fn() -> Value;
/// Changes one thing about it.
type Edit = fn(&mut Value);

/// Edits of the valid bases that sit on a boundary and must still be accepted.
const VALID: &[(&str, Base, Edit)] = &[
    ("http baseUrl for a local server", route, |d| {
        push_backend(
            d,
            json!({"name": "vllm", "provider": "openai-compatible", "baseUrl": "http://localhost:8000/v1", "model": "llama"}),
        );
    }),
    ("openai with a custom baseUrl and port", route, |d| {
        backend(d, 0)["baseUrl"] = json!("https://gateway.internal:8443/openai/v1");
    }),
    ("firstByte equal to total", route, |d| {
        backend(d, 0)["timeouts"] = json!({"firstByte": "60s", "total": "1m"});
    }),
    ("backoff base equal to max", route, |d| {
        spec(d)["retry"]["backoff"] = json!({"base": "1s", "max": "1s"})
    }),
    ("min prompt tokens equal to max", route, |d| {
        spec(d)["rules"][0]["when"] = json!({"minPromptTokens": 100, "maxPromptTokens": 100});
    }),
    ("weighted with one weight above zero", route, |d| {
        spec(d)["strategy"] = json!("weighted");
        backend(d, 1)["weight"] = json!(0);
    }),
    ("rule with an empty when", route, |d| {
        spec(d)["rules"][0]["when"] = json!({})
    }),
    ("no rules", route, |d| remove(spec(d), "rules")),
    ("simulator with no settings", route, |d| {
        remove(backend(d, 1), "simulator")
    }),
    ("limits omitted", route, |d| {
        remove(backend(d, 0), "limits");
        remove(spec(d), "rateLimit");
        remove(spec(d), "perUser");
    }),
    ("cache read and write prices", route, |d| {
        backend(d, 0)["pricing"] = json!({"inputPerMTok": "3.00", "outputPerMTok": "15.00",
            "cachedInputPerMTok": "0.30", "cacheWriteInputPerMTok": "3.75"})
    }),
    ("free prices", route, |d| {
        backend(d, 0)["pricing"] = json!({"inputPerMTok": "0", "outputPerMTok": "0"})
    }),
    ("azure-openai by deployment with a key", route, |d| {
        push_backend(
            d,
            json!({"name": "az", "provider": "azure-openai", "model": "gpt-4o", "baseUrl": "https://r.openai.azure.com",
                "credentialsRef": {"name": "azure", "key": "apiKey"},
                "azure": {"deployment": "gpt-4o-prod", "apiVersion": "2024-10-21"}}),
        );
    }),
    ("azure-openai v1 API with the pod's Entra ID", route, |d| {
        push_backend(
            d,
            json!({"name": "az", "provider": "azure-openai", "model": "gpt-4o", "baseUrl": "https://r.openai.azure.com",
                "azure": {"auth": "entra-id"}}),
        );
    }),
    ("bedrock with the pod's identity", route, |d| {
        push_backend(
            d,
            json!({"name": "br", "provider": "bedrock", "model": "anthropic.claude-sonnet-4-v1:0",
                "bedrock": {"region": "eu-central-1"}}),
        );
    }),
    ("vertex claude with a service-account key", route, |d| {
        push_backend(
            d,
            json!({"name": "vx", "provider": "vertex", "model": "claude-sonnet-4@20250514",
                "credentialsRef": {"name": "gcp", "key": "key.json"},
                "vertex": {"project": "my-project", "region": "us-east5", "publisher": "anthropic"}}),
        );
    }),
    (
        "a keyless openai-compatible backend's Authorization for the proxy in front",
        route,
        |d| {
            push_backend(
                d,
                json!({"name": "proxy", "provider": "openai-compatible", "model": "llama", "baseUrl": "https://proxy.example/v1",
                "headers": [{"name": "Authorization", "valueFrom": {"name": "proxy", "key": "token"}}]}),
            );
        },
    ),
    ("extra headers from a value and a Secret", route, |d| {
        backend(d, 0)["headers"] = json!([{"name": "x-team", "value": "a"},
            {"name": "x-gateway-key", "valueFrom": {"name": "gw", "key": "token"}}])
    }),
    ("budget thresholds at the bounds", budget, |d| {
        spec(d)["alertThresholds"] = json!([1, 1000])
    }),
    ("budget without thresholds", budget, |d| {
        spec(d)["alertThresholds"] = json!([])
    }),
    ("budget in UTC by default", budget, |d| remove(spec(d), "timeZone")),
    ("downgrade with downgradeTo", budget, |d| {
        spec(d)["enforcement"] = json!("downgrade");
        spec(d)["downgradeTo"] = json!(["local"]);
    }),
    ("soft budget of zero dollars", budget, |d| {
        spec(d)["enforcement"] = json!("soft");
        spec(d)["limitUSD"] = json!("0");
    }),
];

#[test]
fn boundary_values_are_accepted() {
    for (name, base, edit) in VALID {
        let mut doc = base();
        edit(&mut doc);
        assert!(refusal(&doc).is_none(), "{name}: refused with {:?}", refusal(&doc));
    }
}

#[test]
fn every_broken_rule_is_reported_at_once_in_document_order() {
    let mut doc = route();
    spec(&mut doc)["models"] = json!(["chat", "chat"]);
    backend(&mut doc, 1)["name"] = json!("primary");
    spec(&mut doc)["retry"]["attempts"] = json!(0);
    let (_, errors) = refusal(&doc).unwrap();
    let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
    // The rule naming "local" now names a missing backend too.
    assert_eq!(
        paths,
        [
            "spec.models[1]",
            "spec.backends[1].name",
            "spec.rules[0].backends[0]",
            "spec.retry.attempts"
        ]
    );
    let shown = Invalid(errors).to_string();
    assert!(
        shown.starts_with(r#"spec.models[1]: duplicate model "chat" (also spec.models[0]); spec.backends[1].name: "#),
        "{shown}"
    );
}

#[test]
fn refused_manifest_names_kind_namespace_and_field() {
    let mut doc = budget();
    spec(&mut doc)["timeZone"] = json!("Nowhere");
    remove(&mut doc["metadata"], "namespace");
    let err = parse_manifests(&serde_json::to_string(&doc).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Budget default/team: spec.timeZone: "Nowhere" is not an IANA time zone such as UTC or Europe/Berlin"#
    );
}

// ---- validate_references: what a route refers to ----

fn parsed_route(edit: fn(&mut Value)) -> ModelRoute {
    let mut doc = route();
    edit(&mut doc);
    match parse_manifests(&serde_json::to_string(&doc).unwrap())
        .unwrap()
        .remove(0)
    {
        Manifest::ModelRoute(r) => *r,
        other => panic!("{other:?}"),
    }
}

fn parsed_budget(edit: fn(&mut Value)) -> Budget {
    let mut doc = budget();
    edit(&mut doc);
    match parse_manifests(&serde_json::to_string(&doc).unwrap())
        .unwrap()
        .remove(0)
    {
        Manifest::Budget(b) => *b,
        other => panic!("{other:?}"),
    }
}

fn reference_errors(route: &ModelRoute, budget: Option<&Budget>) -> Vec<(String, String)> {
    match validate_references(&route.spec, budget.map(|b| &b.spec)) {
        Ok(()) => vec![],
        Err(Invalid(errors)) => errors.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

#[test]
fn route_and_budget_that_agree_pass_reference_checks() {
    let route = parsed_route(|_| {});
    assert_eq!(reference_errors(&route, Some(&parsed_budget(|_| {}))), []);
}

#[test]
fn route_without_budget_ref_needs_no_budget_or_prices() {
    let route = parsed_route(|d| {
        remove(spec(d), "budgetRef");
        remove(backend(d, 0), "pricing");
    });
    assert_eq!(reference_errors(&route, None), []);
}

#[test]
fn budget_ref_to_a_missing_budget_is_refused() {
    let route = parsed_route(|_| {});
    assert_eq!(
        reference_errors(&route, None),
        [(
            "spec.budgetRef.name".to_owned(),
            r#"Budget "team" does not exist in this namespace"#.to_owned()
        )]
    );
}

#[test]
fn route_with_budget_needs_pricing_on_every_non_simulator_backend() {
    let route = parsed_route(|d| remove(backend(d, 0), "pricing"));
    let errors = reference_errors(&route, Some(&parsed_budget(|_| {})));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "spec.backends[0].pricing");
    assert!(errors[0].1.contains("needs pricing on every backend"), "{errors:?}");
    // The simulator backend (index 1) has no pricing and is not named: its calls cost nothing.
}

#[test]
fn downgrade_budget_must_name_a_backend_of_the_route() {
    let route = parsed_route(|_| {});
    let budget = parsed_budget(|d| {
        spec(d)["enforcement"] = json!("downgrade");
        spec(d)["downgradeTo"] = json!(["cheap"]);
    });
    let errors = reference_errors(&route, Some(&budget));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "spec.budgetRef.name");
    assert!(
        errors[0].1.contains("downgrades to backends this route does not have"),
        "{errors:?}"
    );

    let budget = parsed_budget(|d| {
        spec(d)["enforcement"] = json!("downgrade");
        spec(d)["downgradeTo"] = json!(["cheap", "local"]);
    });
    assert_eq!(reference_errors(&route, Some(&budget)), []);
}
