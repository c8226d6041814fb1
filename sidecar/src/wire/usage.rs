//! Tokens one answer used, and what they cost.
//!
//! Every provider's counts are normalized to OpenAI's shape: `input` is the whole prompt, and
//! the parts of it read from and written to the provider's cache are counted apart.
//! - OpenAI Chat Completions reports `prompt_tokens` (cached ones included) and
//!   `prompt_tokens_details.cached_tokens` (reads); it has no cache-write count (OpenAI does not
//!   bill writes apart), so writes are zero.
//! - Anthropic reports `input_tokens` *excluding* both `cache_read_input_tokens` and
//!   `cache_creation_input_tokens`; its translation adds them back into the prompt and carries
//!   the writes as `prompt_tokens_details.cache_creation_tokens`, read here.
//! - Gemini reports `cachedContentTokenCount` (reads, included in `promptTokenCount`) and no
//!   write count: its implicit caching bills no writes.

use serde_json::Value;
use sluice_crds::{MicroUsd, Pricing, Tokens};

/// Tokens one answer used, as the provider reported them or as estimated here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, cached ones (read or written) included.
    pub input: Tokens,
    /// Prompt tokens read from the provider's cache.
    pub cached_input: Tokens,
    /// Prompt tokens written to the provider's cache (Anthropic bills them at their own price).
    pub cache_write_input: Tokens,
    /// Completion tokens.
    pub output: Tokens,
    /// Whether the counts were estimated locally.
    pub estimated: bool,
}

impl Usage {
    /// Reads OpenAI's `usage` object (`prompt_tokens`, `completion_tokens`,
    /// `prompt_tokens_details.cached_tokens`, and the `cache_creation_tokens` beside it that the
    /// sidecar writes for Anthropic's cache writes); `None` when absent or null.
    pub fn from_openai(usage: &Value) -> Option<Self> {
        let count = |v: Option<&Value>| Tokens(v.and_then(Value::as_u64).unwrap_or(0));
        usage.as_object()?;
        Some(Self {
            input: count(usage.get("prompt_tokens")),
            cached_input: count(usage.pointer("/prompt_tokens_details/cached_tokens")),
            cache_write_input: count(usage.pointer("/prompt_tokens_details/cache_creation_tokens")),
            output: count(usage.get("completion_tokens")),
            estimated: false,
        })
    }

    /// Counts from a Responses API `usage` object (`input_tokens`, `output_tokens`, details).
    pub fn from_responses(usage: &Value) -> Option<Self> {
        let count = |v: Option<&Value>| Tokens(v.and_then(Value::as_u64).unwrap_or(0));
        usage.as_object()?;
        Some(Self {
            input: count(usage.get("input_tokens")),
            cached_input: count(usage.pointer("/input_tokens_details/cached_tokens")),
            cache_write_input: count(usage.pointer("/input_tokens_details/cache_write_tokens")),
            output: count(usage.get("output_tokens")),
            estimated: false,
        })
    }

    /// OpenAI's `usage` object for these counts; cache writes only when there are any.
    pub fn to_openai(&self) -> Value {
        let mut usage = serde_json::json!({
            "prompt_tokens": self.input.0,
            "completion_tokens": self.output.0,
            "total_tokens": (self.input + self.output).0,
            "prompt_tokens_details": {"cached_tokens": self.cached_input.0},
        });
        if self.cache_write_input.0 > 0 {
            usage["prompt_tokens_details"]["cache_creation_tokens"] = self.cache_write_input.0.into();
        }
        usage
    }

