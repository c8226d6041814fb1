#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::Secret;

use super::*;
use crate::{
    Backend, BackendLimits, Backoff, BudgetSpec, ByteSize, CachePolicy, CircuitBreaker, Duration, Enforcement,
    HeaderMatch, LocalRef, MicroUsd, ModelRouteSpec, PerUserLimit, Period, Pricing, Provider, RateLimit, RetryOn,
    RetryPolicy, RoutingRule, RuleMatch, SecretKeyRef, SimulatedError, SimulatorSpec, Strategy, Timeouts,
    validation::validate_references,
};

/// A ModelRoute with every field of DESIGN §3 set to a non-default value, a Budget and a Secret.
const FULL: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: ModelRoute
metadata: {name: chat, namespace: team-a}
spec:
  models: [chat, gpt-4.1]
  podSelector: {matchLabels: {app: support-bot}}
  strategy: least-cost
  backends:
  - name: openai
    provider: openai
    baseUrl: https://api.openai.com/v1
    model: gpt-4.1
    credentialsRef: {name: openai, key: apiKey}
    weight: 3
    priority: 0
    pricing: {inputPerMTok: "2.00", outputPerMTok: "8.00", cachedInputPerMTok: "0.50"}
    limits: {requestsPerMinute: 500, tokensPerMinute: 200000, maxConcurrency: 64}
    timeouts: {connect: 2s, firstByte: 30s, total: 120s}
  - name: deepseek
    provider: openai-compatible
    baseUrl: https://api.deepseek.com/v1
    model: deepseek-chat
    credentialsRef: {name: deepseek, key: apiKey}
    priority: 1
    pricing: {inputPerMTok: "0.10", outputPerMTok: "0.42"}
  - name: rehearsal
    provider: simulator
    model: sim-1
    priority: 2
    weight: 0
    simulator:
      timeToFirstToken: 80ms
      perToken: 5ms
      outputTokens: 32
      errorRate: "0.05"
      errorKind: rate-limited
      seed: 7
      embeddingDimensions: 8
  rules:
  - when: {minPromptTokens: 10, maxPromptTokens: 2000, anyKeyword: [translate, summarize], hasTools: false, hasImages: false}
    backends: [deepseek]
  - when: {header: {name: x-sluice-tier, value: premium}}
    backends: [openai, rehearsal]
  retry: {attempts: 4, backoff: {base: 250ms, max: 1m30s}, retryOn: [connect-error, timeout, "429", "5xx"]}
  circuitBreaker: {consecutiveFailures: 7, openFor: 45s}
  rateLimit: {requestsPerMinute: 1000, tokensPerMinute: 500000}
  perUser: {requestsPerMinute: 60, tokensPerMinute: 40000, requestsPerDay: 5000}
  cache: {ttl: 10m, maxBytes: 64Mi}
  budgetRef: {name: team-a-monthly}
status:
  observedGeneration: 4
  conditions:
  - {type: Accepted, status: "True", reason: Valid, message: "", lastTransitionTime: "2026-11-01T00:00:00Z", observedGeneration: 4}
  configVersion: "sha256:abc"
  sidecars: {desired: 12, inSync: 11}
  usage: {requests: 1234, errors: 3, failovers: 9, cacheHits: 88, inputTokens: 1200345, outputTokens: 300123, costUSD: "4.21"}
  backends:
  - {name: openai, healthy: true, circuit: half-open, requests: 1000, errors: 3, latencyP50Ms: 820}
---
apiVersion: sluice.dev/v1alpha1
kind: Budget
metadata: {name: team-a-monthly, namespace: team-a}
spec:
  limitUSD: "500.00"
  period: weekly
  timeZone: Europe/Berlin
  enforcement: downgrade
  downgradeTo: [deepseek]
  alertThresholds: [50, 80, 100, 120]
