//! Content-based routing: the first rule whose conditions all hold narrows the backends.

use http::HeaderName;
use sluice_crds::{BackendName, RoutingRule};

use super::facts::Facts;

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    min_prompt_tokens: Option<u64>,
    max_prompt_tokens: Option<u64>,
    keywords: Vec<String>,
    header: Option<(HeaderName, String)>,
    has_tools: Option<bool>,
    has_images: Option<bool>,
    /// The backends it narrows to.
    pub backends: Vec<BackendName>,
}

/// A rule's header name is not a valid HTTP header name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("spec.rules[{index}].when.header.name: {name:?} is not a valid header name")]
pub struct BadHeader {
    /// The rule.
    pub index: usize,
    /// The name.
    pub name: String,
}

impl Rule {
    /// Compiles the route's rules in order.
    pub fn compile_all(rules: &[RoutingRule]) -> Result<Vec<Self>, BadHeader> {
        rules.iter().enumerate().map(|(i, r)| Self::compile(i, r)).collect()
    }

    fn compile(index: usize, rule: &RoutingRule) -> Result<Self, BadHeader> {
        let when = &rule.when;
        let header = match &when.header {
            Some(h) => {
                let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()).map_err(|_| BadHeader {
                    index,
                    name: h.name.clone(),
                })?;
                Some((name, h.value.clone()))
            }
            None => None,
        };
        Ok(Self {
            min_prompt_tokens: when.min_prompt_tokens.map(u64::from),
            max_prompt_tokens: when.max_prompt_tokens.map(u64::from),
            keywords: when.any_keyword.iter().map(|k| k.to_lowercase()).collect(),
            header,
            has_tools: when.has_tools,
            has_images: when.has_images,
            backends: rule.backends.clone(),
        })
    }

    /// Whether every condition holds; cheap checks first, the token count last.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        if let Some((name, value)) = &self.header
            && facts.header(name) != Some(value.as_str())
        {
            return false;
        }
        if self.has_tools.is_some_and(|want| facts.has_tools() != want)
            || self.has_images.is_some_and(|want| facts.has_images() != want)
        {
            return false;
        }
        if !self.keywords.is_empty() {
            let text = facts.last_user_text();
            if !self.keywords.iter().any(|k| contains_word(text, k)) {
                return false;
            }
        }
        if self.min_prompt_tokens.is_some() || self.max_prompt_tokens.is_some() {
            let tokens = facts.prompt_tokens();
            if self.min_prompt_tokens.is_some_and(|min| tokens < min)
                || self.max_prompt_tokens.is_some_and(|max| tokens > max)
            {
                return false;
            }
        }
        true
    }
}

/// Whether `needle` occurs in `text` as whole words: "translate" matches "please translate:"
/// but not "translated"; a phrase such as "sum up" matches as a whole too.
fn contains_word(text: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    text.match_indices(needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        !is_word(before) && !is_word(after)
    })
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};
    use sluice_crds::{HeaderMatch, RuleMatch};

    use super::*;
    use crate::{request::parse_chat, route::facts::Body, tokenizer::Tokenizer};

    fn rule(when: RuleMatch) -> Rule {
        let rule = RoutingRule {
            when,
            backends: vec![BackendName::try_from("cheap").unwrap()],
        };
        Rule::compile(0, &rule).unwrap()
    }

    fn matches(rule: &Rule, body: &str, headers: &HeaderMap) -> bool {
        let request = parse_chat(body.as_bytes()).unwrap();
        let facts = Facts::new(Body::Chat(&request), headers, Tokenizer::Estimate);
        rule.matches(&facts)
    }

    fn user(text: &str) -> String {
        serde_json::json!({"model": "m", "messages": [{"role": "system", "content": "translate everything"},
            {"role": "user", "content": text}]})
        .to_string()
    }

    #[test]
    fn keywords_match_whole_words_of_the_last_user_message_case_insensitively() {
        let r = rule(RuleMatch {
            any_keyword: vec!["Translate".into(), "sum up".into()],
            ..RuleMatch::default()
        });
        let none = HeaderMap::new();
        assert!(matches(&r, &user("Please TRANSLATE: bonjour"), &none));
        assert!(matches(&r, &user("can you sum up this?"), &none));
        assert!(!matches(&r, &user("it was translated"), &none));
        assert!(
            !matches(&r, &user("what is the sum?"), &none),
            "the system message does not count"
        );
    }

    #[test]
    fn prompt_token_bounds_are_inclusive() {
        let r = rule(RuleMatch {
            min_prompt_tokens: Some(2),
            max_prompt_tokens: Some(3),
            ..RuleMatch::default()
        });
        let none = HeaderMap::new();
        let only =
            |text: &str| serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]}).to_string();
        assert!(!matches(&r, &only("abcd"), &none)); // 1 token
        assert!(matches(&r, &only("abcdefgh"), &none)); // 2
        assert!(matches(&r, &only("abcdefghijkl"), &none)); // 3
        assert!(!matches(&r, &only("abcdefghijklm"), &none)); // 4
    }

    #[test]
    fn header_tools_and_images_conditions() {
        let r = rule(RuleMatch {
            header: Some(HeaderMatch {
                name: "X-Sluice-Tier".into(),
                value: "premium".into(),
            }),
            has_tools: Some(true),
            has_images: Some(false),
            ..RuleMatch::default()
        });
        let mut premium = HeaderMap::new();
        premium.insert("x-sluice-tier", HeaderValue::from_static("premium"));
        let tools = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#;
        let image = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}],"tools":[{"type":"function"}]}"#;
        let plain = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        assert!(matches(&r, tools, &premium));
        assert!(!matches(&r, tools, &HeaderMap::new()));
        assert!(!matches(&r, image, &premium));
        assert!(!matches(&r, plain, &premium));
    }

    #[test]
    fn an_empty_when_matches_everything() {
        let r = rule(RuleMatch::default());
        assert!(matches(&r, &user("anything"), &HeaderMap::new()));
    }
}
