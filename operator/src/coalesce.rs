//! Folds requests for the same job into the run already under way: a request that arrives
//! while a run for its key is going sends that run round once more, instead of running again
//! itself. A storm of N requests then costs a few rounds, not N (a recompute plans every
//! sidecar of a namespace, so N sidecars connecting at once would otherwise cost N² plans).

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

/// Runs under way, by key; `true` when another round was asked for meanwhile.
#[derive(Debug, Default)]
pub struct Coalescer {
    busy: Mutex<HashMap<String, bool>>,
}

impl Coalescer {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, bool>> {
        // The map only holds flags: a panic elsewhere leaves it usable.
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `job` for `key` now, and again for as long as requests arrived during the last
    /// round; or, when a run for `key` is under way elsewhere, asks it for one more round and
    /// returns `false` at once. The job reads the state afresh each round, so what the
    /// request was for is done by the end of that run.
    pub fn run(&self, key: &str, mut job: impl FnMut()) -> bool {
        {
            let mut busy = self.lock();
            if let Some(again) = busy.get_mut(key) {
                *again = true;
                return false;
            }
            busy.insert(key.to_owned(), false);
        }
        loop {
            job();
            let mut busy = self.lock();
            if busy.get(key) == Some(&true) {
                busy.insert(key.to_owned(), false);
                continue;
            }
            busy.remove(key);
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier, atomic::AtomicUsize, atomic::Ordering};

    use super::*;

    #[test]
    fn a_request_alone_runs_its_job_once() {
        let coalescer = Coalescer::default();
        let mut runs = 0;
        assert!(coalescer.run("team-a", || runs += 1));
        assert!(coalescer.run("team-a", || runs += 1));
        assert_eq!(runs, 2);
    }

    #[test]
    fn requests_during_a_run_fold_into_one_more_round_of_it() {
        let coalescer = Arc::new(Coalescer::default());
        let rounds = Arc::new(AtomicUsize::new(0));
        let inside = Arc::new(Barrier::new(2));
        let asked = Arc::new(Barrier::new(2));
        let runner = {
            let (coalescer, rounds, inside, asked) = (coalescer.clone(), rounds.clone(), inside.clone(), asked.clone());
            std::thread::spawn(move || {
                coalescer.run("team-a", || {
                    if rounds.fetch_add(1, Ordering::SeqCst) == 0 {
                        inside.wait();
                        asked.wait();
                    }
                })
            })
        };
        inside.wait();
        // Three requests while the first round runs: folded, none runs here.
        for _ in 0..3 {
            assert!(!coalescer.run("team-a", || panic!("folded into the running job")));
        }
        // Another key is not held up.
        assert!(coalescer.run("team-b", || {}));
        asked.wait();
        assert!(runner.join().unwrap());
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            2,
            "one more round for the three requests"
        );
    }
}
