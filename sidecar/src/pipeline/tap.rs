//! Watches an answer on its way to the client and, when it ends, settles what the request
//! holds: the backend's slot and token charge, the route's token charge, the budget, the
//! cache recording, and the record of the request in metrics, the usage ledger and the log.
//!
//! Until the provider reports usage, what has streamed (text, tool call arguments, reasoning)
//! is charged against a hard budget: past the reservation more is held; when this pod's slice
//! is short but the budget has money, the next chunk waits (up to the pipeline's allowance
//! wait) for the top-up asked for; when the budget has no money the answer is ended.

use std::{
    borrow::Cow,
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures::Stream;
use serde::Deserialize;
use sluice_crds::{MicroUsd, Outcome, Tokens};
use tokio::time::Instant;

use self::text::{is_typed_event, text_chars};
use super::Served;
use crate::{
    accounting::recorder::{Finished, Recorder},
    budget::{Account, BudgetHold},
    cache,
    failover::Guard,
    limits::Charge,
    telemetry::{self, StreamedAnswer},
    tokenizer::Prompt,
    wire::{CacheStatus, ChunkStream, ProviderError, StreamEvent, Usage, estimate_tokens},
};

mod text;

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
    /// Prompt tokens as counted here (or the prompt kept to count them), for an estimate when
    /// the provider reports none.
    pub prompt: Prompt,
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
    /// The sidecar ended it: the hard budget had no money for more.
    BudgetSpent,
}

/// Completion tokens a stream past its reservation asks its budget for at a time.
const EXTEND_BY_TOKENS: u64 = 1024;

impl Holds {
    /// Settles everything. Without usage from the provider, tokens are estimated (prompt as
    /// counted here, now if not before; completion from the text that was streamed) and the
    /// record says so.
    pub fn settle(self, usage: Option<Usage>, end: End, streamed_chars: usize, time_to_first_token: Option<Duration>) {
        let usage = usage.unwrap_or_else(|| Usage {
            input: Tokens(self.prompt.tokens()),
            cached_input: Tokens(0),
            cache_write_input: Tokens(0),
            output: if streamed_chars == 0 {
                Tokens(0)
            } else {
                estimate_tokens(streamed_chars)
            },
            estimated: true,
        });
        let tokens = (usage.input + usage.output).0;
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
            (CacheStatus::Hit, _) => Outcome::CacheHit,
            (_, End::Broke) => Outcome::UpstreamError,
            (_, End::BudgetSpent) => Outcome::BudgetRefused,
            _ => Outcome::Ok,
        };
        self.recorder.record(&Finished {
            endpoint: self.served.endpoint,
            route: &self.served.route.key,
            backend: Some(&self.served.backend),
            user: self.user.as_deref(),
            outcome,
            usage: Some(usage),
            cost,
            attempts: self.served.attempts,
            duration: self.served.started.elapsed(),
            time_to_first_token,
            streamed: time_to_first_token.is_some(),
            cache: self.served.cache.as_str(),
            error: match end {
                End::Complete => None,
                End::Broke => Some("the upstream broke off mid-stream".into()),
                End::Abandoned => Some("the client went away".into()),
                End::BudgetSpent => Some("the budget ran out mid-stream".into()),
            },
            trace: self.served.trace.as_ref(),
        });
    }
}

/// Wraps `stream`, whose first event has just arrived, so that `holds` are settled exactly
/// once when it ends or is dropped.
pub fn tap(stream: ChunkStream, holds: Holds) -> ChunkStream {
    let time_to_first_token = holds.served.started.elapsed();
    let answer = holds.served.trace.as_ref().and_then(telemetry::streamed);
    Box::pin(Tap {
        stream,
        answer,
        holds: Some(holds),
        usage: None,
        streamed_chars: 0,
        time_to_first_token,
        ending: VecDeque::new(),
        waiting: None,
        wait_until: None,
    })
}

struct Tap {
    stream: ChunkStream,
    holds: Option<Holds>,
    usage: Option<Usage>,
    streamed_chars: usize,
    time_to_first_token: Duration,
    /// What the answer says of itself, gathered only while its request is traced.
    answer: Option<StreamedAnswer>,
    /// What is left to say after the sidecar ended the answer itself.
    ending: VecDeque<Result<StreamEvent, ProviderError>>,
    /// A chunk held back while this pod's slice of the budget is topped up, and the wait.
    waiting: Option<(Bytes, TopUpWait)>,
    /// Until when the answer may wait for a top-up (set by its first wait).
    wait_until: Option<Instant>,
}

/// A wait for this pod's slice to be topped up, bounded in time.
type TopUpWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the budget says about the answer so far.
enum Verdict {
    /// It fits (more money is held if it needed some).
    Fits,
    /// This pod's slice is short but the budget has money and more was asked for: wait for
    /// a change of the account after this generation.
    Wait(Arc<Account>, u64),
    /// A hard budget has no money for more: end the answer, saying this.
    Cut(String),
}

/// The identity of a chunk, to end the answer in its name.
#[derive(Deserialize)]
struct ChunkId<'a> {
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(default)]
    created: u64,
    #[serde(borrow, default)]
    model: Cow<'a, str>,
}