status:
  periodStart: "2026-11-01T00:00:00+01:00"
  spentUSD: "123.456789"
  remainingUSD: "376.543211"
  byRoute: {chat: "100.00", summarize: "23.456789"}
  byModel: {gpt-4.1: "120.00", deepseek-chat: "3.456789"}
---
apiVersion: v1
kind: Secret
metadata: {name: openai, namespace: team-a}
type: Opaque
data:
  apiKey: c2stZnJvbS1kYXRh
stringData:
  org: acme
"#;

fn parse_one<T>(text: &str, pick: impl Fn(Manifest) -> Option<T>) -> T {
    let mut docs = parse_manifests(text).unwrap();
    assert_eq!(docs.len(), 1, "expected one document");
    pick(docs.remove(0)).expect("document of another kind")
}

fn route_of(m: Manifest) -> Option<ModelRoute> {
    match m {
        Manifest::ModelRoute(r) => Some(*r),
        _ => None,
    }
}

fn budget_of(m: Manifest) -> Option<Budget> {
    match m {
        Manifest::Budget(b) => Some(*b),
        _ => None,
    }
}

fn secret_of(m: Manifest) -> Option<Secret> {
    match m {
        Manifest::Secret(s) => Some(*s),
        _ => None,
    }
}

fn parse_full() -> (ModelRoute, Budget, Secret) {
    let docs = parse_manifests(FULL).unwrap();
    let [route, budget, secret] = <[Manifest; 3]>::try_from(docs).unwrap();
    (
        route_of(route).unwrap(),
        budget_of(budget).unwrap(),
        secret_of(secret).unwrap(),
    )
}

