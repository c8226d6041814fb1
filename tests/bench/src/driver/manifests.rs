//! The two sidecar configurations a run compares: a minimal route, and the full feature path.
//!
//! Both serve the same model names, each forwarded under the same name to the benchmark
//! upstream through an `openai-compatible` backend, so a client sends the same body to the
//! upstream, the floor and either sidecar.
//!
//! The full path adds what every request then pays for: content rules evaluated (none
//! matches), a second backend to choose from, per-user, route and backend limits (set high
//! enough never to refuse), a budget reserved before and settled after each call with
//! pricing, and the metrics every sidecar keeps.

use std::path::Path;

use anyhow::{Context as _, Result};

/// The models a run calls, as `(route name, model)`: the model is also the upstream's control.
pub const ROUTES: &[(&str, &str)] = &[("fast", FAST_MODEL), ("stream", STREAM_MODEL), ("hold", HOLD_MODEL)];

/// A non-streamed call: the upstream answers a fixed completion. An OpenAI model family, so the
/// sidecar counts prompt tokens with the real BPE (`o200k_base`) where it counts them.
pub const FAST_MODEL: &str = "gpt-4o-mini";
/// A 100-chunk stream sent at once.
pub const STREAM_MODEL: &str = "gpt-4o-mini-stream-100";
/// Chunks of [`STREAM_MODEL`].
pub const STREAM_CHUNKS: u32 = 100;
/// A slow stream, one chunk a second for ten minutes: held open to measure memory.
pub const HOLD_MODEL: &str = "gpt-4o-mini-stream-600-1000000";

const NAMESPACE: &str = "bench";

/// Which configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Features {
    /// One backend, nothing else.
    Minimal,
    /// Rules, limits, budget with pricing, two backends.
    Full,
}

/// Writes the manifests of `features` into `dir` for an upstream at `upstream` (`http://…`).
pub fn write(dir: &Path, features: Features, upstream: &str) -> Result<()> {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: bench, namespace: {NAMESPACE}}}\n\
         stringData: {{apiKey: sk-bench-not-a-secret}}\n"
    );
    if features == Features::Full {
        yaml.push_str(BUDGET);
    }
    for (name, model) in ROUTES {
        yaml.push_str(&route(name, model, features, upstream));
    }
    let path = dir.join("bench.yaml");
    std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))
}

const BUDGET: &str = "---\napiVersion: sluice.dev/v1alpha1\nkind: Budget\n\
metadata: {name: bench, namespace: bench}\n\
spec: {limitUSD: \"1000000.00\", period: monthly, timeZone: UTC, enforcement: hard, alertThresholds: [50, 80, 100]}\n";

fn route(name: &str, model: &str, features: Features, upstream: &str) -> String {
    let base = format!("{upstream}/v1");
    let backend = |backend: &str, priority: u32, extra: &str| {
        format!(
            "  - name: {backend}\n    provider: openai-compatible\n    baseUrl: {base}\n    model: {model}\n    \
             priority: {priority}\n    credentialsRef: {{name: bench, key: apiKey}}\n    \
             timeouts: {{connect: 2s, firstByte: 30s, total: 900s}}\n{extra}"
        )
    };
    let head = format!(
        "---\napiVersion: sluice.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         spec:\n  models: [{model}]\n"
    );
    match features {
        Features::Minimal => format!("{head}  backends:\n{}", backend("upstream", 0, "")),
        Features::Full => {
            let priced = "    pricing: {inputPerMTok: \"2.00\", outputPerMTok: \"8.00\", cachedInputPerMTok: \"0.50\"}\n    \
                          limits: {requestsPerMinute: 1000000000, tokensPerMinute: 4000000000, maxConcurrency: 4096}\n";
            format!(
                "{head}  strategy: priority\n  backends:\n{}{}  rules:\n  \
                 - when: {{maxPromptTokens: 2000, anyKeyword: [translate, summarize]}}\n    backends: [secondary]\n  \
                 - when: {{header: {{name: x-sluice-tier, value: premium}}}}\n    backends: [secondary]\n  \
                 retry: {{attempts: 3, backoff: {{base: 100ms, max: 2s}}, retryOn: [connect-error, timeout, \"429\", \"5xx\"]}}\n  \
                 circuitBreaker: {{consecutiveFailures: 5, openFor: 30s}}\n  \
                 rateLimit: {{requestsPerMinute: 1000000000, tokensPerMinute: 4000000000}}\n  \
                 perUser: {{requestsPerMinute: 1000000000, tokensPerMinute: 4000000000, requestsPerDay: 4000000000}}\n  \
                 budgetRef: {{name: bench}}\n",
                backend("primary", 0, priced),
                backend("secondary", 1, priced),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_manifest_names_every_feature() {
        let dir = std::env::temp_dir().join(format!("sluice-bench-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir, Features::Full, "http://127.0.0.1:9").unwrap();
        let yaml = std::fs::read_to_string(dir.join("bench.yaml")).unwrap();
        for needle in [
            "kind: Budget",
            "perUser:",
            "rateLimit:",
            "rules:",
            "pricing:",
            "budgetRef:",
        ] {
            assert!(yaml.contains(needle), "{needle} missing");
        }
        assert_eq!(yaml.matches("kind: ModelRoute").count(), ROUTES.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
