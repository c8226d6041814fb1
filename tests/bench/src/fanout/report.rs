//! The fan-out results, `fanout.json`'s shape, and their markdown section for `BENCHMARKS.md`.

use std::fmt::Write as _;

use serde::Serialize;

/// One route change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The change's number (from 1).
    pub change: usize,
    /// How long `kubectl apply` itself took (part of every figure below).
    pub apply_ms: f64,
    /// Sidecars that acked the change within the bound.
    pub acked: usize,
    /// From the start of `kubectl apply` until a sidecar's ack was answered: median.
    pub acked_p50_ms: Option<f64>,
    /// The same, 99th percentile.
    pub acked_p99_ms: Option<f64>,
    /// The same, the last sidecar (`None` when one never acked).
    pub acked_max_ms: Option<f64>,
    /// From the start of `kubectl apply` until the last sidecar received the snapshot.
    pub received_max_ms: Option<f64>,
    /// Operator CPU from the start of `kubectl apply` until the last ack.
    pub operator_cpu_ms: f64,
}

/// Everything the fan-out benchmark measured (`fanout.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Fanout {
    /// Simulated sidecars.
    pub sidecars: usize,
    /// Route changes applied.
    pub changes: usize,
    /// The operator's `--heartbeat`, seconds.
    pub heartbeat_s: u64,
    /// The operator's `--status-interval`, seconds.
    pub status_interval_s: u64,
    /// Creating the pods and their tokens.
    pub setup_ms: f64,
    /// From opening every stream at once until each sidecar's `hello` arrived (the last one).
    pub connect_hello_ms: Option<f64>,
    /// From opening every stream at once until every sidecar acked its first snapshot.
    pub connect_ms: Option<f64>,
    /// Sidecars that acked their first snapshot.
    pub connected: usize,
    /// Change to ack over every change and sidecar: median.
    pub acked_p50_ms: Option<f64>,
    /// The same, 99th percentile.
    pub acked_p99_ms: Option<f64>,
    /// The same, the slowest (`None` when a sidecar never acked a change).
    pub acked_max_ms: Option<f64>,
    /// Change to snapshot received, over every change and sidecar: median.
    pub received_p50_ms: Option<f64>,
    /// The same, 99th percentile.
    pub received_p99_ms: Option<f64>,
    /// The same, the slowest.
    pub received_max_ms: Option<f64>,
    /// Median time of `kubectl apply` itself.
    pub apply_p50_ms: Option<f64>,
    /// Each change.
    pub per_change: Vec<Change>,
    /// Operator RSS once ready, with the pods in its cache and no sidecar connected.
    pub operator_rss_ready_mib: f64,
    /// Operator RSS with every sidecar connected, idle.
    pub operator_rss_idle_mib: f64,
    /// Largest operator RSS sampled (every 10 ms) during the pushes.
    pub operator_rss_peak_mib: f64,
    /// The operator's `VmHWM` at the end (the connect phase and the usage included).
    pub operator_rss_hwm_mib: f64,
    /// Operator CPU while idle-connected, per second.
    pub operator_cpu_idle_ms_per_s: f64,
    /// Operator CPU during the connect phase.
    pub operator_cpu_connect_ms: f64,
    /// Operator CPU per change (mean), from `kubectl apply` until the last ack.
    pub operator_cpu_ms_per_change: f64,
    /// Usage reports sent and acked.
    pub usage_reports: usize,
    /// Rounds of reports (one per sidecar each).
    pub usage_rounds: usize,
    /// From sending a round until both statuses showed the exact totals: the slowest round.
    pub usage_to_status_ms: Option<f64>,
    /// The same for each round.
    pub usage_to_status_ms_rounds: Vec<Option<f64>>,
    /// From sending a round until a report was acked (acked only once persisted): median.
    pub usage_ack_p50_ms: Option<f64>,
    /// The same, the slowest.
    pub usage_ack_max_ms: Option<f64>,
    /// Reports sent again after a `503`.
    pub usage_resent: u32,
    /// The exact total the statuses had to show.
    pub usage_total_usd: String,
    /// Stream or ack failures (each followed by a reconnect), and usage reports that failed.
    pub failures: usize,
    /// The first few of them.
    pub failure_samples: Vec<String>,
}