#[test]
fn full_route_parses_every_field_to_exact_typed_values() {
    let (route, _, _) = parse_full();
    assert_eq!(route.metadata.name.as_deref(), Some("chat"));
    assert_eq!(route.metadata.namespace.as_deref(), Some("team-a"));
    let spec = &route.spec;
    let names = |v: &[crate::ModelName]| v.iter().map(|m| m.as_str().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(&spec.models), ["chat", "gpt-4.1"]);
    let selector = spec.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
    assert_eq!(
        selector,
        &BTreeMap::from([("app".to_owned(), "support-bot".to_owned())])
    );
    assert_eq!(spec.strategy, Strategy::LeastCost);

    let expected_openai = Backend {
        name: "openai".try_into().unwrap(),
        provider: Provider::Openai,
        base_url: Some("https://api.openai.com/v1".into()),
        model: "gpt-4.1".try_into().unwrap(),
        credentials_ref: Some(SecretKeyRef {
            name: "openai".into(),
            key: "apiKey".into(),
        }),
        weight: 3,
        priority: 0,
        pricing: Some(Pricing {
            input_per_m_tok: MicroUsd::new(2_000_000),
            output_per_m_tok: MicroUsd::new(8_000_000),
            cached_input_per_m_tok: Some(MicroUsd::new(500_000)),
            cache_write_input_per_m_tok: None,
        }),
        limits: Some(BackendLimits {
            requests_per_minute: Some(500),
            tokens_per_minute: Some(200_000),
            max_concurrency: Some(64),
        }),
        timeouts: Timeouts {
            connect: Duration::from_millis(2_000),
            first_byte: Duration::from_millis(30_000),
            total: Duration::from_millis(120_000),
        },
        simulator: None,
        azure: None,
        bedrock: None,
        vertex: None,
        headers: vec![],
    };
    assert_eq!(spec.backends[0], expected_openai);

    let deepseek = &spec.backends[1];
    assert_eq!(deepseek.provider, Provider::OpenaiCompatible);
    assert_eq!(deepseek.base_url.as_deref(), Some("https://api.deepseek.com/v1"));
    assert_eq!(deepseek.model.as_str(), "deepseek-chat");
    assert_eq!(deepseek.priority, 1);
    assert_eq!(
        deepseek.pricing,
        Some(Pricing {
            input_per_m_tok: MicroUsd::new(100_000),
            output_per_m_tok: MicroUsd::new(420_000),
            cached_input_per_m_tok: None,
            cache_write_input_per_m_tok: None,
        })
    );

    let rehearsal = &spec.backends[2];
    assert_eq!(
        (rehearsal.provider, rehearsal.weight, rehearsal.priority),
        (Provider::Simulator, 0, 2)
    );
    assert_eq!(rehearsal.credentials_ref, None);
    let sim = rehearsal.simulator.as_ref().unwrap();
    assert_eq!(sim.time_to_first_token, Duration::from_millis(80));
    assert_eq!(sim.per_token, Duration::from_millis(5));
    assert_eq!(sim.output_tokens, 32);
    assert_eq!(sim.error_rate.millionths(), 50_000);
    assert_eq!(sim.error_kind, SimulatedError::RateLimited);
    assert_eq!(sim.seed, Some(7));
    assert_eq!(sim.embedding_dimensions, 8);

    assert_eq!(
        spec.rules,
        [
            RoutingRule {
                when: RuleMatch {
                    min_prompt_tokens: Some(10),
                    max_prompt_tokens: Some(2000),
                    any_keyword: vec!["translate".into(), "summarize".into()],
                    header: None,
                    has_tools: Some(false),
                    has_images: Some(false),
                },
                backends: vec!["deepseek".try_into().unwrap()],
            },
            RoutingRule {
                when: RuleMatch {
                    header: Some(HeaderMatch {
                        name: "x-sluice-tier".into(),
                        value: "premium".into()
                    }),
                    ..RuleMatch::default()
                },
                backends: vec!["openai".try_into().unwrap(), "rehearsal".try_into().unwrap()],
            },
        ]
    );
    assert_eq!(
        spec.retry,
        RetryPolicy {
            attempts: 4,
            backoff: Backoff {
                base: Duration::from_millis(250),
                max: Duration::from_millis(90_000)
            },
            retry_on: vec![
                RetryOn::ConnectError,
                RetryOn::Timeout,
                RetryOn::TooManyRequests,
                RetryOn::ServerError
            ],
        }
    );
    assert_eq!(
        spec.circuit_breaker,
        CircuitBreaker {
            consecutive_failures: 7,
            open_for: Duration::from_secs(45)
        }
    );
    assert_eq!(
        spec.rate_limit,
        Some(RateLimit {
            requests_per_minute: Some(1000),
            tokens_per_minute: Some(500_000)
        })
    );
    assert_eq!(
        spec.per_user,
        Some(PerUserLimit {
            requests_per_minute: Some(60),
            tokens_per_minute: Some(40_000),
            requests_per_day: Some(5000)
        })
    );
    assert_eq!(
        spec.cache,
        Some(CachePolicy {
            ttl: Duration::from_secs(600),
            max_bytes: ByteSize::new(64 * 1024 * 1024)
        })
    );
    assert_eq!(
        spec.budget_ref,
        Some(LocalRef {
            name: "team-a-monthly".into()
        })
    );

    let status = route.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, Some(4));
    assert_eq!(status.conditions[0].type_, "Accepted");
    assert_eq!(status.sidecars.map(|s| (s.desired, s.in_sync)), Some((12, 11)));
    assert_eq!(status.usage.as_ref().unwrap().cost_usd, MicroUsd::new(4_210_000));
    assert_eq!(status.backends[0].circuit, crate::CircuitState::HalfOpen);
    assert_eq!(status.backends[0].latency_p50_ms, Some(820));
}

