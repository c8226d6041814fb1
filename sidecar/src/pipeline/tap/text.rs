//! The characters an answer's chunk generates (text, tool calls, reasoning), which a hard
//! budget pays for until the provider reports usage; read without keeping the chunk.

use std::{borrow::Cow, fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{SeqAccess, Visitor},
};

/// What an OpenAI chunk generates, borrowed where it has no escapes: text, tool call names
/// and arguments, and reasoning are all completion tokens a hard budget pays for. An event of
/// OpenAI's Responses stream (passed through from an `openai` backend) has a `type` instead.
#[derive(Deserialize)]
struct ChunkText<'a> {
    #[serde(borrow, default)]
    choices: SumOf<ChoiceText<'a>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

/// The Responses events whose `delta` is generated text: the answer, refusals, tool call
/// arguments, and reasoning (its text and its summary).
const GENERATING_EVENTS: [&str; 5] = [
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_text.delta",
    "response.reasoning_summary_text.delta",
];

/// The generated text of a Responses delta event.
#[derive(Deserialize)]
struct EventDelta<'a> {
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChoiceText<'a> {
    #[serde(borrow, default)]
    delta: Option<DeltaText<'a>>,
}

#[derive(Deserialize)]
struct DeltaText<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    /// DeepSeek's and this sidecar's translations' name for reasoning text.
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    /// The name some OpenAI-compatible servers (vLLM, OpenRouter) use.
    #[serde(borrow, default)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: SumOf<ToolCallText<'a>>,
}

#[derive(Deserialize)]
struct ToolCallText<'a> {
    #[serde(borrow, default)]
    function: Option<FunctionText<'a>>,
}

#[derive(Deserialize)]
struct FunctionText<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

fn chars(text: Option<&Cow<'_, str>>) -> usize {
    text.map_or(0, |t| t.chars().count())
}

/// The generated characters a part of a chunk holds.
trait Generated {
    fn chars(&self) -> usize;
}

impl Generated for ChoiceText<'_> {
    fn chars(&self) -> usize {
        self.delta.as_ref().map_or(0, |delta| {
            chars(delta.content.as_ref())
                + chars(delta.reasoning_content.as_ref())
                + chars(delta.reasoning.as_ref())
                + delta.tool_calls.0
        })
    }
}

impl Generated for ToolCallText<'_> {
    fn chars(&self) -> usize {
        self.function
            .as_ref()
            .map_or(0, |f| chars(f.name.as_ref()) + chars(f.arguments.as_ref()))
    }
}

/// The generated characters of a JSON array's elements, summed as they are read: one chunk
/// after another, nothing is kept (no allocation per chunk).
struct SumOf<T>(usize, PhantomData<T>);

impl<T> Default for SumOf<T> {
    fn default() -> Self {
        Self(0, PhantomData)
    }
}

impl<'de, T: Deserialize<'de> + Generated> Deserialize<'de> for SumOf<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Summing<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Generated> Visitor<'de> for Summing<T> {
            type Value = SumOf<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SumOf<T>, A::Error> {
                let mut sum = 0;
                while let Some(item) = seq.next_element::<T>()? {
                    sum += item.chars();
                }
                Ok(SumOf(sum, PhantomData))
            }
        }
        deserializer.deserialize_seq(Summing(PhantomData))
    }
}

/// Characters generated in one chunk (a chat chunk or a Responses event): completion text,
/// reasoning and tool calls.
pub(super) fn text_chars(payload: &[u8]) -> usize {
    let Ok(chunk) = serde_json::from_slice::<ChunkText<'_>>(payload) else {
        return 0;
    };
    match chunk.kind.as_deref() {
        Some(kind) if GENERATING_EVENTS.contains(&kind) => {
            serde_json::from_slice::<EventDelta<'_>>(payload).map_or(0, |e| chars(e.delta.as_ref()))
        }
        Some(_) => 0,
        None => chunk.choices.0,
    }
}

/// Whether `payload` is an event passed through in its own API (a Responses event), which names
/// its `type`, rather than a chat chunk.
pub(super) fn is_typed_event(payload: &[u8]) -> bool {
    serde_json::from_slice::<ChunkText<'_>>(payload).is_ok_and(|c| c.kind.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_completion_text_of_a_chunk() {
        assert_eq!(text_chars(br#"{"choices":[{"delta":{"content":"h\u00e9llo"}}]}"#), 5);
        assert_eq!(text_chars(br#"{"choices":[{"delta":{"role":"assistant"}}]}"#), 0);
        assert_eq!(text_chars(b"not json"), 0);
    }

    #[test]
    fn counts_tool_call_arguments_and_reasoning_like_text() {
        let call = br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"get","arguments":"{\"city\":"}}]}}]}"#;
        assert_eq!(text_chars(call), 3 + 8);
        assert_eq!(
            text_chars(br#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#),
            5
        );
        assert_eq!(text_chars(br#"{"choices":[{"delta":{"reasoning":"hmm"}}]}"#), 3);
    }

    #[test]
    fn counts_the_generated_deltas_of_a_passed_through_responses_stream() {
        for kind in GENERATING_EVENTS {
            let event = format!(r#"{{"type":"{kind}","output_index":0,"delta":"h\u00e9llo","sequence_number":3}}"#);
            assert_eq!(text_chars(event.as_bytes()), 5, "{kind}");
        }
        let created = br#"{"type":"response.created","response":{"id":"resp_1","output":[]},"sequence_number":0}"#;
        assert_eq!(text_chars(created), 0);
        let done = br#"{"type":"response.output_text.done","text":"hello","sequence_number":9}"#;
        assert_eq!(text_chars(done), 0);
        assert!(is_typed_event(created));
        assert!(!is_typed_event(br#"{"choices":[{"delta":{"content":"x"}}]}"#));
    }
}
