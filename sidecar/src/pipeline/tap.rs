//! Watches an answer on its way to the client and, when it ends, settles what the request
//! holds: the backend's slot and token charge, the route's token charge, the budget, the
//! cache recording, and the record of the request in metrics, the usage ledger and the log.

use std::{
    borrow::Cow,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use serde::Deserialize;
use sluice_crds::{MicroUsd, Outcome, Tokens};
use tokio::time::Instant;

use crate::{
    accounting::{
        Served, Usage, estimate_tokens,
        recorder::{Finished, Recorder},
    },
    budget::BudgetHold,
    cache,
    failover::Guard,
    limits::Charge,
    providers::{ChunkStream, ProviderError, StreamEvent},
};

/// What a request holds until its answer is over.
#[derive(Debug)]
pub struct Holds {
    /// The backend's slot and charge.
    pub guard: Option<Guard>,
    /// The route's and the user's charge.
    pub charge: Option<Charge>,
    /// The cache recording, on a miss.
    pub recording: Option<cache::Recorder>,
    /// What the request owes its budget.
    pub budget: Option<BudgetHold>,
    /// Who served it, for the record.
    pub served: Served,
    /// Where the request is counted.
    pub recorder: Arc<Recorder>,
    /// The user, when named.
    pub user: Option<String>,
    /// Prompt tokens as counted here, for an estimate when the provider reports none.
    pub prompt_tokens: u64,
}

/// How an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Whole.
    Complete,
    /// The upstream broke off after the first byte.
    Broke,
    /// The client went away first.
    Abandoned,
}

impl Holds {
    /// Settles everything. Without usage from the provider, tokens are estimated (prompt as
    /// counted here, completion from the text that was streamed) and the record says so.
    pub fn settle(self, usage: Option<Usage>, end: End, streamed_chars: usize, time_to_first_token: Option<Duration>) {
        let usage = usage.unwrap_or_else(|| Usage {
            input: Tokens(self.prompt_tokens),
            cached_input: Tokens(0),
            output: if streamed_chars == 0 { Tokens(0) } else { estimate_tokens(streamed_chars) },
            estimated: true,
        });
        let tokens = usage.input.0 + usage.output.0;
        if let Some(guard) = self.guard {
            guard.finish(Some(tokens), end == End::Broke);
        }
        if let Some(charge) = self.charge {
            charge.settle(Some(tokens), Instant::now());
        }
        let cost = self.served.cost(Some(usage)).unwrap_or(MicroUsd::ZERO);
        if let Some(budget) = self.budget {
            budget.settle(cost, jiff::Timestamp::now());
        }
        if let Some(recording) = self.recording
            && end == End::Complete
        {
            recording.finish();
        }
        let outcome = match (self.served.cache, end) {
            (cache::CacheStatus::Hit, _) => Outcome::CacheHit,
            (_, End::Broke) => Outcome::UpstreamError,
            _ => Outcome::Ok,
        };
        self.recorder.record(&Finished {
            endpoint: self.served.endpoint,
            route: &self.served.route,
            backend: Some(&self.served.backend),
            user: self.user.as_deref(),
            outcome,
            usage: Some(usage),
            cost,
            attempts: self.served.attempts,
            duration: self.served.started.elapsed(),
            time_to_first_token,
            streamed: time_to_first_token.is_some(),
            error: match end {
                End::Complete => None,
                End::Broke => Some("the upstream broke off mid-stream".into()),
                End::Abandoned => Some("the client went away".into()),
            },
        });
    }
}

/// Wraps `stream`, whose first event has just arrived, so that `holds` are settled exactly
/// once when it ends or is dropped.
pub fn tap(stream: ChunkStream, holds: Holds) -> ChunkStream {
    let time_to_first_token = holds.served.started.elapsed();
    Box::pin(Tap { stream, holds: Some(holds), usage: None, streamed_chars: 0, time_to_first_token })
}

struct Tap {
    stream: ChunkStream,
    holds: Option<Holds>,
    usage: Option<Usage>,
    streamed_chars: usize,
    time_to_first_token: Duration,
}

/// The text of an OpenAI chunk, borrowed where it has no escapes.
#[derive(Deserialize)]
struct ChunkText<'a> {
    #[serde(borrow, default)]
    choices: Vec<ChoiceText<'a>>,
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
}

/// Characters of completion text in one chunk.
fn text_chars(payload: &[u8]) -> usize {
    serde_json::from_slice::<ChunkText<'_>>(payload).map_or(0, |c| {
        c.choices.iter().filter_map(|ch| ch.delta.as_ref()?.content.as_ref()).map(|t| t.chars().count()).sum()
    })
}

impl Tap {
    fn end(&mut self, end: End) {
        if let Some(holds) = self.holds.take() {
            holds.settle(self.usage, end, self.streamed_chars, Some(self.time_to_first_token));
        }
    }
}

impl Stream for Tap {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.stream.as_mut().poll_next(cx));
        let this = &mut *self;
        match &item {
            Some(Ok(StreamEvent::Data(payload))) => {
                // Only needed when the provider never reports usage; cheap next to the network.
                if this.usage.is_none() {
                    this.streamed_chars += text_chars(payload);
                }
                if let Some(recording) = this.holds.as_mut().and_then(|h| h.recording.as_mut()) {
                    recording.chunk(payload);
                }
            }
            Some(Ok(StreamEvent::Usage(u))) => {
                this.usage = Some(*u);
                if let Some(recording) = this.holds.as_mut().and_then(|h| h.recording.as_mut()) {
                    recording.usage(*u);
                }
            }
            Some(Err(_)) => this.end(End::Broke),
            None => this.end(End::Complete),
        }
        Poll::Ready(item)
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.end(End::Abandoned);
    }
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
}