#[test]
fn full_budget_parses_every_field_to_exact_typed_values() {
    let (_, budget, _) = parse_full();
    assert_eq!(
        budget.spec,
        BudgetSpec {
            limit_usd: MicroUsd::new(500_000_000),
            period: Period::Weekly,
            time_zone: "Europe/Berlin".into(),
            enforcement: Enforcement::Downgrade,
            downgrade_to: vec!["deepseek".try_into().unwrap()],
            alert_thresholds: vec![50, 80, 100, 120],
        }
    );
    let status = budget.status.unwrap();
    assert_eq!(status.period_start.as_deref(), Some("2026-11-01T00:00:00+01:00"));
    assert_eq!(status.spent_usd, MicroUsd::new(123_456_789));
    assert_eq!(status.remaining_usd, MicroUsd::new(376_543_211));
    assert_eq!(status.by_route["summarize"], MicroUsd::new(23_456_789));
    assert_eq!(status.by_model["gpt-4.1"], MicroUsd::new(120_000_000));
}

#[test]
fn secret_keeps_base64_data_decoded_and_string_data_as_text() {
    let (_, _, secret) = parse_full();
    assert_eq!(secret.metadata.name.as_deref(), Some("openai"));
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(secret.data.as_ref().unwrap()["apiKey"].0, b"sk-from-data");
    assert_eq!(secret.string_data.as_ref().unwrap()["org"], "acme");
}

#[test]
fn every_field_round_trips_through_json() {
    let (route, budget, secret) = parse_full();
    let json = [
        serde_json::to_string(&route).unwrap(),
        serde_json::to_string(&budget).unwrap(),
        serde_json::to_string(&secret).unwrap(),
    ]
    .join("\n---\n");
    let (route2, budget2, secret2) = {
        let docs = parse_manifests(&json).unwrap();
        let [r, b, s] = <[Manifest; 3]>::try_from(docs).unwrap();
        (route_of(r).unwrap(), budget_of(b).unwrap(), secret_of(s).unwrap())
    };
    assert_eq!(route2.metadata, route.metadata);
    assert_eq!(route2.spec, route.spec);
    assert_eq!(route2.status, route.status);
    assert_eq!(budget2.metadata, budget.metadata);
    assert_eq!(budget2.spec, budget.spec);
    assert_eq!(budget2.status, budget.status);
    assert_eq!(secret2, secret);
    // Serialized forms are canonical: the second trip writes the same text as the first.
    assert_eq!(
        serde_json::to_value(&route2).unwrap(),
        serde_json::to_value(&route).unwrap()
    );
}

#[test]
fn canonical_forms_are_written_for_durations_money_and_sizes() {
    let (route, budget, _) = parse_full();
    let spec = serde_json::to_value(&route.spec).unwrap();
    assert_eq!(
        spec["backends"][0]["timeouts"],
        serde_json::json!({"connect": "2s", "firstByte": "30s", "total": "2m"})
    );
    assert_eq!(spec["backends"][0]["pricing"]["inputPerMTok"], "2.000000");
    assert_eq!(spec["retry"]["backoff"]["max"], "90s");
    assert_eq!(
        spec["retry"]["retryOn"],
        serde_json::json!(["connect-error", "timeout", "429", "5xx"])
    );
    assert_eq!(spec["cache"], serde_json::json!({"ttl": "10m", "maxBytes": "64Mi"}));
    assert_eq!(serde_json::to_value(&budget.spec).unwrap()["limitUSD"], "500.000000");
}

