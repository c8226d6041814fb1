//! Rules beyond what the schema says, shared by the operator and the sidecar's local mode.

use std::{collections::BTreeMap, fmt};

use crate::{
    AzureAuth, BudgetSpec, Enforcement, ModelRouteSpec, Provider, RESERVED_HEADERS, Strategy,
    model_route::{Backend, RoutingRule},
};

/// One broken rule, at a JSON path such as `spec.backends[1].name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where the problem is.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid(pub Vec<FieldError>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects field errors while walking a spec.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn finish(self) -> Result<(), Invalid> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Invalid(self.0))
        }
    }
}

/// Checks a route on its own; cross-resource references are checked by [`validate_references`].
pub fn validate_model_route(spec: &ModelRouteSpec) -> Result<(), Invalid> {
    let mut errors = Errors::default();
    if spec.models.is_empty() {
        errors.add("spec.models", "list at least one model name clients may send");
    }
    let mut seen_models = BTreeMap::new();
    for (i, m) in spec.models.iter().enumerate() {
        if let Some(first) = seen_models.insert(m.as_str(), i) {
            errors.add(
                format!("spec.models[{i}]"),
                format!("duplicate model {:?} (also spec.models[{first}])", m.as_str()),
            );
        }
    }
    if spec.backends.is_empty() {
        errors.add("spec.backends", "list at least one backend");
    }
    let mut seen_backends = BTreeMap::new();
    for (i, backend) in spec.backends.iter().enumerate() {
        if let Some(first) = seen_backends.insert(backend.name.as_str(), i) {
            errors.add(
                format!("spec.backends[{i}].name"),
                format!(
                    "duplicate backend name {:?} (also spec.backends[{first}].name)",
                    backend.name.as_str()
                ),
            );
        }
        validate_backend(&mut errors, i, backend);
    }
    if spec.strategy == Strategy::Weighted && spec.backends.iter().all(|b| b.weight == 0) {
        errors.add(
            "spec.backends",
            "strategy weighted needs at least one backend with weight above 0",
        );
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        validate_rule(&mut errors, i, rule, &seen_backends);
    }
    if spec.retry.backoff.base > spec.retry.backoff.max {
        errors.add("spec.retry.backoff.base", "must not exceed spec.retry.backoff.max");
    }
    if spec.retry.attempts == 0 {
        errors.add("spec.retry.attempts", "must be at least 1 (the first attempt counts)");
    }
    if spec.circuit_breaker.consecutive_failures == 0 {
        errors.add("spec.circuitBreaker.consecutiveFailures", "must be at least 1");
    }
    let rate = spec.rate_limit.unwrap_or_default();
    let user = spec.per_user.unwrap_or_default();
    for (field, value) in [
        ("rateLimit.requestsPerMinute", rate.requests_per_minute),
        ("rateLimit.tokensPerMinute", rate.tokens_per_minute),
        ("perUser.requestsPerMinute", user.requests_per_minute),
        ("perUser.tokensPerMinute", user.tokens_per_minute),
        ("perUser.requestsPerDay", user.requests_per_day),
    ] {
        if value == Some(0) {
            errors.add(format!("spec.{field}"), "must be at least 1; omit it for no limit");
        }
    }
    errors.finish()
}

/// The headers that carry a backend's own credentials, which its `headers` may not replace: a
/// refusal here rather than a silent override either way.
fn auth_headers(backend: &Backend) -> &'static [&'static str] {
    let keyed = backend.credentials_ref.is_some();
    match backend.provider {
        Provider::Openai | Provider::OpenaiCompatible if keyed => &["authorization"],
        Provider::Anthropic if keyed => &["x-api-key"],
        Provider::Gemini if keyed => &["x-goog-api-key"],
        Provider::AzureOpenai => match backend.azure.as_ref().map(|a| a.auth) {
            Some(AzureAuth::EntraId) => &["authorization"],
            _ => &["api-key"],
        },
        Provider::Bedrock => &[
            "authorization",
            "x-amz-date",
            "x-amz-security-token",
            "x-amz-content-sha256",
        ],
        Provider::Vertex => &["authorization"],
        Provider::Openai
        | Provider::OpenaiCompatible
        | Provider::Anthropic
        | Provider::Gemini
        | Provider::Simulator => &[],
    }
}

