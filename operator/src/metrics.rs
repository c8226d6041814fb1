//! The operator's Prometheus metrics (`sluice_operator_*`), served on the admin port.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use sluice_crds::MicroUsd;

/// Labels naming a controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `modelroute` or `budget`.
    pub controller: String,
}

/// Labels of status writes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `modelroute`, `budget` or `ledger`.
    pub kind: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Labels of usage reports.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportLabels {
    /// `applied`, `duplicate` or `failed`.
    pub result: String,
}

/// Labels naming a budget.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub budget: String,
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles by controller.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconcile errors by controller.
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    /// Sidecars with an open control stream.
    pub connected_sidecars: Gauge,
    /// Snapshots sent.
    pub pushes: Counter,
    /// From sending a snapshot to its ack, in seconds.
    pub push_latency: Histogram,
    /// The longest a connected sidecar has gone without acking the config last sent to it.
    pub oldest_unacked_push: Gauge<f64, AtomicU64>,
    /// Status and ledger writes by kind and result.
    pub status_writes: Family<WriteLabels, Counter>,
    /// Usage reports by result.
    pub usage_reports: Family<ReportLabels, Counter>,
    /// Money granted to sidecars and not yet reported spent: the overspend bound, in USD.
    pub outstanding_allowance: Family<BudgetLabels, Gauge<f64, AtomicU64>>,
    /// 1 while this replica leads.
    pub leader: Gauge,
    /// Ended spans the trace export queue was too full to take.
    pub spans_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice_operator");
        let reconciles = Family::default();
        registry.register("reconciles", "Reconciles by controller", reconciles.clone());
        let reconcile_errors = Family::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by controller",
            reconcile_errors.clone(),
        );
        let connected_sidecars = Gauge::default();
        registry.register(
            "connected_sidecars",
            "Sidecars with an open control stream",
            connected_sidecars.clone(),
        );
        let pushes = Counter::default();
        registry.register("snapshot_pushes", "Config snapshots sent to sidecars", pushes.clone());
        let push_latency = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
        registry.register(
            "snapshot_push_latency_seconds",
            "From sending a snapshot to the sidecar's ack",
            push_latency.clone(),
        );
        let oldest_unacked_push = Gauge::default();
        registry.register(
            "oldest_unacked_push_seconds",
            "The longest any connected sidecar has gone without acking the config last sent to it (0 when all have)",
            oldest_unacked_push.clone(),
        );
        let status_writes = Family::default();
        registry.register(
            "status_writes",
            "Status and usage ledger writes, by kind and result",
            status_writes.clone(),
        );
        let usage_reports = Family::default();
        registry.register(
            "usage_reports",
            "Usage reports received, by result (applied, duplicate, failed, refused)",
            usage_reports.clone(),
        );
        let outstanding_allowance = Family::default();
        registry.register(
            "budget_outstanding_allowance_usd",
            "Allowance granted to sidecars and not yet reported spent: the most a budget can be overspent by",
            outstanding_allowance.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        let spans_dropped = Counter::default();
        registry.register(
            "trace_spans_dropped",
            "Ended spans dropped because the trace export queue was full",
            spans_dropped.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            connected_sidecars,
            pushes,
            push_latency,
            oldest_unacked_push,
            status_writes,
            usage_reports,
            outstanding_allowance,
            leader,
            spans_dropped,
        }
    }
}

impl Metrics {
    /// Counts a reconcile of `controller`.
    pub fn reconciled(&self, controller: &str) {
        self.reconciles
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .inc();
    }

    /// Counts a failed reconcile of `controller`.
    pub fn reconcile_failed(&self, controller: &str) {
        self.reconcile_errors
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .inc();
    }

    /// Counts a write of `kind`.
    pub fn wrote(&self, kind: &str, ok: bool) {
        self.status_writes
            .get_or_create(&WriteLabels {
                kind: kind.to_owned(),
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
    }

    /// Counts a usage report by result.
    pub fn report(&self, result: &str) {
        self.usage_reports
            .get_or_create(&ReportLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Sets a budget's outstanding allowance.
    pub fn set_outstanding(&self, namespace: &str, budget: &str, amount: MicroUsd) {
        // Micro-dollars to dollars for display only; the figure itself stays integral.
        #[allow(clippy::cast_precision_loss)]
        let usd = amount.micros() as f64 / 1e6;
        self.outstanding_allowance
            .get_or_create(&BudgetLabels {
                namespace: namespace.to_owned(),
                budget: budget.to_owned(),
            })
            .set(usd);
    }

    /// The text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
