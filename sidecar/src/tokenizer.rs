//! Counting prompt tokens: OpenAI's own BPE for OpenAI model families, otherwise an estimate.
//!
//! A route counts with the tokenizer of its primary backend (the first by priority): its rules'
//! token bounds, least-cost estimates and token limits all use that count. `/config` shows
//! which one each route uses. The BPE tables load once, on the first count that needs them: a
//! sidecar whose counts are all estimates, or that never needs a count, never loads them.

mod bpe;

use std::sync::{
    LazyLock,
    atomic::{AtomicBool, Ordering},
};

use sluice_crds::Provider;
use tiktoken_rs::tokenizer::Tokenizer as Family;

use crate::formats::openai::{ChatMessage, ChatRequest};
use bpe::{Encoding, LoadError};

/// Texts longer than this are estimated even under a BPE: exact counts of megabyte prompts
/// would cost more CPU than the routing decision is worth.
const MAX_EXACT_CHARS: usize = 256 * 1024;
/// Tokens every chat message adds around its content (OpenAI's published formula).
const PER_MESSAGE: u64 = 3;
/// Tokens that prime the assistant's reply.
const REPLY_PRIMING: u64 = 3;

/// How prompt tokens are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    /// `o200k_base`: GPT-4o, GPT-4.1, GPT-5, o-series.
    O200kBase,
    /// `cl100k_base`: GPT-4, GPT-3.5, text-embedding-3.
    Cl100kBase,
    /// About four characters per token, for families without a public tokenizer.
    Estimate,
}

impl Tokenizer {
    /// The tokenizer for a backend's upstream model.
    pub fn for_backend(provider: Provider, model: &str) -> Self {
        if !matches!(
            provider,
            Provider::Openai | Provider::OpenaiCompatible | Provider::AzureOpenai
        ) {
            return Self::Estimate;
        }
        // Aggregators name OpenAI's models `openai/gpt-4o`.
        let model = model.strip_prefix("openai/").unwrap_or(model);
        match tiktoken_rs::tokenizer::get_tokenizer(model) {
            Some(Family::O200kBase) => Self::O200kBase,
            Some(Family::Cl100kBase) => Self::Cl100kBase,
            _ => Self::Estimate,
        }
    }

    /// Its name, as `/config` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::O200kBase => "o200k_base",
            Self::Cl100kBase => "cl100k_base",
            Self::Estimate => "estimate-4-chars-per-token",
        }
    }

    /// Tokens of one text.
    pub fn count(self, text: &str) -> u64 {
        let bpe = match self {
            _ if text.len() > MAX_EXACT_CHARS => return estimate(text),
            Self::O200kBase => o200k(),
            Self::Cl100kBase => cl100k(),
            Self::Estimate => return estimate(text),
        };
        // A table that failed to load (a build defect, logged once) or a text the pattern
        // gives up on (its backtracking limit) is estimated rather than failing the request.
        let Some(bpe) = bpe else { return estimate(text) };
        memo::count(self, text, || {
            bpe.count(text).unwrap_or_else(|error| {
                tracing::warn!(tokenizer = self.name(), %error, "counting estimated a text the BPE could not split");
                estimate(text)
            })
        })
    }

    /// Prompt tokens of a chat request: each message's text plus its framing.
    pub fn count_chat(self, request: &ChatRequest) -> u64 {
        let texts: u64 = request.messages.iter().flat_map(texts).map(|t| self.count(t)).sum();
        self.chat_total(request.messages.len(), texts)
    }

    /// Prompt tokens of a plain list of texts (embeddings inputs, completion prompts).
    pub fn count_texts<'t>(self, texts: impl IntoIterator<Item = &'t str>) -> u64 {
        texts.into_iter().map(|t| self.count(t)).sum::<u64>().max(1)
    }

    /// A chat prompt of `messages` messages whose texts count `texts` tokens, with its framing.
    fn chat_total(self, messages: usize, texts: u64) -> u64 {
        let (framing, priming) = match self {
            Self::Estimate => (0, 0),
            Self::O200kBase | Self::Cl100kBase => (PER_MESSAGE, REPLY_PRIMING),
        };
        (framing.saturating_mul(messages as u64) + texts + priming).max(1)
    }

    /// The prompt of a chat request, to count later if at all: an estimate costs a pass over
    /// the text and is taken now; a BPE count keeps a copy of the texts instead, so that an
    /// answer whose provider reports usage never pays the count (nor loads the tables).
    pub fn keep_chat(self, request: &ChatRequest) -> Prompt {
        if self == Self::Estimate {
            return Prompt::counted(self.count_chat(request));
        }
        let texts = request.messages.iter().flat_map(texts).map(Box::from).collect();
        Prompt(Kept::Texts {
            tokenizer: self,
            texts,
            messages: Some(request.messages.len()),
        })
    }

    /// A plain list of texts, to count later if at all (see [`Tokenizer::keep_chat`]).
    pub fn keep_texts<'t>(self, texts: impl IntoIterator<Item = &'t str>) -> Prompt {
        if self == Self::Estimate {
            return Prompt::counted(self.count_texts(texts));
        }
        Prompt(Kept::Texts {
            tokenizer: self,
            texts: texts.into_iter().map(Box::from).collect(),
            messages: None,
        })
    }
}