fn validate_backend(errors: &mut Errors, i: usize, backend: &Backend) {
    let at = |field: &str| format!("spec.backends[{i}].{field}");
    match (&backend.base_url, backend.provider) {
        (Some(url), _) => {
            if let Err(why) = check_base_url(url) {
                errors.add(at("baseUrl"), why);
            }
        }
        (None, Provider::OpenaiCompatible) => errors.add(
            at("baseUrl"),
            "provider openai-compatible needs a baseUrl such as https://api.deepseek.com/v1",
        ),
        (None, Provider::AzureOpenai) => errors.add(
            at("baseUrl"),
            "provider azure-openai needs a baseUrl: the resource's endpoint, such as https://my-resource.openai.azure.com",
        ),
        (None, _) => {}
    }
    let entra = backend.azure.as_ref().is_some_and(|a| a.auth == AzureAuth::EntraId);
    if backend.credentials_ref.is_none()
        && (backend.provider.needs_credentials() || (backend.provider == Provider::AzureOpenai && !entra))
    {
        errors.add(
            at("credentialsRef"),
            "this provider needs an API key: set credentialsRef {name, key}",
        );
    }
    if backend.simulator.is_some() && backend.provider != Provider::Simulator {
        errors.add(at("simulator"), "only allowed with provider simulator");
    }
    if let Some(azure) = &backend.azure {
        if backend.provider != Provider::AzureOpenai {
            errors.add(at("azure"), "only allowed with provider azure-openai");
        } else if azure.deployment.is_some() && azure.api_version.is_none() {
            errors.add(
                at("azure.apiVersion"),
                "needed with azure.deployment: the api-version of the deployment URLs, such as 2024-10-21",
            );
        }
    }
    for (field, present, provider) in [
        ("bedrock", backend.bedrock.is_some(), Provider::Bedrock),
        ("vertex", backend.vertex.is_some(), Provider::Vertex),
    ] {
        if present && backend.provider != provider {
            errors.add(at(field), format!("only allowed with provider {field}"));
        } else if !present && backend.provider == provider {
            errors.add(
                at(field),
                format!("provider {field} needs {field} settings (at least a region)"),
            );
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for (h, header) in backend.headers.iter().enumerate() {
        let lower = header.name.to_ascii_lowercase();
        if header.value.is_some() == header.value_from.is_some() {
            errors.add(at(&format!("headers[{h}]")), "set exactly one of value and valueFrom");
        } else if RESERVED_HEADERS.contains(&lower.as_str()) {
            errors.add(
                at(&format!("headers[{h}].name")),
                format!("{:?} belongs to the transport and cannot be set", header.name),
            );
        } else if auth_headers(backend).contains(&lower.as_str()) {
            errors.add(
                at(&format!("headers[{h}].name")),
                format!(
                    "{:?} carries this backend's own credentials and cannot be set here; \
                     a proxy that needs its own key can take it in another header",
                    header.name
                ),
            );
        } else if !names.insert(lower) {
            errors.add(
                at(&format!("headers[{h}].name")),
                format!("{:?} is set twice", header.name),
            );
        }
    }
    let t = &backend.timeouts;
    for (field, value) in [("connect", t.connect), ("firstByte", t.first_byte), ("total", t.total)] {
        if value.get().is_zero() {
            errors.add(at(&format!("timeouts.{field}")), "must be above zero");
        }
    }
    if t.first_byte > t.total {
        errors.add(at("timeouts.firstByte"), "must not exceed timeouts.total");
    }
    if let Some(limits) = &backend.limits {
        for (field, value) in [
            ("requestsPerMinute", limits.requests_per_minute),
            ("tokensPerMinute", limits.tokens_per_minute),
            ("maxConcurrency", limits.max_concurrency),
        ] {
            if value == Some(0) {
                errors.add(
                    at(&format!("limits.{field}")),
                    "must be at least 1; omit it for no limit",
                );
            }
        }
    }
}

fn validate_rule(errors: &mut Errors, i: usize, rule: &RoutingRule, backends: &BTreeMap<&str, usize>) {
    for (j, name) in rule.backends.iter().enumerate() {
        if !backends.contains_key(name.as_str()) {
            errors.add(
                format!("spec.rules[{i}].backends[{j}]"),
                format!("names backend {:?}, which is not in spec.backends", name.as_str()),
            );
        }
    }
    if rule.backends.is_empty() {
        errors.add(format!("spec.rules[{i}].backends"), "list at least one backend");
    }
    if let (Some(min), Some(max)) = (rule.when.min_prompt_tokens, rule.when.max_prompt_tokens)
        && min > max
    {
        errors.add(
            format!("spec.rules[{i}].when.minPromptTokens"),
            "must not exceed maxPromptTokens",
        );
    }
}

/// An API root must be an absolute http(s) URL with a host and nothing a header could smuggle.
fn check_base_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} must start with https:// or http://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} contains whitespace or control characters"));
    }
    if url.contains(['?', '#']) {
        return Err(format!("{url:?} must not carry a query or fragment"));
    }
    Ok(())
}

