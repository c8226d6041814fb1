//! Condition types and their typed reasons, and the one function that updates a list of
//! `metav1.Condition`s (keeping `lastTransitionTime` while the status holds).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition type Sluice writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// The spec is valid.
    Accepted,
    /// Every Secret and Budget the route names exists and fits.
    ResolvedRefs,
    /// Ready to serve: accepted, resolved, and pushed (routes); valid (budgets).
    Ready,
    /// A budget reached its limit.
    Exhausted,
    /// A budget crossed one of its alert thresholds.
    ThresholdReached,
    /// The namespace's usage ledger: present only after it went missing or while it cannot be
    /// read (`True`: counting, `False`: reports held).
    UsageLedger,
}

impl Type {
    /// The name in `status.conditions[].type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::ResolvedRefs => "ResolvedRefs",
            Self::Ready => "Ready",
            Self::Exhausted => "Exhausted",
            Self::ThresholdReached => "ThresholdReached",
            Self::UsageLedger => "UsageLedger",
        }
    }
}

/// Why a condition has its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The spec passed validation.
    Accepted,
    /// The spec broke a rule; the message names the field.
    Invalid,
    /// Every reference resolved.
    ResolvedRefs,
    /// A referenced Secret does not exist.
    SecretNotFound,
    /// A referenced Secret lacks the key, or it is empty.
    SecretKeyNotFound,
    /// The referenced Budget does not exist or does not fit the route.
    BudgetNotFound,
    /// The config reached the sidecars' control streams.
    Pushed,
    /// The route is not served as written (the last accepted version may be).
    NotAccepted,
    /// The budget is valid and counting.
    Counting,
    /// Spend reached the limit.
    LimitReached,
    /// Spend is under the limit.
    WithinLimit,
    /// Spend crossed a threshold (the message says which).
    ThresholdCrossed,
    /// Spend is under every threshold.
    BelowThresholds,
    /// The ledger was deleted while held and written again from the operator's copy.
    Recreated,
    /// The ledger was missing at load and rebuilt from status.
    RebuiltFromStatus,
    /// The ledger's ConfigMap is not a ledger: reports are held.
    Unreadable,
}

impl Reason {
    /// The CamelCase reason string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::Invalid => "Invalid",
            Self::ResolvedRefs => "ResolvedRefs",
            Self::SecretNotFound => "SecretNotFound",
            Self::SecretKeyNotFound => "SecretKeyNotFound",
            Self::BudgetNotFound => "BudgetNotFound",
            Self::Pushed => "Pushed",
            Self::NotAccepted => "NotAccepted",
            Self::Counting => "Counting",
            Self::LimitReached => "LimitReached",
            Self::WithinLimit => "WithinLimit",
            Self::ThresholdCrossed => "ThresholdCrossed",
            Self::BelowThresholds => "BelowThresholds",
            Self::Recreated => "Recreated",
            Self::RebuiltFromStatus => "RebuiltFromStatus",
            Self::Unreadable => "Unreadable",
        }
    }
}

/// Sets one condition in `conditions`, keeping its transition time when the status is unchanged.
pub fn set(
    conditions: &mut Vec<Condition>,
    kind: Type,
    status: bool,
    reason: Reason,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    let next = Condition {
        type_: kind.as_str().to_owned(),
        status: status.to_owned(),
        reason: reason.as_str().to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    };
    match conditions.iter_mut().find(|c| c.type_ == next.type_) {
        Some(existing) => {
            let since = if existing.status == next.status {
                existing.last_transition_time.clone()
            } else {
                next.last_transition_time.clone()
            };
            *existing = Condition {
                last_transition_time: since,
                ..next
            };
        }
        None => conditions.push(next),
    }
}

/// Removes the condition of type `kind`.
pub fn remove(conditions: &mut Vec<Condition>, kind: Type) {
    conditions.retain(|c| c.type_ != kind.as_str());
}

/// The condition of type `kind`, if present.
pub fn get(conditions: &[Condition], kind: Type) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == kind.as_str())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn accept(c: &mut Vec<Condition>, generation: i64, at: &str) {
        set(
            c,
            Type::Accepted,
            true,
            Reason::Accepted,
            "",
            Some(generation),
            &time(at),
        );
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut c = Vec::new();
        accept(&mut c, 1, "2026-01-01T00:00:00Z");
        accept(&mut c, 2, "2026-01-02T00:00:00Z");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].observed_generation, Some(2));
        assert_eq!(c[0].last_transition_time, time("2026-01-01T00:00:00Z"));
        set(
            &mut c,
            Type::Accepted,
            false,
            Reason::Invalid,
            "spec.models: empty",
            Some(3),
            &time("2026-01-03T00:00:00Z"),
        );
        assert_eq!(c[0].last_transition_time, time("2026-01-03T00:00:00Z"));
        assert_eq!((c[0].status.as_str(), c[0].reason.as_str()), ("False", "Invalid"));
    }
}