/// Prompt tokens of a request whose answer is still open: counted, or the texts kept to count
/// when the figure is needed (the provider reported no usage).
#[derive(Debug, Clone)]
pub struct Prompt(Kept);

#[derive(Debug, Clone)]
enum Kept {
    Counted(u64),
    Texts {
        tokenizer: Tokenizer,
        texts: Box<[Box<str>]>,
        /// Chat messages, each framed; `None` for a plain list of texts.
        messages: Option<usize>,
    },
}

impl Prompt {
    /// A prompt counted already.
    pub fn counted(tokens: u64) -> Self {
        Self(Kept::Counted(tokens))
    }

    /// Its tokens: the same figure [`Tokenizer::count_chat`] or [`Tokenizer::count_texts`]
    /// gives for the request it was kept from.
    pub fn tokens(&self) -> u64 {
        match &self.0 {
            Kept::Counted(n) => *n,
            Kept::Texts {
                tokenizer,
                texts,
                messages,
            } => {
                let texts = texts.iter().map(|t| &**t);
                match messages {
                    Some(messages) => tokenizer.chat_total(*messages, texts.map(|t| tokenizer.count(t)).sum()),
                    None => tokenizer.count_texts(texts),
                }
            }
        }
    }
}

/// The text parts of a message: a string content, or the `text` of its parts.
fn texts(message: &ChatMessage) -> impl Iterator<Item = &str> {
    let (one, parts) = match &message.content {
        serde_json::Value::String(s) => (Some(s.as_str()), None),
        serde_json::Value::Array(parts) => (None, Some(parts)),
        _ => (None, None),
    };
    one.into_iter().chain(
        parts
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(serde_json::Value::as_str)),
    )
}

fn estimate(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Counts of texts counted lately. A conversation sends its system prompt and its whole history
/// again with every turn, and a BPE count costs about a microsecond per ten tokens (the
/// pre-tokenizing regex dominates), against a hash and a compare for a text seen before.
mod memo {
    use std::{
        hash::{DefaultHasher, Hash as _, Hasher as _},
        sync::{LazyLock, Mutex},
    };

    use super::Tokenizer;

    /// Slots of the direct-mapped table.
    const SLOTS: usize = 512;
    /// Longer texts are counted every time: the table holds at most `SLOTS` × this (2 MiB).
    pub const MAX_BYTES: usize = 4096;

    type Slot = Mutex<Option<(Tokenizer, Box<str>, u64)>>;

    static TABLE: LazyLock<Vec<Slot>> = LazyLock::new(|| (0..SLOTS).map(|_| Mutex::new(None)).collect());

    /// The count of `text` under `tokenizer`: remembered, or `count()` remembered.
    pub fn count(tokenizer: Tokenizer, text: &str, count: impl FnOnce() -> u64) -> u64 {
        if text.len() > MAX_BYTES {
            return count();
        }
        let mut hasher = DefaultHasher::new();
        (tokenizer as u8, text).hash(&mut hasher);
        let Some(slot) = TABLE.get(hasher.finish() as usize % SLOTS) else {
            return count();
        };
        if let Ok(entry) = slot.lock()
            && let Some((t, seen, n)) = entry.as_ref()
            && *t == tokenizer
            && **seen == *text
        {
            return *n;
        }
        // Counted outside the lock: another thread may count the same text meanwhile, which
        // only costs the time.
        let n = count();
        if let Ok(mut entry) = slot.lock() {
            *entry = Some((tokenizer, text.into(), n));
        }
        n
    }
}

/// Whether each encoding's tables were asked for (o200k_base, cl100k_base).
static LOADED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

/// How many BPE encodings this process has loaded (0, 1 or 2): a few MiB each (see `bpe`), so
/// a sidecar that never needs an exact count should say 0.
pub fn tables_loaded() -> usize {
    LOADED.iter().filter(|l| l.load(Ordering::Relaxed)).count()
}

static O200K: LazyLock<Option<Encoding>> = LazyLock::new(|| loaded(bpe::o200k_base()));

static CL100K: LazyLock<Option<Encoding>> = LazyLock::new(|| loaded(bpe::cl100k_base()));

/// The encoding, or `None` after logging why it did not load.
fn loaded(encoding: Result<Encoding, LoadError>) -> Option<Encoding> {
    encoding
        .inspect_err(|error| tracing::error!(%error, "a BPE did not load: its counts are estimated"))
        .ok()
}

fn o200k() -> Option<&'static Encoding> {
    LOADED[0].store(true, Ordering::Relaxed);
    O200K.as_ref()
}