/// Checks a budget on its own.
pub fn validate_budget(spec: &BudgetSpec) -> Result<(), Invalid> {
    let mut errors = Errors::default();
    if jiff::tz::TimeZone::get(&spec.time_zone).is_err() {
        errors.add(
            "spec.timeZone",
            format!(
                "{:?} is not an IANA time zone such as UTC or Europe/Berlin",
                spec.time_zone
            ),
        );
    }
    if spec.enforcement == Enforcement::Downgrade && spec.downgrade_to.is_empty() {
        errors.add(
            "spec.downgradeTo",
            "enforcement downgrade needs at least one backend name here",
        );
    }
    let mut seen = BTreeMap::new();
    for (i, t) in spec.alert_thresholds.iter().enumerate() {
        if !(1..=1000).contains(t) {
            errors.add(
                format!("spec.alertThresholds[{i}]"),
                "must be a percentage from 1 to 1000",
            );
        }
        if let Some(first) = seen.insert(*t, i) {
            errors.add(
                format!("spec.alertThresholds[{i}]"),
                format!("duplicate threshold {t} (also spec.alertThresholds[{first}])"),
            );
        }
    }
    errors.finish()
}

/// Checks what a route refers to: its budget exists, and a downgrading budget names backends the route has.
pub fn validate_references(route: &ModelRouteSpec, budget: Option<&BudgetSpec>) -> Result<(), Invalid> {
    let mut errors = Errors::default();
    match (&route.budget_ref, budget) {
        (Some(r), None) => errors.add(
            "spec.budgetRef.name",
            format!("Budget {:?} does not exist in this namespace", r.name),
        ),
        (Some(_), Some(budget)) if budget.enforcement == Enforcement::Downgrade => {
            let names = route.backends_by_name();
            if !budget.downgrade_to.iter().any(|n| names.contains_key(n.as_str())) {
                errors.add(
                    "spec.budgetRef.name",
                    "the budget downgrades to backends this route does not have: add one of its downgradeTo backends",
                );
            }
        }
        _ => {}
    }
    if route.budget_ref.is_some() {
        for (i, backend) in route.backends.iter().enumerate() {
            if backend.pricing.is_none() && backend.provider != Provider::Simulator {
                errors.add(
                    format!("spec.backends[{i}].pricing"),
                    "a route with a budgetRef needs pricing on every backend, or its spend cannot be counted",
                );
            }
        }
    }
    errors.finish()
}

#[cfg(test)]
mod tests;
