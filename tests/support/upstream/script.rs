//! What the upstream answers next, per model: the behaviour a model's name stands for, and what
//! a test told it beyond that (a script of behaviours, a delay, the usage, a hold).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::StatusCode;
use tokio::sync::Semaphore;

use super::Tokens;

/// What the upstream does with one request; each wire answers it in its provider's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// A normal answer.
    Ok,
    /// A tool call, or the answer from the tool's result once the request carries it.
    Tool,
    /// Reasoning, then a tool call with long arguments in many pieces (OpenAI only).
    LongTool,
    /// This status with the provider's error body (429 says to wait [`super::RETRY_AFTER_SECS`]).
    Fail(StatusCode),
    /// 429 saying to wait this many seconds.
    RateLimitedFor(u64),
    /// 200 with a body (or a first event) that is not JSON.
    Garbage,
    /// A stream (or body) that breaks off part-way.
    CutStream,
    /// A stream with a pause between events.
    SlowStream,
    /// Never answers.
    Stall,
    /// A normal answer, always whole: `stream` ignored.
    Whole,
    /// 401 whose message quotes the request's whole API key.
    QuoteKey,
    /// Anthropic: an `error` event (`overloaded_error`) after the first text delta.
    ErrorEvent,
    /// Anthropic: an `error` event before any content (streamed), or 529 (whole).
    OverloadedEarly,
    /// Gemini: an answer stopped with `finishReason: SAFETY`.
    Safety,
    /// Gemini: no candidates, the prompt blocked for safety.
    Blocked,
    /// The provider's 404 for a model it does not have.
    UnknownModel,
}

impl Behaviour {
    /// The behaviour a model's name stands for (see the table in [`super`]).
    pub fn of_model(model: &str) -> Self {
        // An OpenAI family's prefix, so that the sidecar counts the prompt with a real BPE.
        let model = model.strip_prefix("gpt-4o-").unwrap_or(model);
        let status = model
            .strip_prefix("mock-")
            .filter(|code| code.len() == 3)
            .and_then(|code| code.parse::<u16>().ok())
            .and_then(|code| StatusCode::from_u16(code).ok());
        if let Some(status) = status {
            return Behaviour::Fail(status);
        }
        match model {
            "mock-ok" => Behaviour::Ok,
            m if m.starts_with("mock-ok-") => Behaviour::Ok,
            "mock-tool" => Behaviour::Tool,
            "mock-long-tool" => Behaviour::LongTool,
            "mock-garbage" => Behaviour::Garbage,
            "mock-cut-stream" => Behaviour::CutStream,
            "mock-slow-stream" => Behaviour::SlowStream,
            "mock-stall" => Behaviour::Stall,
            "mock-whole" => Behaviour::Whole,
            "mock-quote-key" => Behaviour::QuoteKey,
            "mock-error-event" => Behaviour::ErrorEvent,
            "mock-overloaded-early" => Behaviour::OverloadedEarly,
            "mock-safety" => Behaviour::Safety,
            "mock-blocked" => Behaviour::Blocked,
            _ => Behaviour::UnknownModel,
        }
    }
}

/// What the controls say for one request, once its hold and delay were served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steer {
    /// What to answer.
    pub behaviour: Behaviour,
    /// The usage to report.
    pub tokens: Tokens,
}

/// How tests steer each model beyond what its name says.
#[derive(Debug, Default)]
pub(super) struct Controls(Mutex<Steering>);

#[derive(Debug, Default)]
struct Steering {
    /// Behaviours the next requests follow, in order.
    scripts: HashMap<String, VecDeque<Behaviour>>,
    /// Time before each answer.
    delays: HashMap<String, Duration>,
    /// Usage reported instead of the default.
    tokens: HashMap<String, Tokens>,
    /// Requests wait for a permit of this semaphore before answering.
    held: HashMap<String, Arc<Semaphore>>,
}

impl Controls {
    /// What a request for `model` gets; waits while the model is held, then its delay.
    pub(super) async fn steer(&self, model: &str) -> Steer {
        let (scripted, delay, tokens, gate) = self
            .with(|c| {
                (
                    c.scripts.get_mut(model).and_then(VecDeque::pop_front),
                    c.delays.get(model).copied(),
                    c.tokens.get(model).copied(),
                    c.held.get(model).cloned(),
                )
            })
            .unwrap_or_default();
        if let Some(gate) = gate
            && let Ok(permit) = gate.acquire().await
        {
            permit.forget();
        }
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        Steer {
            behaviour: scripted.unwrap_or_else(|| Behaviour::of_model(model)),
            tokens: tokens.unwrap_or_default(),
        }
    }

    pub(super) fn script(&self, model: &str, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.with(|c| c.scripts.entry(model.to_owned()).or_default().extend(behaviours));
    }

    pub(super) fn set_delay(&self, model: &str, delay: Duration) {
        self.with(|c| c.delays.insert(model.to_owned(), delay));
    }

    pub(super) fn set_tokens(&self, model: &str, tokens: Tokens) {
        self.with(|c| c.tokens.insert(model.to_owned(), tokens));
    }

    pub(super) fn hold(&self, model: &str) {
        self.with(|c| c.held.insert(model.to_owned(), Arc::new(Semaphore::new(0))));
    }

    pub(super) fn release(&self, model: &str, n: usize) {
        self.with(|c| {
            if let Some(gate) = c.held.get(model) {
                gate.add_permits(n);
            }
        });
    }

    fn with<T>(&self, f: impl FnOnce(&mut Steering) -> T) -> Option<T> {
        self.0.lock().ok().map(|mut c| f(&mut c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_stand_for_their_behaviours() {
        assert_eq!(Behaviour::of_model("mock-ok"), Behaviour::Ok);
        assert_eq!(Behaviour::of_model("mock-ok-premium"), Behaviour::Ok);
        assert_eq!(
            Behaviour::of_model("mock-429"),
            Behaviour::Fail(StatusCode::TOO_MANY_REQUESTS)
        );
        assert_eq!(
            Behaviour::of_model("mock-529"),
            Behaviour::Fail(StatusCode::from_u16(529).unwrap())
        );
        assert_eq!(Behaviour::of_model("mock-4000"), Behaviour::UnknownModel);
        assert_eq!(Behaviour::of_model("mock-tool"), Behaviour::Tool);
        assert_eq!(Behaviour::of_model("gpt-4.1"), Behaviour::UnknownModel);
        assert_eq!(Behaviour::of_model("gpt-4o-mock-cut-stream"), Behaviour::CutStream);
    }
}
