//! A cap on requests in flight to one backend, with a bounded priority queue in front of it.

use std::{
    cmp::Ordering,
    collections::BinaryHeap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::{sync::oneshot, time::Instant};

/// `x-sluice-priority`: 0 is served first, 9 last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    /// The most urgent.
    pub const HIGHEST: Self = Self(0);
    /// The least urgent.
    pub const LOWEST: Self = Self(9);
    /// Without the header: the middle, so clients can go both ways.
    pub const DEFAULT: Self = Self(5);

    /// A priority from 0 to 9.
    pub fn new(level: u8) -> Option<Self> {
        (level <= Self::LOWEST.0).then_some(Self(level))
    }

    /// Its number.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// Waiting requests per allowed in-flight request, for the queue bound.
const QUEUE_PER_SLOT: usize = 4;
/// The queue holds at least this many, so a cap of 1 can still queue a burst.
const MIN_QUEUE: usize = 16;

/// At most `limit` requests at once; the rest wait by priority, then arrival.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    limit: u32,
    queue_bound: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_flight: u32,
    waiting: BinaryHeap<Waiter>,
    next_seq: u64,
}

#[derive(Debug)]
struct Waiter {
    priority: Priority,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl Ord for Waiter {
    // The heap pops its greatest: the lowest priority number, then the earliest arrival.
    fn cmp(&self, other: &Self) -> Ordering {
        other.priority.cmp(&self.priority).then(other.seq.cmp(&self.seq))
    }
}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Waiter {}

/// Why no slot was had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Saturated {
    /// The queue was full on arrival.
    #[error("{in_flight} requests in flight and {queued} waiting, the most this backend queues")]
    QueueFull {
        /// Requests in flight.
        in_flight: u32,
        /// Requests waiting.
        queued: usize,
    },
    /// No slot freed up before the queue timeout.
    #[error("no slot freed up within the queue timeout")]
    Timeout,
}

/// One slot; freed (and handed to the next waiter) when dropped.
#[derive(Debug)]
pub struct Permit {
    limit: Arc<ConcurrencyLimit>,
}

/// Slots in use and waiting, for `/config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyLevel {
    /// The cap.
    pub limit: u32,
    /// Requests holding a slot.
    pub in_flight: u32,
    /// Requests waiting for one.
    pub queued: usize,
}

impl ConcurrencyLimit {
    /// A cap of `limit` requests in flight.
    pub fn new(limit: u32) -> Self {
        let limit = limit.max(1);
        Self {
            limit,
            queue_bound: (limit as usize).saturating_mul(QUEUE_PER_SLOT).max(MIN_QUEUE),
            state: Mutex::new(State::default()),
        }
    }

    /// Takes a slot, waiting in the queue until `deadline` if all are in use.
    pub async fn acquire(self: &Arc<Self>, priority: Priority, deadline: Instant) -> Result<Permit, Saturated> {
        let (seq, mut woken) = {
            let mut state = self.lock();
            if state.in_flight < self.limit {
                state.in_flight += 1;
                return Ok(self.permit());
            }
            if state.waiting.len() >= self.queue_bound {
                return Err(Saturated::QueueFull {
                    in_flight: state.in_flight,
                    queued: state.waiting.len(),
                });
            }
            let (wake, woken) = oneshot::channel();
            let seq = state.next_seq;
            state.next_seq += 1;
            state.waiting.push(Waiter { priority, seq, wake });
            (seq, woken)
        };
        match tokio::time::timeout_at(deadline, &mut woken).await {
            // A releasing request handed its slot over: `in_flight` already counts it.
            Ok(Ok(())) => Ok(self.permit()),
            // The sender is only dropped unsent when popped by `release`, which always sends.
            Ok(Err(_)) => Err(Saturated::Timeout),
            Err(_) => {
                let mut state = self.lock();
                let before = state.waiting.len();
                state.waiting.retain(|w| w.seq != seq);
                let still_queued = state.waiting.len() < before;
                drop(state);
                // Popped and sent between the timeout and the lock: the slot is ours to give back.
                if !still_queued && woken.try_recv().is_ok() {
                    self.release();
                }
                Err(Saturated::Timeout)
            }
        }
    }

    /// In use and waiting now.
    pub fn level(&self) -> ConcurrencyLevel {
        let state = self.lock();
        ConcurrencyLevel {
            limit: self.limit,
            in_flight: state.in_flight,
            queued: state.waiting.len(),
        }
    }

    fn permit(self: &Arc<Self>) -> Permit {
        Permit { limit: self.clone() }
    }

    /// Hands the slot to the most urgent live waiter, or frees it.
    fn release(&self) {
        let mut state = self.lock();
        while let Some(waiter) = state.waiting.pop() {
            if waiter.wake.send(()).is_ok() {
                return;
            }
        }
        state.in_flight = state.in_flight.saturating_sub(1);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limit.release();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn later(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test(start_paused = true)]
    async fn serves_priority_0_before_9_and_equal_priorities_in_arrival_order() {
        let limit = Arc::new(ConcurrencyLimit::new(1));
        let held = limit.acquire(Priority::DEFAULT, later(10)).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, level) in [("nine", 9), ("zero-a", 0), ("five", 5), ("zero-b", 0)] {
            let (limit, order) = (limit.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let permit = limit
                    .acquire(Priority::new(level).unwrap(), later(60_000))
                    .await
                    .unwrap();
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(1)).await;
                drop(permit);
            }));
            // Let each task queue before the next arrives.
            tokio::task::yield_now().await;
        }
        assert_eq!(limit.level().queued, 4);
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["zero-a", "zero-b", "five", "nine"]);
        assert_eq!(limit.level().in_flight, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_at_its_deadline_and_leaves_the_queue() {
        let limit = Arc::new(ConcurrencyLimit::new(1));
        let held = limit.acquire(Priority::DEFAULT, later(10)).await.unwrap();
        let started = Instant::now();
        let err = limit.acquire(Priority::HIGHEST, later(250)).await.unwrap_err();
        assert_eq!(err, Saturated::Timeout);
        assert_eq!(started.elapsed(), Duration::from_millis(250));
        assert_eq!(limit.level().queued, 0);
        drop(held);
        assert_eq!(
            limit.level().in_flight,
            0,
            "the slot is free again, not handed to the leaver"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_at_once_when_the_queue_is_full() {
        let limit = Arc::new(ConcurrencyLimit::new(1));
        let _held = limit.acquire(Priority::DEFAULT, later(10)).await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..MIN_QUEUE {
            let limit = limit.clone();
            waiters.push(tokio::spawn(async move {
                limit.acquire(Priority::DEFAULT, later(60_000)).await.map(drop)
            }));
            tokio::task::yield_now().await;
        }
        let err = limit.acquire(Priority::HIGHEST, later(60_000)).await.unwrap_err();
        assert_eq!(
            err,
            Saturated::QueueFull {
                in_flight: 1,
                queued: MIN_QUEUE
            }
        );
    }

    #[test]
    fn priorities_are_0_to_9() {
        assert_eq!(Priority::new(0), Some(Priority::HIGHEST));
        assert_eq!(Priority::new(9), Some(Priority::LOWEST));
        assert_eq!(Priority::new(10), None);
    }
}