    /// The price of this usage, rounded to the nearest micro-dollar (half up), once for the sum:
    /// uncached input × input price + cache reads × cached price + cache writes × write price +
    /// output × output price. The cached and write prices default to the input price; reads and
    /// writes are parts of `input`, never counted past it (reads first).
    pub fn cost(&self, pricing: &Pricing) -> MicroUsd {
        let read = self.cached_input.0.min(self.input.0);
        let written = self.cache_write_input.0.min(self.input.0 - read);
        let uncached = self.input.0 - read - written;
        let read_price = pricing.cached_input_per_m_tok.unwrap_or(pricing.input_per_m_tok);
        let write_price = pricing.cache_write_input_per_m_tok.unwrap_or(pricing.input_per_m_tok);
        // Token counts times micro-dollars per million tokens, in u128 so no product overflows.
        let micro_millionths = u128::from(uncached) * u128::from(pricing.input_per_m_tok.micros())
            + u128::from(read) * u128::from(read_price.micros())
            + u128::from(written) * u128::from(write_price.micros())
            + u128::from(self.output.0) * u128::from(pricing.output_per_m_tok.micros());
        let micros = (micro_millionths + 500_000) / 1_000_000;
        MicroUsd::new(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

/// A rough token count for text when no tokenizer applies: about four characters per token.
pub fn estimate_tokens(chars: usize) -> Tokens {
    Tokens(u64::try_from(chars.div_ceil(4)).unwrap_or(u64::MAX).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pricing(input: &str, output: &str, cached: Option<&str>) -> Pricing {
        Pricing {
            input_per_m_tok: input.parse().unwrap(),
            output_per_m_tok: output.parse().unwrap(),
            cached_input_per_m_tok: cached.map(|c| c.parse().unwrap()),
            cache_write_input_per_m_tok: None,
        }
    }

    /// Anthropic's list prices for a Sonnet-class model: $3 in, $15 out, $0.30 per cache read and
    /// $3.75 (1.25× input) per 5-minute cache write.
    fn anthropic_pricing() -> Pricing {
        Pricing {
            cache_write_input_per_m_tok: Some("3.75".parse().unwrap()),
            ..pricing("3.00", "15.00", Some("0.30"))
        }
    }

    #[test]
    fn reads_openai_usage_with_cached_tokens() {
        let v = serde_json::json!({"prompt_tokens": 100, "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 40}});
        let u = Usage::from_openai(&v).unwrap();
        assert_eq!(
            (u.input, u.cached_input, u.cache_write_input, u.output),
            (Tokens(100), Tokens(40), Tokens(0), Tokens(20))
        );
        assert_eq!(Usage::from_openai(&Value::Null), None);
    }

    #[test]
    fn reads_and_writes_back_cache_writes_beside_the_cached_tokens() {
        let v = serde_json::json!({"prompt_tokens": 100, "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 40, "cache_creation_tokens": 25}});
        let u = Usage::from_openai(&v).unwrap();
        assert_eq!((u.cached_input, u.cache_write_input), (Tokens(40), Tokens(25)));
        assert_eq!(
            u.to_openai(),
            serde_json::json!({"prompt_tokens": 100, "completion_tokens": 20,
            "total_tokens": 120, "prompt_tokens_details": {"cached_tokens": 40, "cache_creation_tokens": 25}})
        );
        // No writes, no field: OpenAI's own shape.
        let none = Usage {
            cache_write_input: Tokens(0),
            ..u
        };
        assert_eq!(
            none.to_openai()["prompt_tokens_details"],
            serde_json::json!({"cached_tokens": 40})
        );
    }

    #[test]
    fn prices_cached_input_at_its_own_rate() {
        let u = Usage {
            input: Tokens(1_000_000),
            cached_input: Tokens(500_000),
            cache_write_input: Tokens(0),
            output: Tokens(250_000),
            estimated: false,
        };
        // 0.5M × $2 + 0.5M × $0.50 + 0.25M × $8 = $1 + $0.25 + $2.
        assert_eq!(u.cost(&pricing("2.00", "8.00", Some("0.50"))), MicroUsd::new(3_250_000));
        // Without a cached price, cached tokens cost the input price.
        assert_eq!(u.cost(&pricing("2.00", "8.00", None)), MicroUsd::new(4_000_000));
    }

    #[test]
    fn rounds_small_costs_to_the_nearest_micro_dollar() {
        let u = Usage {
            input: Tokens(3),
            cached_input: Tokens(0),
            cache_write_input: Tokens(0),
            output: Tokens(0),
            estimated: false,
        };
        // 3 tokens × $0.10 per million = 0.3 micro-dollars.
        assert_eq!(u.cost(&pricing("0.10", "0.42", None)), MicroUsd::new(0));
        let u = Usage { input: Tokens(7), ..u };
        assert_eq!(u.cost(&pricing("0.10", "0.42", None)), MicroUsd::new(1));
    }

    #[test]
    fn bills_anthropic_cache_writes_at_their_price_to_the_micro_dollar() {
        // Anthropic's 1,000 uncached + 2,000 read + 3,000 written prompt tokens, 500 out.
        let u = Usage {
            input: Tokens(6_000),
            cached_input: Tokens(2_000),
            cache_write_input: Tokens(3_000),
            output: Tokens(500),
            estimated: false,
        };
        // 1,000 × $3 + 2,000 × $0.30 + 3,000 × $3.75 + 500 × $15, per million:
        // 3,000 + 600 + 11,250 + 7,500 micro-dollars.
        assert_eq!(u.cost(&anthropic_pricing()), MicroUsd::new(22_350));
        // Without a write price, writes cost the input price: 3,000 × $3 = 9,000 instead.
        let no_write_price = Pricing {
            cache_write_input_per_m_tok: None,
            ..anthropic_pricing()
        };
        assert_eq!(u.cost(&no_write_price), MicroUsd::new(20_100));
    }

    #[test]
    fn rounds_the_sum_once_half_up_with_cache_writes() {
        // 1 write at $3.75 per million = 3.75 micro-dollars; 1 read at $0.30 = 0.3: 4.05 → 4.
        let u = Usage {
            input: Tokens(2),
            cached_input: Tokens(1),
            cache_write_input: Tokens(1),
            output: Tokens(0),
            estimated: false,
        };
        assert_eq!(u.cost(&anthropic_pricing()), MicroUsd::new(4));
        // 2 writes = 7.5 micro-dollars: half rounds up, to 8.
        let u = Usage {
            cached_input: Tokens(0),
            cache_write_input: Tokens(2),
            ..u
        };
        assert_eq!(u.cost(&anthropic_pricing()), MicroUsd::new(8));
    }

    #[test]
    fn never_bills_cache_tokens_past_the_prompt() {
        // A provider that reports more cache tokens than prompt tokens: reads first, then writes,
        // up to the prompt; nothing is billed twice or below zero.
        let u = Usage {
            input: Tokens(1_000_000),
            cached_input: Tokens(600_000),
            cache_write_input: Tokens(600_000),
            output: Tokens(0),
            estimated: false,
        };
        // 0.6M × $0.30 + 0.4M × $3.75 = $0.18 + $1.50.
        assert_eq!(u.cost(&anthropic_pricing()), MicroUsd::new(1_680_000));
    }

    #[test]
    fn a_cache_write_price_parses_to_exact_micro_dollars_and_is_optional() {
        let with: Pricing = serde_json::from_str(
            r#"{"inputPerMTok":"3.00","outputPerMTok":"15.00","cacheWriteInputPerMTok":"3.750001"}"#,
        )
        .unwrap();
        assert_eq!(with.cache_write_input_per_m_tok, Some(MicroUsd::new(3_750_001)));
        let without: Pricing = serde_json::from_str(r#"{"inputPerMTok":"3.00","outputPerMTok":"15.00"}"#).unwrap();
        assert_eq!(without.cache_write_input_per_m_tok, None);
        assert!(!serde_json::to_string(&without).unwrap().contains("cacheWrite"));
    }
}
