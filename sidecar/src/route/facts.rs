//! What routing decisions read from a request, each computed at most once and only if asked.

use std::sync::OnceLock;

use http::HeaderMap;
use serde_json::Value;

use crate::{
    formats::openai::{ChatRequest, CompletionsRequest, EmbeddingsRequest, Role},
    tokenizer::{Prompt, Tokenizer},
};

/// Completion tokens assumed when the request sets no cap.
pub const DEFAULT_EXPECTED_OUTPUT: u64 = 256;
/// The most completion tokens an estimate assumes, whatever cap the request sets.
pub const MAX_EXPECTED_OUTPUT: u64 = 4096;

/// The request body a decision looks at.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// A chat completion.
    Chat(&'a ChatRequest),
    /// An embeddings request.
    Embeddings(&'a EmbeddingsRequest),
    /// A legacy completions request.
    Completions(&'a CompletionsRequest),
}

/// A request as routing sees it.
#[derive(Debug)]
pub struct Facts<'a> {
    body: Body<'a>,
    headers: &'a HeaderMap,
    tokenizer: Tokenizer,
    prompt_tokens: OnceLock<u64>,
    last_user_text: OnceLock<String>,
}

impl<'a> Facts<'a> {
    /// Facts of `body` with `headers`, counting tokens with `tokenizer`.
    pub fn new(body: Body<'a>, headers: &'a HeaderMap, tokenizer: Tokenizer) -> Self {
        Self {
            body,
            headers,
            tokenizer,
            prompt_tokens: OnceLock::new(),
            last_user_text: OnceLock::new(),
        }
    }

    /// The body.
    pub fn body(&self) -> Body<'a> {
        self.body
    }

    /// Prompt tokens, counted on first use.
    pub fn prompt_tokens(&self) -> u64 {
        *self.prompt_tokens.get_or_init(|| match self.body {
            Body::Chat(r) => self.tokenizer.count_chat(r),
            Body::Embeddings(r) => self.tokenizer.count_texts(r.input.texts().iter().map(String::as_str)),
            Body::Completions(r) => self.tokenizer.count_texts(r.texts().iter().map(String::as_str)),
        })
    }

    /// Prompt tokens for after the request: the count if something counted them already, else
    /// the prompt kept to count only if the answer brings no usage.
    pub fn kept_prompt(&self) -> Prompt {
        if let Some(&n) = self.prompt_tokens.get() {
            return Prompt::counted(n);
        }
        match self.body {
            Body::Chat(r) => self.tokenizer.keep_chat(r),
            Body::Embeddings(r) => self.tokenizer.keep_texts(r.input.texts().iter().map(String::as_str)),
            Body::Completions(r) => self.tokenizer.keep_texts(r.texts().iter().map(String::as_str)),
        }
    }

    /// Prompt tokens if something has counted them already; `None` rather than counting now.
    pub fn counted_prompt_tokens(&self) -> Option<u64> {
        self.prompt_tokens.get().copied()
    }

    /// Completion tokens to expect: the request's cap up to [`MAX_EXPECTED_OUTPUT`], else
    /// [`DEFAULT_EXPECTED_OUTPUT`]; none for embeddings.
    pub fn expected_output(&self) -> u64 {
        match self.body {
            Body::Chat(r) => r
                .completion_cap()
                .map_or(DEFAULT_EXPECTED_OUTPUT, |c| u64::from(c).min(MAX_EXPECTED_OUTPUT)),
            Body::Completions(r) => u64::from(r.completion_cap()).min(MAX_EXPECTED_OUTPUT),
            Body::Embeddings(_) => 0,
        }
    }

    /// Prompt plus expected completion tokens: what token limits charge up front.
    pub fn estimated_tokens(&self) -> u64 {
        self.prompt_tokens() + self.expected_output()
    }

    /// A request header's value, when it is text.
    pub fn header(&self, name: &http::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The text of the last user message (a completion's prompt), lower-cased; empty when
    /// there is none.
    pub fn last_user_text(&self) -> &str {
        self.last_user_text.get_or_init(|| {
            let r = match self.body {
                Body::Chat(r) => r,
                Body::Completions(r) => return r.texts().join(" ").to_lowercase(),
                Body::Embeddings(_) => return String::new(),
            };
            let Some(message) = r.messages.iter().rev().find(|m| m.role == Role::User) else {
                return String::new();
            };
            match &message.content {
                Value::String(s) => s.to_lowercase(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase(),
                _ => String::new(),
            }
        })
    }

    /// Whether the request declares tools (or legacy functions).
    pub fn has_tools(&self) -> bool {
        let Body::Chat(r) = self.body else { return false };
        ["tools", "functions"]
            .iter()
            .any(|k| r.rest.get(*k).and_then(Value::as_array).is_some_and(|a| !a.is_empty()))
    }

    /// Whether any message carries an image part.
    pub fn has_images(&self) -> bool {
        let Body::Chat(r) = self.body else { return false };
        r.messages.iter().any(|m| {
            m.content.as_array().is_some_and(|parts| {
                parts.iter().any(|p| {
                    matches!(
                        p.get("type").and_then(Value::as_str),
                        Some("image_url" | "input_image" | "image")
                    )
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{request::parse_completions, translate::responses_to_openai};

    #[test]
    fn every_api_gives_rules_the_same_facts() {
        let headers = HeaderMap::new();
        let responses: crate::formats::responses::ResponsesRequest = serde_json::from_value(serde_json::json!({
            "model": "m", "instructions": "Be brief.",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Please TRANSLATE this"}]}],
            "tools": [{"type": "function", "name": "f"}], "max_output_tokens": 100
        }))
        .unwrap();
        let chat = responses_to_openai::request(&responses).unwrap();
        let facts = Facts::new(Body::Chat(&chat), &headers, Tokenizer::Estimate);
        assert_eq!(facts.last_user_text(), "please translate this");
        assert!(facts.has_tools());
        assert_eq!(facts.expected_output(), 100);
        // "Be brief." and "Please TRANSLATE this" at four characters a token.
        assert_eq!(facts.prompt_tokens(), 3 + 6);

        let completion =
            parse_completions(br#"{"model":"m","prompt":"Please TRANSLATE this","max_tokens":100}"#).unwrap();
        let facts = Facts::new(Body::Completions(&completion), &headers, Tokenizer::Estimate);
        assert_eq!(facts.last_user_text(), "please translate this");
        assert!(!facts.has_tools());
        assert_eq!(facts.expected_output(), 100);
        assert_eq!(facts.prompt_tokens(), 6);
    }
}
