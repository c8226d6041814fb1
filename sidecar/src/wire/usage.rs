//! Tokens one answer used, and what they cost.

use serde_json::Value;
use sluice_crds::{MicroUsd, Pricing, Tokens};

/// Tokens one answer used, as the provider reported them or as estimated here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub input: Tokens,
    /// Prompt tokens served from the provider's cache.
    pub cached_input: Tokens,
    /// Completion tokens.
    pub output: Tokens,
    /// Whether the counts were estimated locally.
    pub estimated: bool,
}

impl Usage {
    /// Reads OpenAI's `usage` object (`prompt_tokens`, `completion_tokens`,
    /// `prompt_tokens_details.cached_tokens`); `None` when absent or null.
    pub fn from_openai(usage: &Value) -> Option<Self> {
        let count = |v: Option<&Value>| Tokens(v.and_then(Value::as_u64).unwrap_or(0));
        usage.as_object()?;
        Some(Self {
            input: count(usage.get("prompt_tokens")),
            cached_input: count(usage.pointer("/prompt_tokens_details/cached_tokens")),
            output: count(usage.get("completion_tokens")),
            estimated: false,
        })
    }

    /// OpenAI's `usage` object for these counts.
    pub fn to_openai(&self) -> Value {
        serde_json::json!({
            "prompt_tokens": self.input.0,
            "completion_tokens": self.output.0,
            "total_tokens": (self.input + self.output).0,
            "prompt_tokens_details": {"cached_tokens": self.cached_input.0},
        })
    }

    /// The price of this usage, rounded to the nearest micro-dollar.
    pub fn cost(&self, pricing: &Pricing) -> MicroUsd {
        let cached = self.cached_input.0.min(self.input.0);
        let uncached = self.input.0 - cached;
        let cached_price = pricing.cached_input_per_m_tok.unwrap_or(pricing.input_per_m_tok);
        // Token counts times micro-dollars per million tokens, in u128 so no product overflows.
        let micro_millionths = u128::from(uncached) * u128::from(pricing.input_per_m_tok.micros())
            + u128::from(cached) * u128::from(cached_price.micros())
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
        }
    }

    #[test]
    fn reads_openai_usage_with_cached_tokens() {
        let v = serde_json::json!({"prompt_tokens": 100, "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 40}});
        let u = Usage::from_openai(&v).unwrap();
        assert_eq!(
            (u.input, u.cached_input, u.output),
            (Tokens(100), Tokens(40), Tokens(20))
        );
        assert_eq!(Usage::from_openai(&Value::Null), None);
    }

    #[test]
    fn prices_cached_input_at_its_own_rate() {
        let u = Usage {
            input: Tokens(1_000_000),
            cached_input: Tokens(500_000),
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
            output: Tokens(0),
            estimated: false,
        };
        // 3 tokens × $0.10 per million = 0.3 micro-dollars.
        assert_eq!(u.cost(&pricing("0.10", "0.42", None)), MicroUsd::new(0));
        let u = Usage { input: Tokens(7), ..u };
        assert_eq!(u.cost(&pricing("0.10", "0.42", None)), MicroUsd::new(1));
    }
}
