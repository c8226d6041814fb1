//! The soak's sidecar configuration: a plain route and a streamed route, each priced, each
//! with per-user limits, both spending one hard budget.
//!
//! Each route sends to its own path prefix of the in-process upstream (`/plain/v1`,
//! `/stream/v1`), so the upstream counts what reaches it per kind without reading a body.

use std::path::Path;

use anyhow::{Context as _, Result};

use super::Kind;

/// Namespace of every object.
pub const NAMESPACE: &str = "soak";
/// The budget both routes spend (`namespace/name` as `/budgets` names it).
pub const BUDGET: &str = "soak/soak";
/// Model of the plain route: an OpenAI model family, so prompt tokens are counted with its BPE.
pub const PLAIN_MODEL: &str = "gpt-4o-mini";
/// Chunks of every stream.
pub const STREAM_CHUNKS: u32 = 100;
/// Price of a million prompt tokens, USD (written as the manifest takes it).
pub const INPUT_PER_MTOK: &str = "0.15";
/// Price of a million completion tokens, USD.
pub const OUTPUT_PER_MTOK: &str = "0.60";
/// The same prices in micro-dollars per million tokens, for the client's own cost arithmetic.
pub const INPUT_MICROS_PER_MTOK: u64 = 150_000;
/// See [`INPUT_MICROS_PER_MTOK`].
pub const OUTPUT_MICROS_PER_MTOK: u64 = 600_000;
/// The hard budget's limit: high, so it never refuses, but every request reserves and settles.
pub const BUDGET_LIMIT_USD: &str = "1000000.00";

/// The model of the streamed route: the upstream streams [`STREAM_CHUNKS`] chunks,
/// `delay_us` apart.
pub fn stream_model(delay_us: u64) -> String {
    format!("gpt-4o-mini-stream-{STREAM_CHUNKS}-{delay_us}")
}

/// A route's name (and the `route` label of its metrics is `soak/<name>`).
pub fn route_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Plain => "plain",
        Kind::Stream => "stream",
    }
}

/// Per-user limits of one route.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct UserLimit {
    /// Requests per minute per user.
    pub requests_per_minute: u32,
}

/// Writes the manifests into `dir` for an upstream at `upstream` (`http://…`).
pub fn write(
    dir: &Path,
    upstream: &str,
    stream_delay_us: u64,
    plain_limit: UserLimit,
    stream_limit: UserLimit,
) -> Result<()> {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: soak, namespace: {NAMESPACE}}}\n\
         stringData: {{apiKey: sk-soak-not-a-secret}}\n\
         ---\napiVersion: sluice.dev/v1alpha1\nkind: Budget\nmetadata: {{name: soak, namespace: {NAMESPACE}}}\n\
         spec: {{limitUSD: \"{BUDGET_LIMIT_USD}\", period: monthly, timeZone: UTC, enforcement: hard, \
         alertThresholds: [50, 80, 100]}}\n"
    );
    yaml.push_str(&route(Kind::Plain, PLAIN_MODEL, upstream, plain_limit));
    yaml.push_str(&route(
        Kind::Stream,
        &stream_model(stream_delay_us),
        upstream,
        stream_limit,
    ));
    let path = dir.join("soak.yaml");
    std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))
}

fn route(kind: Kind, model: &str, upstream: &str, limit: UserLimit) -> String {
    let name = route_name(kind);
    // Token and daily limits far above the load: they never refuse, but the sidecar counts
    // prompt tokens and keeps every bucket on each request.
    format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         spec:\n  models: [{model}]\n  backends:\n  \
         - name: primary\n    provider: openai-compatible\n    baseUrl: {upstream}/{name}/v1\n    model: {model}\n    \
         credentialsRef: {{name: soak, key: apiKey}}\n    \
         timeouts: {{connect: 2s, firstByte: 30s, total: 300s}}\n    \
         pricing: {{inputPerMTok: \"{INPUT_PER_MTOK}\", outputPerMTok: \"{OUTPUT_PER_MTOK}\"}}\n  \
         perUser: {{requestsPerMinute: {rpm}, tokensPerMinute: 1000000000, requestsPerDay: 4000000000}}\n  \
         budgetRef: {{name: soak}}\n",
        rpm = limit.requests_per_minute,
    )
}

/// The cost of one answer as the sidecar prices it: tokens × micro-dollars per million
/// tokens, rounded to the nearest micro-dollar.
pub fn cost_micros(prompt_tokens: u64, completion_tokens: u64) -> u64 {
    let millionths = u128::from(prompt_tokens) * u128::from(INPUT_MICROS_PER_MTOK)
        + u128::from(completion_tokens) * u128::from(OUTPUT_MICROS_PER_MTOK);
    u64::try_from((millionths + 500_000) / 1_000_000).unwrap_or(u64::MAX)
}

/// Reads a decimal dollar amount (`"0.000062"`, at most six decimals) as micro-dollars.
pub fn parse_usd_micros(text: &str) -> Option<u64> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || frac.len() > 6 || !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    whole.checked_mul(1_000_000)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_agree_with_their_micro_form() {
        assert_eq!(parse_usd_micros(INPUT_PER_MTOK), Some(INPUT_MICROS_PER_MTOK));
        assert_eq!(parse_usd_micros(OUTPUT_PER_MTOK), Some(OUTPUT_MICROS_PER_MTOK));
    }

    #[test]
    fn dollars_parse_to_micros() {
        assert_eq!(parse_usd_micros("0.000062"), Some(62));
        assert_eq!(parse_usd_micros("12.5"), Some(12_500_000));
        assert_eq!(parse_usd_micros("3"), Some(3_000_000));
        assert_eq!(parse_usd_micros("0.0000001"), None);
        assert_eq!(parse_usd_micros("-1"), None);
        assert_eq!(parse_usd_micros(""), None);
    }

    #[test]
    fn cost_rounds_to_the_nearest_micro_dollar() {
        // 12 × 0.15 + 9 × 0.60 = 7.2 µ$; 12 × 0.15 + 100 × 0.60 = 61.8 µ$.
        assert_eq!(cost_micros(12, 9), 7);
        assert_eq!(cost_micros(12, 100), 62);
    }

    #[test]
    fn manifest_has_both_routes_budget_and_user_limits() {
        let dir = std::env::temp_dir().join(format!("sluice-soak-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let limit = UserLimit {
            requests_per_minute: 600,
        };
        write(&dir, "http://127.0.0.1:9", 5000, limit, limit).unwrap();
        let yaml = std::fs::read_to_string(dir.join("soak.yaml")).unwrap();
        assert_eq!(yaml.matches("kind: ModelRoute").count(), 2);
        assert_eq!(yaml.matches("budgetRef: {name: soak}").count(), 2);
        assert_eq!(yaml.matches("perUser:").count(), 2);
        assert!(yaml.contains("baseUrl: http://127.0.0.1:9/stream/v1"));
        assert!(yaml.contains("models: [gpt-4o-mini-stream-100-5000]"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
