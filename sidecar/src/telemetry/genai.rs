//! What the spans say, as pure functions from the request path's own types to OpenTelemetry
//! attributes: the GenAI semantic conventions (`gen_ai.*`, development status) where they have a
//! name, `sluice.*` for the rest. Never a message, a prompt, a completion, a key or a header.

use opentelemetry::{KeyValue, Value};
use serde::Deserialize;
use sluice_crds::{Outcome, Provider};
use sluice_telemetry::count;

use sluice_crds::MicroUsd;

use crate::{
    formats::openai::{ChatRequest, CompletionsRequest, EmbeddingsRequest},
    wire::{ProviderError, Usage},
};

/// The request as the spans read it (the pipeline's parsed body).
#[derive(Debug, Clone, Copy)]
pub enum Asked<'a> {
    /// A chat completion (Chat Completions, Messages and Responses all arrive as one).
    Chat(&'a ChatRequest),
    /// A legacy completion.
    Completions(&'a CompletionsRequest),
    /// Embeddings.
    Embeddings(&'a EmbeddingsRequest),
}

/// What a request came to, as the spans read it (the recorder's `Finished`).
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    /// How it ended.
    pub outcome: Outcome,
    /// The backend that answered or failed last: its name and provider.
    pub backend: Option<(&'a str, Provider)>,
    /// Tokens used, when known.
    pub usage: Option<Usage>,
    /// Money spent.
    pub cost: MicroUsd,
    /// Attempts made.
    pub attempts: u32,
    /// Arrival to the first streamed chunk, for a streamed answer.
    pub time_to_first_token: Option<std::time::Duration>,
    /// `hit`, `miss` or `bypass`; empty when the request got no answer.
    pub cache: &'static str,
}

/// `gen_ai.operation.name` for a request body.
pub fn operation(asked: Asked<'_>) -> &'static str {
    match asked {
        Asked::Chat(_) => "chat",
        Asked::Completions(_) => "text_completion",
        Asked::Embeddings(_) => "embeddings",
    }
}

/// `gen_ai.provider.name` for a backend's provider, from the conventions' list where it has
/// one; an OpenAI-compatible server is called by OpenAI's protocol, so it is `openai`.
pub fn provider_name(provider: Provider) -> &'static str {
    match provider {
        Provider::Openai | Provider::OpenaiCompatible => "openai",
        Provider::Anthropic => "anthropic",
        Provider::Gemini => "gcp.gemini",
        Provider::AzureOpenai => "azure.ai.openai",
        Provider::Bedrock => "aws.bedrock",
        Provider::Vertex => "gcp.vertex_ai",
        Provider::Simulator => "sluice.simulator",
    }
}

/// What the request asks: operation, model, and the sampling parameters it sets.
pub fn request_attributes(model: &str, asked: Asked<'_>) -> Vec<KeyValue> {
    let operation = operation(asked);
    let mut out = vec![
        KeyValue::new("gen_ai.operation.name", operation),
        KeyValue::new("gen_ai.request.model", model.to_owned()),
    ];
    let (max_tokens, rest) = match asked {
        Asked::Chat(r) => (r.completion_cap(), Some(&r.rest)),
        Asked::Completions(r) => (r.max_tokens, Some(&r.rest)),
        Asked::Embeddings(_) => (None, None),
    };
    if let Some(max) = max_tokens {
        out.push(KeyValue::new("gen_ai.request.max_tokens", i64::from(max)));
    }
    if let Some(t) = rest
        .and_then(|r| r.get("temperature"))
        .and_then(serde_json::Value::as_f64)
    {
        out.push(KeyValue::new("gen_ai.request.temperature", t));
    }
    out
}

/// The parts of an OpenAI-format answer the conventions name; nothing else is read.
#[derive(Deserialize)]
struct Answer {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    finish_reason: Option<String>,
}

/// `gen_ai.response.id`, `.model` and `.finish_reasons` of a whole OpenAI-format answer; none
/// when it does not parse.
pub fn response_attributes(body: &[u8]) -> Vec<KeyValue> {
    let Ok(answer) = serde_json::from_slice::<Answer>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(id) = answer.id {
        out.push(KeyValue::new("gen_ai.response.id", id));
    }
    if let Some(model) = answer.model {
        out.push(KeyValue::new("gen_ai.response.model", model));
    }
    let reasons: Vec<_> = answer
        .choices
        .into_iter()
        .filter_map(|c| c.finish_reason)
        .map(Into::into)
        .collect();
    if !reasons.is_empty() {
        out.push(KeyValue::new(
            "gen_ai.response.finish_reasons",
            Value::Array(opentelemetry::Array::String(reasons)),
        ));
    }
    out
}

/// What the request came to: who served, tokens, cost, attempts, cache, and `error.type` when
/// it was not served.
pub fn finished_attributes(f: &Ending<'_>) -> Vec<KeyValue> {
    let mut out = vec![
        KeyValue::new("sluice.outcome", outcome(f.outcome)),
        count("sluice.attempts", u64::from(f.attempts)),
        KeyValue::new("sluice.cost_usd", f.cost.to_string()),
    ];
    if !f.cache.is_empty() {
        out.push(KeyValue::new("sluice.cache", f.cache));
    }
    if let Some((name, provider)) = f.backend {
        out.push(KeyValue::new("sluice.backend", name.to_owned()));
        out.push(KeyValue::new("gen_ai.provider.name", provider_name(provider)));
    }
    if let Some(usage) = f.usage {
        out.push(count("gen_ai.usage.input_tokens", usage.input.0));
        out.push(count("gen_ai.usage.output_tokens", usage.output.0));
        out.push(KeyValue::new("sluice.usage_estimated", usage.estimated));
    }
    if let Some(ttft) = f.time_to_first_token {
        out.push(KeyValue::new("gen_ai.response.time_to_first_chunk", ttft.as_secs_f64()));
    }
    if f.outcome != Outcome::Ok && f.outcome != Outcome::CacheHit {
        out.push(KeyValue::new("error.type", outcome(f.outcome)));
    }
    out
}

/// The outcome as the usage ledger and the metrics spell it.
fn outcome(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::UpstreamError => "upstream_error",
        Outcome::RateLimited => "rate_limited",
        Outcome::BudgetRefused => "budget_refused",
        Outcome::CacheHit => "cache_hit",
    }
}

/// `error.type` of a failed attempt: the status code for an error status (as the HTTP
/// conventions say), a short class otherwise.
pub fn error_type(error: &ProviderError) -> String {
    match error {
        ProviderError::Status { status, .. } => status.as_str().to_owned(),
        ProviderError::Connect(_) => "connect".into(),
        ProviderError::Timeout(_) => "timeout".into(),
        ProviderError::InvalidResponse(_) => "invalid_response".into(),
        ProviderError::Interrupted(_) => "interrupted".into(),
        ProviderError::Unsupported(_) => "unsupported".into(),
        ProviderError::BudgetSpent(_) => "budget_spent".into(),
    }
}

#[cfg(test)]
mod tests;
