//! The candidates of one request: rules narrow, request constraints filter, the strategy orders.

use std::{sync::Arc, time::Duration};

use sluice_crds::MicroUsd;
use tokio::time::Instant;

use super::{BackendRuntime, Route, facts::Facts, strategy};
use crate::circuit::Availability;

/// Constraints a client put on this request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Constraints {
    /// `x-sluice-max-cost-usd`: the estimated cost must not exceed it.
    pub max_cost: Option<MicroUsd>,
    /// `x-sluice-max-latency-ms`: the backend's latency estimate must not exceed it.
    pub max_latency: Option<Duration>,
}

/// Backends to try, in order.
#[derive(Debug)]
pub struct Plan {
    /// Available backends in strategy order, then those whose circuit is open or cooling down.
    pub candidates: Vec<Arc<BackendRuntime>>,
    /// The index of the rule that narrowed the set, if one matched.
    pub rule: Option<usize>,
}

/// No backend survived a request constraint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoCandidate {
    /// Every candidate is estimated above `x-sluice-max-cost-usd` (or has no prices).
    #[error(
        "no backend fits x-sluice-max-cost-usd {limit}: {}",
        match cheapest { Some(c) => format!("the cheapest is estimated at {c} USD for this request"), None => "no candidate has prices to estimate with".into() }
    )]
    MaxCost {
        /// The client's limit.
        limit: MicroUsd,
        /// The lowest estimate among the candidates.
        cheapest: Option<MicroUsd>,
    },
    /// Every candidate's latency estimate is above `x-sluice-max-latency-ms`.
    #[error("no backend fits x-sluice-max-latency-ms {limit_ms}: the fastest is estimated at {fastest_ms} ms")]
    MaxLatency {
        /// The client's limit.
        limit_ms: u128,
        /// The lowest estimate among the candidates.
        fastest_ms: u128,
    },
}

impl Route {
    /// The backends this request may use, in the order to try them.
    pub fn plan(&self, facts: &Facts<'_>, constraints: Constraints, now: Instant) -> Result<Plan, NoCandidate> {
        let rule = self.rules.iter().position(|r| r.matches(facts));
        let mut candidates: Vec<Arc<BackendRuntime>> = match rule.and_then(|i| self.rules.get(i)) {
            Some(rule) => self
                .backends
                .iter()
                .filter(|b| rule.backends.contains(&b.name))
                .cloned()
                .collect(),
            None => self.backends.clone(),
        };
        if let Some(limit) = constraints.max_cost {
            let costs: Vec<Option<MicroUsd>> = candidates.iter().map(|b| strategy::estimated_cost(b, facts)).collect();
            let cheapest = costs.iter().flatten().min().copied();
            let mut costs = costs.into_iter();
            candidates.retain(|_| costs.next().flatten().is_some_and(|c| c <= limit));
            if candidates.is_empty() {
                return Err(NoCandidate::MaxCost { limit, cheapest });
            }
        }
        if let Some(limit) = constraints.max_latency {
            let estimates: Vec<Option<Duration>> = candidates.iter().map(|b| b.state.latency.estimate(now)).collect();
            let fastest = estimates.iter().flatten().min().copied().unwrap_or_default();
            let mut estimates = estimates.into_iter();
            // A backend never measured is given the benefit of the doubt.
            candidates.retain(|_| estimates.next().flatten().is_none_or(|e| e <= limit));
            if candidates.is_empty() {
                return Err(NoCandidate::MaxLatency {
                    limit_ms: limit.as_millis(),
                    fastest_ms: fastest.as_millis(),
                });
            }
        }
        // The strategy chooses among backends that can take traffic now; the others stay at the
        // end, for the attempt loop to wait for or to explain why nothing was tried.
        let (ready, resting): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .partition(|b| b.state.circuit.availability(now) == Availability::Ready);
        let mut ordered = strategy::order(self.strategy, &self.state.picker, ready, facts, now);
        ordered.extend(resting);
        Ok(Plan {
            candidates: ordered,
            rule,
        })
    }
}
