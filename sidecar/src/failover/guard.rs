//! What an attempt holds until its answer is delivered: the concurrency slot, the in-flight
//! count, and the backend's token charge to correct with the real usage.

use std::sync::Arc;

use sluice_crds::CircuitBreaker;
use tokio::time::Instant;

use crate::{
    circuit::Verdict,
    limits::{Charge, Permit},
    route::{BackendRuntime, state::InFlight},
};

/// Released when the answer has been delivered (or dropped with the request).
#[derive(Debug)]
pub struct Guard {
    backend: Arc<BackendRuntime>,
    circuit: CircuitBreaker,
    charge: Option<Charge>,
    _permit: Option<Permit>,
    _in_flight: InFlight,
}

impl Guard {
    pub(super) fn new(
        backend: Arc<BackendRuntime>,
        circuit: CircuitBreaker,
        charge: Charge,
        permit: Option<Permit>,
    ) -> Self {
        Self {
            _in_flight: backend.state.begin(),
            backend,
            circuit,
            charge: Some(charge),
            _permit: permit,
        }
    }

    /// The attempt failed before answering: nothing was used.
    pub(super) fn release(mut self, now: Instant) {
        if let Some(charge) = self.charge.take() {
            charge.settle(None, now);
        }
    }

    /// The answer is over: corrects the token charge to `tokens` used (the estimate stays
    /// charged when the usage is unknown), and counts a stream that broke against the circuit.
    pub fn finish(mut self, tokens: Option<u64>, broke: bool) {
        let now = Instant::now();
        if let (Some(charge), Some(tokens)) = (self.charge.take(), tokens) {
            charge.settle(Some(tokens), now);
        }
        if broke {
            self.backend.state.circuit.observe(Verdict::Failure, &self.circuit, now);
            self.backend.state.health.broke();
        }
    }
}