fn cl100k() -> Option<&'static Encoding> {
    LOADED[1].store(true, Ordering::Relaxed);
    CL100K.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_chat;

    #[test]
    fn picks_the_bpe_by_openai_model_family_and_estimates_the_rest() {
        for (provider, model, tokenizer) in [
            (Provider::Openai, "gpt-4o-mini", Tokenizer::O200kBase),
            (Provider::Openai, "gpt-4.1", Tokenizer::O200kBase),
            (Provider::OpenaiCompatible, "openai/gpt-4-turbo", Tokenizer::Cl100kBase),
            (Provider::Openai, "gpt-3.5-turbo", Tokenizer::Cl100kBase),
            (Provider::OpenaiCompatible, "deepseek-chat", Tokenizer::Estimate),
            (Provider::Simulator, "gpt-4o", Tokenizer::Estimate),
            (Provider::AzureOpenai, "gpt-4o", Tokenizer::O200kBase),
        ] {
            assert_eq!(
                Tokenizer::for_backend(provider, model),
                tokenizer,
                "{provider:?} {model}"
            );
        }
    }

    #[test]
    fn counts_with_the_real_bpe() {
        // "Hello world" is two tokens in both encodings.
        assert_eq!(Tokenizer::O200kBase.count("Hello world"), 2);
        assert_eq!(Tokenizer::Cl100kBase.count("Hello world"), 2);
        assert_eq!(Tokenizer::Estimate.count("Hello world"), 3);
    }

    #[test]
    fn a_remembered_count_is_the_count() {
        let texts: Vec<String> = (0..2000)
            .map(|i| format!("text number {i} of many, {}", "x".repeat(i % 7)))
            .collect();
        for tokenizer in [Tokenizer::O200kBase, Tokenizer::Cl100kBase] {
            // tiktoken's own encoder is the reference.
            let bpe = match tokenizer {
                Tokenizer::O200kBase => tiktoken_rs::o200k_base_singleton(),
                _ => tiktoken_rs::cl100k_base_singleton(),
            };
            // Twice over more texts than slots: hits, misses and evictions, the two encodings
            // sharing the table.
            for _ in 0..2 {
                for text in &texts {
                    assert_eq!(tokenizer.count(text), bpe.encode_ordinary(text).len() as u64, "{text}");
                }
            }
        }
        let long = "word ".repeat(memo::MAX_BYTES);
        assert_eq!(
            Tokenizer::O200kBase.count(&long),
            tiktoken_rs::o200k_base_singleton().encode_ordinary(&long).len() as u64
        );
    }

    #[test]
    fn counts_chat_messages_with_their_framing() {
        let request = parse_chat(
            br#"{"model":"m","messages":[{"role":"system","content":"Hello world"},
                {"role":"user","content":[{"type":"text","text":"Hello world"},{"type":"image_url","image_url":{"url":"x"}}]}]}"#,
        )
        .unwrap();
        // Two messages of 2 tokens, 3 framing tokens each, 3 to prime the reply.
        assert_eq!(Tokenizer::O200kBase.count_chat(&request), 2 * (2 + 3) + 3);
        assert_eq!(Tokenizer::Estimate.count_chat(&request), 6);
    }

    #[test]
    fn a_kept_prompt_counts_what_counting_at_once_would() {
        let request = parse_chat(
            br#"{"model":"m","messages":[{"role":"system","content":"You are terse."},
                {"role":"user","content":[{"type":"text","text":"Hello world"},{"type":"text","text":"again"}]},
                {"role":"assistant","content":null},{"role":"user","content":"Bye"}]}"#,
        )
        .unwrap();
        let empty = parse_chat(br#"{"model":"m","messages":[{"role":"assistant","content":null}]}"#).unwrap();
        let texts = ["one text", "and another, longer one"];
        for tokenizer in [Tokenizer::O200kBase, Tokenizer::Cl100kBase, Tokenizer::Estimate] {
            assert_eq!(tokenizer.keep_chat(&request).tokens(), tokenizer.count_chat(&request));
            assert_eq!(tokenizer.keep_chat(&empty).tokens(), tokenizer.count_chat(&empty));
            assert_eq!(tokenizer.keep_texts(texts).tokens(), tokenizer.count_texts(texts));
            assert_eq!(tokenizer.keep_texts([]).tokens(), 1);
        }
    }
}