#[test]
fn omitted_fields_take_their_defaults() {
    let route = parse_one(
        "apiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {name: min}\nspec:\n  models: [m]\n  backends:\n  - {name: sim, provider: simulator, model: sim-1, simulator: {}}\n  - {name: compat, provider: openai-compatible, baseUrl: 'http://localhost:8000/v1', model: llama}\n",
        route_of,
    );
    let spec = route.spec;
    assert_eq!(spec.strategy, Strategy::Priority);
    assert_eq!(spec.pod_selector, None);
    assert!(spec.rules.is_empty());
    assert_eq!(
        (spec.rate_limit, spec.per_user, spec.cache, spec.budget_ref),
        (None, None, None, None)
    );
    assert_eq!(
        spec.retry,
        RetryPolicy {
            attempts: 3,
            backoff: Backoff {
                base: Duration::from_millis(200),
                max: Duration::from_secs(10)
            },
            retry_on: vec![
                RetryOn::ConnectError,
                RetryOn::Timeout,
                RetryOn::TooManyRequests,
                RetryOn::ServerError
            ],
        }
    );
    assert_eq!(
        spec.circuit_breaker,
        CircuitBreaker {
            consecutive_failures: 5,
            open_for: Duration::from_secs(60)
        }
    );
    for backend in &spec.backends {
        assert_eq!((backend.weight, backend.priority), (1, 0));
        assert_eq!(
            backend.timeouts,
            Timeouts {
                connect: Duration::from_secs(5),
                first_byte: Duration::from_secs(60),
                total: Duration::from_secs(600),
            }
        );
        assert_eq!(
            (&backend.pricing, &backend.limits, &backend.credentials_ref),
            (&None, &None, &None)
        );
    }
    assert_eq!(
        spec.backends[0].simulator,
        Some(SimulatorSpec {
            time_to_first_token: Duration::from_millis(50),
            per_token: Duration::from_millis(5),
            output_tokens: 64,
            error_rate: crate::Ratio::ZERO,
            error_kind: SimulatedError::ServerError,
            seed: None,
            embedding_dimensions: 16,
        })
    );
    assert_eq!(spec.backends[1].simulator, None);
}

#[test]
fn omitted_nested_fields_take_their_defaults() {
    let route = parse_one(
        "apiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {name: min}\nspec:\n  models: [m]\n  backends:\n  - {name: sim, provider: simulator, model: sim-1, timeouts: {connect: 1s}}\n  retry: {attempts: 2, backoff: {max: 3s}}\n  cache: {}\n  rules:\n  - backends: [sim]\n",
        route_of,
    );
    let spec = route.spec;
    assert_eq!(
        spec.backends[0].timeouts,
        Timeouts {
            connect: Duration::from_secs(1),
            first_byte: Duration::from_secs(60),
            total: Duration::from_secs(600)
        }
    );
    assert_eq!(
        spec.retry.backoff,
        Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(3)
        }
    );
    assert_eq!(spec.retry.retry_on.len(), 4);
    assert_eq!(
        spec.cache,
        Some(CachePolicy {
            ttl: Duration::from_secs(600),
            max_bytes: ByteSize::new(64 << 20)
        })
    );
    assert_eq!(spec.rules[0].when, RuleMatch::default());
}

#[test]
fn omitted_budget_fields_take_their_defaults() {
    let budget = parse_one(
        "apiVersion: sluice.dev/v1alpha1\nkind: Budget\nmetadata: {name: b}\nspec: {limitUSD: '5'}\n",
        budget_of,
    );
    assert_eq!(
        budget.spec,
        BudgetSpec {
            limit_usd: MicroUsd::new(5_000_000),
            period: Period::Monthly,
            time_zone: "UTC".into(),
            enforcement: Enforcement::Hard,
            downgrade_to: vec![],
            alert_thresholds: vec![50, 80, 100],
        }
    );
}

fn shape_error(text: &str) -> (usize, String, String, String) {
    match parse_manifests(text) {
        Err(ManifestError::Shape {
            index,
            kind,
            path,
            message,
        }) => (index, kind, path, message),
        other => panic!("expected a Shape error, got {other:?}"),
    }
}