/// A final chunk saying the answer stopped at a length limit, like `max_tokens` would.
fn length_chunk(like: &[u8]) -> Bytes {
    let id: ChunkId<'_> = serde_json::from_slice(like).unwrap_or(ChunkId {
        id: "".into(),
        created: 0,
        model: "".into(),
    });
    let chunk = serde_json::json!({
        "id": id.id, "object": "chat.completion.chunk", "created": id.created, "model": id.model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
    });
    Bytes::from(chunk.to_string())
}

impl Tap {
    /// Whether the answer so far still fits the budget, holding more money when it needs to.
    fn over_budget(&mut self) -> Verdict {
        let Some(holds) = self.holds.as_mut() else {
            return Verdict::Fits;
        };
        let (Some(reserved), Some(pricing)) = (
            holds.budget.as_ref().and_then(BudgetHold::reserved),
            holds.served.backend.pricing,
        ) else {
            return Verdict::Fits;
        };
        // A reserved budget counted the prompt at admission: this reads that count.
        let so_far = Usage {
            input: Tokens(holds.prompt.tokens()),
            cached_input: Tokens(0),
            cache_write_input: Tokens(0),
            output: estimate_tokens(self.streamed_chars),
            estimated: true,
        }
        .cost(&pricing);
        if so_far <= reserved {
            return Verdict::Fits;
        }
        let step = Usage {
            output: Tokens(EXTEND_BY_TOKENS),
            ..Usage::default()
        }
        .cost(&pricing);
        let more = so_far.saturating_sub(reserved).saturating_add(step);
        let Some(budget) = holds.budget.as_mut() else {
            return Verdict::Fits;
        };
        let account = budget.account().clone();
        // Taken before the try, so a top-up that lands in between still ends the wait.
        let generation = account.generation();
        if budget.extend(more, jiff::Timestamp::now()) {
            self.wait_until = None;
            return Verdict::Fits;
        }
        let in_time = self.wait_until.is_none_or(|until| Instant::now() < until);
        if in_time && account.may_wait() {
            return Verdict::Wait(account, generation);
        }
        Verdict::Cut(format!(
            "budget {} has no money left for this answer here: it was ended at the limit",
            budget.budget()
        ))
    }

    /// Passes on `payload` if the budget has money for it, else waits for a top-up or ends
    /// the answer.
    fn pass(&mut self, payload: Bytes, cx: &mut Context<'_>) -> Poll<Option<Result<StreamEvent, ProviderError>>> {
        loop {
            match self.over_budget() {
                Verdict::Fits => {
                    if let Some(recording) = self.holds.as_mut().and_then(|h| h.recording.as_mut()) {
                        recording.chunk(&payload);
                    }
                    return Poll::Ready(Some(Ok(StreamEvent::Data(payload))));
                }
                Verdict::Wait(account, generation) => {
                    let until = *self
                        .wait_until
                        .get_or_insert_with(|| Instant::now() + super::ALLOWANCE_WAIT);
                    let mut wait: TopUpWait = Box::pin(async move {
                        let _ = tokio::time::timeout_at(until, account.changed_since(generation)).await;
                    });
                    if wait.as_mut().poll(cx).is_pending() {
                        self.waiting = Some((payload, wait));
                        return Poll::Pending;
                    }
                }
                Verdict::Cut(message) => {
                    // Withhold this chunk, close the upstream, end the answer like a length limit.
                    // A Responses stream (passed through) has no chunk for that: its body tells
                    // the cut with the events that end a failed Response.
                    self.stream = Box::pin(futures::stream::empty());
                    self.end(End::BudgetSpent);
                    let spent = Err(ProviderError::BudgetSpent(message));
                    if is_typed_event(&payload) {
                        return Poll::Ready(Some(spent));
                    }
                    self.ending.push_back(spent);
                    return Poll::Ready(Some(Ok(StreamEvent::Data(length_chunk(&payload)))));
                }
            }
        }
    }

    fn end(&mut self, end: End) {
        if let Some(holds) = self.holds.take() {
            if let (Some(answer), Some(cx)) = (self.answer.take(), holds.served.trace.as_ref()) {
                telemetry::streamed_answer(cx, answer);
            }
            holds.settle(self.usage, end, self.streamed_chars, Some(self.time_to_first_token));
        }
    }
}

impl Stream for Tap {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(item) = self.ending.pop_front() {
            return Poll::Ready(Some(item));
        }
        let this = &mut *self;
        if let Some((_, wait)) = this.waiting.as_mut() {
            std::task::ready!(wait.as_mut().poll(cx));
            if let Some((payload, _)) = this.waiting.take() {
                return this.pass(payload, cx);
            }
        }
        let item = std::task::ready!(this.stream.as_mut().poll_next(cx));
        match &item {
            Some(Ok(StreamEvent::Data(payload))) => {
                if let Some(answer) = this.answer.as_mut() {
                    answer.observe(payload);
                }
                // Providers report usage at the end; until then what streamed so far is what a
                // hard budget is checked against.
                if this.usage.is_none() {
                    this.streamed_chars += text_chars(payload);
                    return this.pass(payload.clone(), cx);
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
