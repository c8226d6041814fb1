//! The attempt loop: which backend gets the request next, under which limits and time bounds.
//!
//! Candidates are tried in the plan's order, round and round until `retry.attempts` attempts
//! were made or `timeouts.total` (of the first candidate) is over. A backend whose circuit is
//! open, that is cooling down after a 429, whose own rate is spent or whose concurrency queue
//! is full is skipped without an attempt. Going back to a backend already tried waits a full-
//! jitter backoff first. A failure the policy does not retry (the client's 4xx, above all)
//! ends the loop at once. When nothing can be tried now but something will be soon (a cool-
//! down or a bucket), the loop waits for it if the policy retries 429s and the deadline allows;
//! otherwise it answers 429 with that wait as `Retry-After`.
//!
//! A stream's first event is awaited here, before anything reaches the client: a failure up
//! to that point is still an error status and may move to another backend; after it, nothing
//! is retried.

pub mod backoff;
mod choose;
pub mod classify;
mod guard;

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use sluice_crds::RetryOn;
use tokio::time::Instant;

use choose::{Blocked, Chosen, choose};
pub use classify::Class;
pub use guard::Guard;

use crate::{
    circuit::Verdict,
    error::ApiError,
    limits::Priority,
    providers::{ChunkStream, Complete, ProviderError, Reply, TimeoutPhase},
    route::{BackendRuntime, Route},
};

/// How long a request that found every candidate's concurrency queue full is told to wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// One request's attempts: where and under which bounds.
#[derive(Debug, Clone, Copy)]
pub struct Attempts<'a> {
    /// The route.
    pub route: &'a Route,
    /// Backends in the order to try them.
    pub candidates: &'a [Arc<BackendRuntime>],
    /// When the whole request must be over.
    pub deadline: Instant,
    /// Its place in concurrency queues.
    pub priority: Priority,
    /// Tokens to charge backend token buckets up front.
    pub tokens: u64,
}

/// An answer and who gave it.
#[derive(Debug)]
pub struct Served<T> {
    /// The answer; a stream has already yielded its first event.
    pub reply: T,
    /// The backend that answered.
    pub backend: Arc<BackendRuntime>,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// Holds the backend's slot until the answer is delivered; settle it then.
    pub guard: Guard,
}

/// Why no answer came, and who failed last.
#[derive(Debug)]
pub struct Failed {
    /// What the client is told.
    pub error: ApiError,
    /// The backend tried last, if any.
    pub backend: Option<Arc<BackendRuntime>>,
    /// Attempts made.
    pub attempts: u32,
}

/// An answer that can be held back until its first byte is known good.
pub trait Answer: Sized + Send {
    /// Waits until the answer has produced something the client may see.
    fn first_byte(self) -> impl Future<Output = Result<Self, ProviderError>> + Send;
}

impl Answer for Complete {
    async fn first_byte(self) -> Result<Self, ProviderError> {
        Ok(self)
    }
}

impl Answer for Reply {
    async fn first_byte(self) -> Result<Self, ProviderError> {
        match self {
            Self::Stream(stream) => peek(stream).await.map(Self::Stream),
            complete @ Self::Complete(_) => Ok(complete),
        }
    }
}

/// The loop's memory across passes.
struct Progress {
    attempts: u32,
    tried: Vec<bool>,
    cursor: usize,
    retries: u32,
    last: Option<(ProviderError, Arc<BackendRuntime>)>,
    last_failed_at: Option<Instant>,
}

impl Progress {
    fn fail(self, error: ApiError) -> Failed {
        Failed {
            error,
            backend: self.last.map(|(_, b)| b),
            attempts: self.attempts,
        }
    }

    /// The last upstream failure, or `otherwise` when nothing was attempted.
    fn last_or(self, otherwise: ApiError) -> Failed {
        match self.last {
            Some((error, backend)) => Failed {
                error: ApiError::Upstream(error),
                backend: Some(backend),
                attempts: self.attempts,
            },
            None => self.fail(otherwise),
        }
    }
}