/// Issue 21 and DESIGN §10: a change reaches 5,000 connected sidecars within this.
pub const CHANGE_TARGET_MS: f64 = 2_000.0;
/// The fleet that target is for.
pub const TARGET_SIDECARS: usize = 5_000;
/// DESIGN §10: usage reaches status within this.
pub const USAGE_TARGET_MS: f64 = 10_000.0;

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0} ms"),
        Some(v) => format!("{v:.1} ms"),
        None => "–".to_owned(),
    }
}

fn mib(v: f64) -> String {
    format!("{v:.1} MiB")
}

fn verdict(goal: f64, measured: Option<f64>, complete: bool) -> String {
    match measured {
        _ if !complete => "missed: not every sidecar got there within the bound".to_owned(),
        None => "not measured".to_owned(),
        Some(m) if m <= goal => "met".to_owned(),
        Some(m) => format!("missed by {} ({:.2}×)", ms(Some(m - goal)), m / goal),
    }
}

/// The figures as a markdown table.
pub fn table(f: &Fanout) -> String {
    let mut out = String::new();
    let n = f.sidecars;
    let rows: Vec<(String, String)> = vec![
        (
            "Simulated sidecars (one connection each)".into(),
            format!("{n} ({} connected)", f.connected),
        ),
        ("Pods + bound tokens created".into(), ms(Some(f.setup_ms))),
        (
            "Connect: every stream opened → all `hello`".into(),
            ms(f.connect_hello_ms),
        ),
        (
            "Connect: every stream opened → all first snapshots acked".into(),
            ms(f.connect_ms),
        ),
        (
            format!("Change → ack, p50 / p99 / max ({} changes × {n})", f.changes),
            format!(
                "{} / {} / {}",
                ms(f.acked_p50_ms),
                ms(f.acked_p99_ms),
                ms(f.acked_max_ms)
            ),
        ),
        (
            "Change → snapshot received, p50 / p99 / max".into(),
            format!(
                "{} / {} / {}",
                ms(f.received_p50_ms),
                ms(f.received_p99_ms),
                ms(f.received_max_ms)
            ),
        ),
        ("of which `kubectl apply` itself (median)".into(), ms(f.apply_p50_ms)),
        (
            "Operator RSS: ready (pods cached) / idle-connected".into(),
            format!("{} / {}", mib(f.operator_rss_ready_mib), mib(f.operator_rss_idle_mib)),
        ),
        (
            "Operator RSS: peak during pushes / high-water mark".into(),
            format!("{} / {}", mib(f.operator_rss_peak_mib), mib(f.operator_rss_hwm_mib)),
        ),
        (
            "Operator CPU: idle-connected / connect phase".into(),
            format!(
                "{:.1} ms/s / {:.0} ms",
                f.operator_cpu_idle_ms_per_s, f.operator_cpu_connect_ms
            ),
        ),
        (
            "Operator CPU per change (apply → last ack)".into(),
            format!("{:.0} ms", f.operator_cpu_ms_per_change),
        ),
        (
            format!(
                "Usage: {} reports in {} rounds → exact status (slowest round)",
                f.usage_reports, f.usage_rounds
            ),
            ms(f.usage_to_status_ms),
        ),
        (
            "Usage: report acked (once persisted), p50 / max".into(),
            format!("{} / {}", ms(f.usage_ack_p50_ms), ms(f.usage_ack_max_ms)),
        ),
        (
            "Failures (stream, ack, report) / reports resent".into(),
            format!("{} / {}", f.failures, f.usage_resent),
        ),
    ];
    let _ = writeln!(out, "| Figure | Value |\n|---|---|");
    for (what, value) in rows {
        let _ = writeln!(out, "| {what} | {value} |");
    }
    out
}

