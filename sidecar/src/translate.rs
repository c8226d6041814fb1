//! Translations between API formats, as pure functions, one module per direction, named
//! `<from>_to_<to>`: a provider translates the OpenAI request it is given into its upstream's
//! format and the answer back; an inbound API translates its requests into OpenAI's for the
//! pipeline and the pipeline's answers back. Inside, a function is named for what it translates
//! (`request`, `response`, `usage`, `error`, `embeddings_request`, …), so a call reads
//! `openai_to_anthropic::request(…)`; a streamed answer's translation is the direction's
//! `stream` part (`anthropic_to_openai::stream::Translator`). The formats themselves are in
//! `formats`; reading the bytes off the wire (SSE framing, deadlines) is the providers' and the
//! endpoints'.

pub mod anthropic_to_openai;
pub mod bedrock_to_openai;
pub mod gemini_to_openai;
pub mod openai_to_anthropic;
pub mod openai_to_bedrock;
pub mod openai_to_gemini;
pub mod openai_to_responses;
pub mod responses_to_openai;
#[cfg(test)]
pub mod testing;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::formats::openai::{AssistantMessage, ChatRequest, Choice, ToolCall, Untranslatable};
use crate::wire::{ProviderError, StreamEvent};

/// The thinking budget, in tokens, that chat's `reasoning_effort` (and Responses'
/// `reasoning.effort`, which becomes it) asks of a provider that takes a budget: `None` when
/// the request names no effort, `Some(0)` for `none`. `minimal` and `low` get 1,024 tokens
/// (Anthropic's least), `medium` 2,048, `high` 4,096 and `xhigh` 8,192: the figures LiteLLM
/// uses, so a client moving between gateways sees the same thinking.
pub fn thinking_budget(request: &ChatRequest) -> Result<Option<u32>, Untranslatable> {
    let Some(effort) = request.rest.get("reasoning_effort").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let budget = match effort.as_str() {
        Some("none") => 0,
        Some("minimal" | "low") => 1024,
        Some("medium") => 2048,
        Some("high") => 4096,
        Some("xhigh") => 8192,
        _ => {
            return Err(Untranslatable(format!(
                "reasoning_effort {} is not one of none, minimal, low, medium, high, xhigh",
                compact(effort)
            )));
        }
    };
    Ok(Some(budget))
}

/// A JSON value as short text for an error message.
fn compact(value: &Value) -> String {
    let text = value.to_string();
    text.chars().take(40).collect()
}

/// The translation of one streamed upstream answer into the internal chunks: a small state
/// machine fed the upstream's events in order, then told of the stream's clean end.
pub trait StreamTranslator: Send + 'static {
    /// One event of the upstream's stream, in its format.
    type Event: DeserializeOwned;
    /// What an event is called in the error for one that does not parse
    /// (`"an anthropic stream event"`).
    const EVENT: &'static str;

    /// What one event becomes; an error ends the stream.
    fn on(&mut self, event: Self::Event) -> Result<Vec<StreamEvent>, ProviderError>;

    /// What the upstream's clean end becomes; an error when the answer was not whole.
    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError>;

    /// What one event becomes, from the text of its `data:`.
    fn event(&mut self, data: &str) -> Result<Vec<StreamEvent>, ProviderError> {
        let event = serde_json::from_str(data)
            .map_err(|e| ProviderError::InvalidResponse(format!("{} is not valid: {e}", Self::EVENT)))?;
        self.on(event)
    }
}

/// One choice of a translated answer: its text (`null` when the answer is only tool calls),
/// reasoning (left out when empty), tool calls and finish reason.
pub fn answer_choice(index: u32, text: String, reasoning: String, tool_calls: Vec<ToolCall>, finish: &str) -> Choice {
    Choice {
        index,
        message: AssistantMessage {
            role: "assistant".into(),
            content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
            reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
            tool_calls,
            rest: serde_json::Map::new(),
        },
        logprobs: None,
        finish_reason: Some(finish.to_owned()),
        rest: serde_json::Map::new(),
    }
}