/// Runs the attempts until one answers or none may be made.
pub async fn serve<T, F, Fut>(plan: Attempts<'_>, call: F) -> Result<Served<T>, Failed>
where
    T: Answer,
    F: Fn(Arc<BackendRuntime>, Instant) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>> + Send,
{
    let route = plan.route;
    let max_attempts = route.retry.attempts.max(1);
    let may_wait = route.retry.retry_on.contains(&RetryOn::TooManyRequests);
    let mut progress = Progress {
        attempts: 0,
        tried: vec![false; plan.candidates.len()],
        cursor: 0,
        retries: 0,
        last: None,
        last_failed_at: None,
    };
    if plan.candidates.is_empty() {
        return Err(progress.fail(ApiError::NoBackendAvailable {
            reason: "the route has no backend for this request".into(),
        }));
    }
    loop {
        if progress.attempts >= max_attempts {
            return Err(progress.last_or(deadline_error()));
        }
        if Instant::now() >= plan.deadline {
            return Err(progress.last_or(deadline_error()));
        }
        let (chosen, blocked) = choose(&plan, &mut progress).await;
        let Some(slot) = chosen else {
            match blocked.soonest {
                Some((until, _)) if may_wait && until < plan.deadline => {
                    tokio::time::sleep_until(until).await;
                    continue;
                }
                _ => return Err(nothing_to_try(progress, blocked)),
            }
        };
        let Chosen { index, guard, ticket } = slot;
        let backend = plan.candidates[index].clone();
        progress.attempts += 1;
        progress.tried[index] = true;
        progress.cursor = (index + 1) % plan.candidates.len();

        let started = Instant::now();
        let first_byte = (started + backend.timeouts.first_byte.get()).min(plan.deadline);
        let phase = if first_byte < plan.deadline {
            TimeoutPhase::FirstByte
        } else {
            TimeoutPhase::Total
        };
        let target = crate::telemetry::attempt::Target {
            name: backend.name.as_str(),
            provider: backend.provider,
            model: backend.model.as_str(),
        };
        let traced = crate::telemetry::attempt::start(target, progress.attempts);
        let attempt = async { call(backend.clone(), plan.deadline).await?.first_byte().await };
        let attempt = crate::telemetry::attempt::scope(traced.clone(), attempt);
        let result = tokio::time::timeout_at(first_byte, attempt)
            .await
            .unwrap_or(Err(ProviderError::Timeout(phase)));
        let now = Instant::now();
        match result {
            Ok(reply) => {
                crate::telemetry::attempt::answered(traced);
                backend.state.latency.observe(now - started, now);
                backend.state.health.answered(now - started);
                ticket.record(Verdict::Success, &route.circuit_breaker, now);
                return Ok(Served {
                    reply,
                    backend,
                    attempts: progress.attempts,
                    guard,
                });
            }
            Err(error) => {
                guard.release(now);
                let class = Class::of(&error);
                if class.verdict() == Verdict::Failure {
                    backend.state.health.failed();
                }
                ticket.record(class.verdict(), &route.circuit_breaker, now);
                if let ProviderError::Status {
                    retry_after: Some(after),
                    ..
                } = &error
                    && class == Class::RateLimited
                {
                    backend.state.circuit.cool_down(now, *after);
                }
                tracing::debug!(route = %route.key, backend = %backend.name, attempt = progress.attempts,
                    error = %error, "attempt failed");
                let retryable = class.retryable(&route.retry.retry_on);
                crate::telemetry::attempt::failed(traced, &error, retryable);
                progress.last = Some((error, backend));
                progress.last_failed_at = Some(now);
                if !retryable {
                    return Err(progress.last_or(deadline_error()));
                }
            }
        }
    }
}

/// The answer when a pass found nothing to try and waiting is not allowed.
fn nothing_to_try(progress: Progress, blocked: Blocked) -> Failed {
    if progress.last.is_some() {
        return progress.last_or(deadline_error());
    }
    let now = Instant::now();
    if let Some((until, why)) = blocked.soonest {
        return progress.fail(ApiError::RateLimited {
            limit: why,
            retry_after: until.saturating_duration_since(now),
        });
    }
    if let Some(why) = blocked.busy {
        return progress.fail(ApiError::RateLimited {
            limit: why,
            retry_after: BUSY_RETRY_AFTER,
        });
    }
    progress.fail(ApiError::NoBackendAvailable {
        reason: format!(
            "the circuit of every candidate backend is open ({})",
            blocked.open.join(", ")
        ),
    })
}

fn deadline_error() -> ApiError {
    ApiError::Upstream(ProviderError::Timeout(TimeoutPhase::Total))
}

/// Waits for a stream's first event and puts it back in front.
async fn peek(mut stream: ChunkStream) -> Result<ChunkStream, ProviderError> {
    match stream.next().await {
        Some(Ok(first)) => Ok(Box::pin(futures::stream::once(async { Ok(first) }).chain(stream))),
        Some(Err(e)) => Err(e),
        None => Err(ProviderError::Interrupted("the upstream stream was empty".into())),
    }
}

#[cfg(test)]
mod tests;