/// The section "## Operator fan-out".
pub fn markdown(f: &Fanout) -> String {
    let mut out = String::from("## Operator fan-out\n\n");
    let changes_complete = f.per_change.iter().all(|c| c.acked == f.sidecars) && f.per_change.len() == f.changes;
    let usage_complete = f.usage_to_status_ms_rounds.iter().all(Option::is_some);
    let _ = writeln!(
        out,
        "| Target (issue 21, DESIGN §10) | Goal | Measured | Verdict |\n|---|---|---|---|"
    );
    let scale = if f.sidecars == TARGET_SIDECARS {
        String::new()
    } else {
        format!(" (the target is for 5,000; this run had {})", f.sidecars)
    };
    let _ = writeln!(
        out,
        "| A route change reaches every connected sidecar{scale} | ≤ 2 s | {} (slowest ack of {} changes) | {} |",
        ms(f.acked_max_ms),
        f.changes,
        verdict(CHANGE_TARGET_MS, f.acked_max_ms, changes_complete)
    );
    let _ = writeln!(
        out,
        "| Usage reaches status (exact total) | ≤ 10 s | {} (slowest of {} rounds) | {} |\n",
        ms(f.usage_to_status_ms),
        f.usage_rounds,
        verdict(USAGE_TARGET_MS, f.usage_to_status_ms, usage_complete)
    );
    out.push_str(&table(f));
    out.push('\n');
    let _ = writeln!(
        out,
        "- The real control plane (etcd + kube-apiserver on loopback, `tests/cluster`) and the release \
         `sluice-operator` with production timings (`--status-interval {}s --heartbeat {}s`, log level `info`), \
         watching one namespace holding {} stored pods (no kubelet) labelled for the route, each with a \
         `sluice`-audience token bound to it (TokenRequest).",
        f.status_interval_s, f.heartbeat_s, f.sidecars
    );
    out.push_str(
        "- The sidecars are light clients in one process (`bench-fanout`), each with its own HTTPS client and \
         so its own connection (HTTP/2, as the real sidecar negotiates), speaking the real protocol: \
         `GET /v1/watch` NDJSON held open, every snapshot acked at once with `POST /v1/ack`, usage sent with \
         `POST /v1/usage`; the operator authenticates each with a TokenReview. Everything shares the \
         machine's cores with the API server, etcd and the simulated sidecars.\n",
    );
    let _ = writeln!(
        out,
        "- A change is `kubectl apply` of the ModelRoute with another backend model; its time runs from the \
         start of `kubectl apply` (whose own time is included and shown) until a sidecar's ack is answered, \
         stamped in the sidecar's task (kubectl's discovery cache is warmed first by a no-op apply). {} changes, \
         one after another, a second apart.",
        f.changes
    );
    out.push_str(
        "- RSS and CPU are the operator process's own, from `/proc/<pid>/status` (`VmRSS`, `VmHWM`) and \
         `/proc/<pid>/stat` (`utime + stime`, in clock ticks of 10 ms); idle is measured over 5 s with every \
         sidecar connected.\n",
    );
    let _ = writeln!(
        out,
        "- Usage: each round every sidecar posts one report (its next sequence, different figures per pod and \
         round) at once; the time runs until the Budget's `spentUSD` and `byRoute` and the ModelRoute's \
         `status.usage` (cost, requests, tokens) show the exact running total (now {} USD), read every 25 ms. The operator writes usage into status \
         every `--status-interval` ({} s) and acks a report only once it is written, which bounds this figure.",
        f.usage_total_usd, f.status_interval_s
    );
    if !f.failure_samples.is_empty() {
        let _ = writeln!(out, "\nFailures seen ({}):\n", f.failures);
        for s in &f.failure_samples {
            let _ = writeln!(out, "- `{}`", s.replace('`', "'"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_says_by_how_much() {
        assert_eq!(verdict(1_000.0, Some(800.0), true), "met");
        assert_eq!(verdict(1_000.0, Some(1_500.0), true), "missed by 500 ms (1.50×)");
        assert!(verdict(1_000.0, Some(800.0), false).starts_with("missed"));
        assert_eq!(verdict(1_000.0, None, true), "not measured");
    }
}