#[test]
fn bad_duration_is_a_shape_error_at_its_exact_path() {
    let text = FULL.replace("connect: 2s", "connect: 2 seconds");
    let (index, kind, path, message) = shape_error(&text);
    assert_eq!(
        (index, kind.as_str(), path.as_str()),
        (1, "ModelRoute", "spec.backends[0].timeouts.connect")
    );
    assert!(message.contains(r#"invalid duration "2 seconds""#), "{message}");
}

#[test]
fn negative_price_is_a_shape_error_naming_the_price() {
    let text = FULL.replace(r#"inputPerMTok: "2.00""#, r#"inputPerMTok: "-2.00""#);
    let err = parse_manifests(&text).unwrap_err();
    let ManifestError::Shape { path, message, .. } = &err else {
        panic!("expected Shape, got {err:?}")
    };
    assert_eq!(path, "spec.backends[0].pricing.inputPerMTok");
    assert!(message.contains("negative"), "{message}");
    assert!(
        err.to_string()
            .starts_with("document 1 (ModelRoute): spec.backends[0].pricing.inputPerMTok: "),
        "{err}"
    );
}

#[test]
fn shape_error_counts_documents_from_one_in_the_file() {
    let text = FULL.replace("limitUSD: \"500.00\"", "limitUSD: \"lots\"");
    let (index, kind, path, message) = shape_error(&text);
    assert_eq!((index, kind.as_str(), path.as_str()), (2, "Budget", "spec.limitUSD"));
    assert!(message.contains("not a decimal number"), "{message}");
}

#[test]
fn broken_rule_is_an_invalid_error_naming_resource_and_field() {
    let text = FULL.replace("- name: deepseek\n", "- name: openai\n");
    let err = parse_manifests(&text).unwrap_err();
    let ManifestError::Invalid { kind, name, source } = &err else {
        panic!("expected Invalid, got {err:?}")
    };
    assert_eq!((*kind, name.as_str()), ("ModelRoute", "team-a/chat"));
    assert_eq!(source.0[0].path, "spec.backends[1].name");
    assert!(
        err.to_string().starts_with(
            r#"ModelRoute team-a/chat: spec.backends[1].name: duplicate backend name "openai" (also spec.backends[0].name)"#
        ),
        "{err}"
    );
}

#[test]
fn invalid_yaml_is_a_yaml_error() {
    let err = parse_manifests("kind: ModelRoute\nspec: {models: [chat\n").unwrap_err();
    assert!(matches!(err, ManifestError::Yaml(_)), "{err:?}");
    assert!(err.to_string().starts_with("not valid YAML: "), "{err}");
}

#[test]
fn missing_kind_or_api_version_is_named() {
    let err = parse_manifests("apiVersion: v1\nmetadata: {name: x}\n").unwrap_err();
    assert!(
        matches!(
            err,
            ManifestError::MissingField {
                index: 1,
                field: "kind"
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "document 1: missing kind");

    let err = parse_manifests("kind: Secret\n---\nkind: Secret\napiVersion: v1\n").unwrap_err();
    assert!(
        matches!(
            err,
            ManifestError::MissingField {
                index: 1,
                field: "apiVersion"
            }
        ),
        "{err:?}"
    );
}

#[test]
fn unknown_kinds_and_versions_are_ignored_not_refused() {
    let docs = parse_manifests(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\napiVersion: sluice.dev/v1beta9\nkind: ModelRoute\nspec: 1\n",
    )
    .unwrap();
    let kinds: Vec<_> = docs
        .iter()
        .map(|d| match d {
            Manifest::Ignored { kind } => kind.as_str(),
            other => panic!("expected Ignored, got {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["ConfigMap", "ModelRoute"]);
}

#[test]
fn empty_documents_are_skipped() {
    assert!(parse_manifests("").unwrap().is_empty());
    assert!(parse_manifests("# only a comment\n").unwrap().is_empty());
    let docs = parse_manifests("---\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\n").unwrap();
    assert!(matches!(docs.as_slice(), [Manifest::Secret(_)]), "{docs:?}");
}

// ---- The shipped examples ----

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The files of `dir` whose name ends with one of `suffixes`, sorted.
fn files(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| suffixes.iter().any(|s| n.ends_with(s)))
        })
        .collect();
    out.sort();
    out
}

/// Everything the local loader would read from `dir`: its `*.yaml` and `*.yml` files.
fn load_dir(dir: &Path) -> Vec<Manifest> {
    let paths = files(dir, &[".yaml", ".yml"]);
    assert!(!paths.is_empty(), "{} has no manifests", dir.display());
    paths
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            parse_manifests(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Checks what the loader checks across documents: references resolve and names do not collide.
fn check_together(dir: &Path, docs: &[Manifest]) -> Vec<ModelRoute> {
    let budgets: BTreeMap<_, &BudgetSpec> = docs
        .iter()
        .filter_map(|d| match d {
            Manifest::Budget(b) => Some((key(&b.metadata), &b.spec)),
            _ => None,
        })
        .collect();
    let routes: Vec<ModelRoute> = docs.iter().cloned().filter_map(route_of).collect();
    let mut route_names = BTreeSet::new();
    let mut models = BTreeMap::new();
    for route in &routes {
        let (ns, name) = key(&route.metadata);
        assert!(
            route_names.insert((ns.clone(), name.clone())),
            "{}: route {ns}/{name} twice",
            dir.display()
        );
        for m in &route.spec.models {
            if let Some(other) = models.insert((ns.clone(), m.as_str().to_owned()), name.clone()) {
                panic!("{}: model {m} is served by both {other} and {name}", dir.display());
            }
        }
        if let Some(r) = &route.spec.budget_ref {
            let budget = budgets.get(&(ns.clone(), r.name.clone())).copied();
            validate_references(&route.spec, budget).unwrap_or_else(|e| panic!("{}: {ns}/{name}: {e}", dir.display()));
        }
    }
    routes
}

fn ignored(docs: &[Manifest]) -> Vec<&str> {
    docs.iter()
        .filter_map(|d| match d {
            Manifest::Ignored { kind } => Some(kind.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn quickstart_example_loads_and_needs_no_key() {
    let dir = examples_dir().join("quickstart");
    let docs = load_dir(&dir);
    assert_eq!(ignored(&docs), Vec::<&str>::new());
    let routes = check_together(&dir, &docs);
    let by_name: BTreeMap<_, _> = routes.iter().map(|r| (key(&r.metadata), r)).collect();

    let chat = &by_name[&("default".to_owned(), "chat".to_owned())].spec;
    let models: Vec<_> = chat.models.iter().map(|m| m.as_str()).collect();
    assert_eq!(models, ["chat", "gpt-4o-mini"]);
    assert_eq!(chat.budget_ref, Some(LocalRef { name: "demo".into() }));
    assert!(chat.per_user.is_some() && chat.cache.is_some());
    let fast = &chat.backends[0];
    assert_eq!((fast.name.as_str(), fast.priority), ("sim-fast", 0));
    let sim = fast.simulator.as_ref().unwrap();
    assert_eq!((sim.seed, sim.output_tokens), (Some(7), 32));
    assert_eq!(
        (sim.time_to_first_token, sim.per_token),
        (Duration::from_millis(80), Duration::from_millis(5))
    );
    assert_eq!(
        (chat.backends[1].name.as_str(), chat.backends[1].priority),
        ("sim-backup", 1)
    );

    let embed = &by_name[&("default".to_owned(), "embed".to_owned())].spec;
    assert_eq!(embed.models[0].as_str(), "text-embedding-3-small");

    for route in &routes {
        for b in &route.spec.backends {
            assert_eq!(b.provider, Provider::Simulator, "the quickstart must run without a key");
            assert!(b.pricing.is_some(), "{}: pricing makes costs show", b.name);
        }
    }
    let budget = docs.iter().find_map(|d| budget_of(d.clone())).unwrap();
    assert_eq!(key(&budget.metadata), ("default".to_owned(), "demo".to_owned()));
    assert_eq!(
        (budget.spec.limit_usd, budget.spec.period, budget.spec.enforcement),
        (MicroUsd::new(5_000_000), Period::Monthly, Enforcement::Hard)
    );
}

#[test]
fn provider_examples_load_and_their_secrets_are_only_examples() {
    let dir = examples_dir().join("providers");
    let docs = load_dir(&dir);
    assert_eq!(ignored(&docs), Vec::<&str>::new());
    assert!(
        !docs.iter().any(|d| matches!(d, Manifest::Secret(_))),
        "a Secret with a dummy key in a loaded file would shadow the environment variable"
    );
    let routes = check_together(&dir, &docs);
    assert!(routes.len() >= 4, "openai, deepseek, openrouter and failover routes");

    // Every credentialsRef names a Secret of the copyable example file, in the route's namespace.
    let examples = files(&dir, &[".example"]);
    assert!(!examples.is_empty(), "a secrets example file to copy");
    let secrets: BTreeSet<_> = examples
        .iter()
        .flat_map(|p| parse_manifests(&std::fs::read_to_string(p).unwrap()).unwrap())
        .filter_map(secret_of)
        .map(|s| {
            let (ns, name) = key(&s.metadata);
            let keys: Vec<String> = s.string_data.unwrap_or_default().into_keys().collect();
            (ns, name, keys)
        })
        .flat_map(|(ns, name, keys)| keys.into_iter().map(move |k| (ns.clone(), name.clone(), k)))
        .collect();
    for route in &routes {
        let (ns, _) = key(&route.metadata);
        for b in &route.spec.backends {
            assert_ne!(b.provider, Provider::Simulator);
            // The clouds' examples may use the pod's own identity instead of a Secret.
            let pod_identity = matches!(b.provider, Provider::Bedrock | Provider::Vertex)
                || b.azure.as_ref().is_some_and(|a| a.auth == crate::AzureAuth::EntraId);
            let Some(r) = b.credentials_ref.as_ref() else {
                assert!(pod_identity, "{} has no credentialsRef", b.name);
                assert!(b.pricing.is_some(), "{} has no pricing", b.name);
                continue;
            };
            assert!(
                secrets.contains(&(ns.clone(), r.name.clone(), r.key.clone())),
                "{} refers to {r:?}",
                b.name
            );
            assert!(b.pricing.is_some(), "{} has no pricing", b.name);
        }
    }
}

#[test]
fn every_example_file_parses_alone() {
    let root = examples_dir();
    for dir in ["quickstart", "providers"] {
        for path in files(&root.join(dir), &[".yaml", ".yml", ".example"]) {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs = parse_manifests(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!docs.is_empty(), "{} is empty", path.display());
        }
    }
}

#[test]
fn loaded_examples_round_trip() {
    let root = examples_dir();
    for dir in ["quickstart", "providers"] {
        for doc in load_dir(&root.join(dir)) {
            if let Manifest::ModelRoute(route) = doc {
                let again = parse_one(&serde_json::to_string(&route).unwrap(), route_of);
                assert_eq!(again.spec, route.spec);
            }
        }
    }
}

#[test]
fn minimal_route_equals_the_spec_built_from_type_defaults() {
    let parsed = parse_one(
        "apiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {name: x}\nspec: {models: [m], backends: [{name: s, provider: simulator, model: m}]}\n",
        route_of,
    );
    let built = ModelRouteSpec {
        models: vec!["m".try_into().unwrap()],
        pod_selector: None,
        strategy: Strategy::default(),
        backends: vec![Backend {
            name: "s".try_into().unwrap(),
            provider: Provider::Simulator,
            base_url: None,
            model: "m".try_into().unwrap(),
            credentials_ref: None,
            weight: 1,
            priority: 0,
            pricing: None,
            limits: None,
            timeouts: Timeouts::default(),
            simulator: None,
            azure: None,
            bedrock: None,
            vertex: None,
            headers: vec![],
        }],
        rules: vec![],
        retry: RetryPolicy::default(),
        circuit_breaker: CircuitBreaker::default(),
        rate_limit: None,
        per_user: None,
        cache: None,
        budget_ref: None,
    };
    assert_eq!(parsed.spec, built);
}
