//! The shared-budget results, `budget.json`'s shape, and their markdown section for
//! `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;
use sluice_crds::MicroUsd;

use super::Options;
use super::load::Tally;

/// The operator's outstanding allowance and what had been served, at one moment of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Since the load started.
    pub at_ms: f64,
    /// `sluice_operator_budget_outstanding_allowance_usd`, when it could be read.
    pub outstanding: Option<MicroUsd>,
    /// Served so far.
    pub served: MicroUsd,
}

/// Everything the benchmark measured (`budget.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Shared {
    /// Sidecar processes.
    pub sidecars: usize,
    /// Requests per second offered over all of them.
    pub rate: u32,
    /// Requests per second actually started (below `rate` when this machine could not keep up).
    pub achieved_rate: f64,
    /// How long the load ran.
    pub load_s: f64,
    /// Why it stopped: `spent` (refused, and nothing served for a while) or `time bound`.
    pub stopped_by: String,
    /// The Budget's limit.
    #[serde(rename = "limitUSD")]
    pub limit: MicroUsd,
    /// Requests the limit pays for.
    pub requests_paid_for: u64,
    /// Requests started.
    pub sent: u64,
    /// Requests served.
    pub served: u64,
    /// What they cost, from their `x-sluice-cost-usd`.
    #[serde(rename = "servedUSD")]
    pub served_cost: MicroUsd,
    /// Served beyond the limit.
    #[serde(rename = "overspendUSD")]
    pub overspend: MicroUsd,
    /// The limit not served when the load stopped.
    #[serde(rename = "unspentUSD")]
    pub unspent: MicroUsd,
    /// The bound: the largest outstanding allowance seen during the run.
    #[serde(rename = "boundMaxUSD")]
    pub bound_max: Option<MicroUsd>,
    /// The outstanding allowance when the first refusal came.
    #[serde(rename = "boundAtFirstRefusalUSD")]
    pub bound_at_first_refusal: Option<MicroUsd>,
    /// Served when the first refusal came.
    #[serde(rename = "servedAtFirstRefusalUSD")]
    pub served_at_first_refusal: Option<MicroUsd>,
    /// From the start of the load to the first refusal.
    pub first_refusal_ms: Option<f64>,
    /// Refusals by HTTP status and error code.
    pub refused: BTreeMap<String, u64>,
    /// Transport failures.
    pub failed: u64,
    /// A sample of them.
    pub failure_samples: Vec<String>,
    /// The Budget's `status.spentUSD` at the end.
    #[serde(rename = "statusSpentUSD")]
    pub status_spent: Option<MicroUsd>,
    /// From the end of the load until status showed what was served (or the bound ran out).
    pub status_after_ms: f64,
    /// The measured route's request path (its own Budget and a route-wide limit).
    pub route: Option<super::route::RouteFigures>,
}

/// What [`build`] takes.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The run's options.
    pub opts: &'a super::Options,
    /// The final tally.
    pub tally: &'a Tally,
    /// The outstanding allowance over the run.
    pub samples: &'a [Sample],
    /// When the load started.
    pub started: Instant,
    /// How long it ran, seconds.
    pub load_s: f64,
    /// Why it stopped.
    pub stopped_by: &'a str,
    /// `status.spentUSD` at the end.
    pub in_status: Option<MicroUsd>,
    /// How long status took to show it.
    pub status_after_ms: f64,
    /// The measured route's figures.
    pub route: Option<super::route::RouteFigures>,
}

/// The results of a run.
pub fn build(i: Inputs<'_>) -> Shared {
    let Options {
        sidecars, rate, limit, ..
    } = *i.opts;
    let t = i.tally;
    let first_ms = t
        .first_refusal
        .map(|(at, _)| at.saturating_duration_since(i.started).as_secs_f64() * 1_000.0);
    // The last sample taken before the first refusal: what was outstanding as the money ran out.
    let at_first = first_ms.and_then(|ms| {
        i.samples
            .iter()
            .rev()
            .find(|s| s.at_ms <= ms)
            .and_then(|s| s.outstanding)
    });
    Shared {
        sidecars,
        rate,
        achieved_rate: if i.load_s > 0.0 { t.sent as f64 / i.load_s } else { 0.0 },
        load_s: i.load_s,
        stopped_by: i.stopped_by.to_owned(),
        limit,
        requests_paid_for: super::requests_in(limit),
        sent: t.sent,
        served: t.served,
        served_cost: t.served_cost,
        overspend: t.served_cost.saturating_sub(limit),
        unspent: limit.saturating_sub(t.served_cost),
        bound_max: i.samples.iter().filter_map(|s| s.outstanding).max(),
        bound_at_first_refusal: at_first,
        served_at_first_refusal: t.first_refusal.map(|(_, served)| served),
        first_refusal_ms: first_ms,
        refused: t.refused.clone(),
        failed: t.failed,
        failure_samples: t.failure_samples.clone(),
        status_spent: i.in_status,
        status_after_ms: i.status_after_ms,
        route: i.route,
    }
}

fn usd(m: Option<MicroUsd>) -> String {
    m.map_or_else(|| "–".to_owned(), |m| format!("${m}"))
}

fn percent(part: MicroUsd, whole: MicroUsd) -> String {
    if whole == MicroUsd::ZERO {
        return "–".to_owned();
    }
    format!("{:.1} %", part.micros() as f64 * 100.0 / whole.micros() as f64)
}

/// The figures as a table (what the binary prints).
pub fn table(r: &Shared) -> String {
    let mut out = String::new();
    let rows: Vec<(&str, String)> = vec![
        ("sidecars (processes, real operator)", r.sidecars.to_string()),
        (
            "load offered / started",
            format!(
                "{} req/s / {:.0} req/s for {:.1} s ({})",
                r.rate, r.achieved_rate, r.load_s, r.stopped_by
            ),
        ),
        ("hard limit", format!("${} ({} requests)", r.limit, r.requests_paid_for)),
        ("served", format!("{} requests, ${}", r.served, r.served_cost)),
        ("**overspend**", format!("**${}**", r.overspend)),
        (
            "**bound** (outstanding allowance, largest in the run)",
            format!("**{}**", usd(r.bound_max)),
        ),
        ("bound when the first refusal came", usd(r.bound_at_first_refusal)),
        (
            "served when the first refusal came",
            r.served_at_first_refusal.map_or_else(
                || "–".to_owned(),
                |s| format!("${s} ({} of the limit)", percent(s, r.limit)),
            ),
        ),
        ("left unspent when the load stopped", format!("${}", r.unspent)),
        (
            "Budget status.spentUSD",
            format!(
                "{}{} ({:.0} ms after the load)",
                usd(r.status_spent),
                if r.status_spent == Some(r.served_cost) {
                    " = served"
                } else {
                    " ≠ served"
                },
                r.status_after_ms
            ),
        ),
        (
            "refusals",
            if r.refused.is_empty() {
                "none".to_owned()
            } else {
                r.refused
                    .iter()
                    .map(|(k, v)| format!("{v} × {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        ("transport failures", r.failed.to_string()),
    ];
    let _ = writeln!(out, "| figure | value |\n|---|---|");
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    out
}

/// The `BENCHMARKS.md` section.
pub fn markdown(r: &Shared) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Shared budget: {} sidecars at {} req/s\n", r.sidecars, r.rate);
    let _ = writeln!(
        out,
        "`bench-budget`: {} real `sluice-sidecar` processes, each the sidecar of a stored pod with its \
         own pod-bound token, against the real operator on the real control plane, share one hard \
         `Budget`; open-loop load is spread over them in turn until the budget is spent. Each answer \
         costs ${} (its `x-sluice-cost-usd`); the sidecars reserve the worst case of `max_tokens` \
         before each call. The overspend is what was served beyond the limit; the bound beside it is \
         the allowance outstanding (granted to sidecars and not yet reported spent), which the \
         operator exports as `sluice_operator_budget_outstanding_allowance_usd`: the most the fleet could \
         overspend if every sidecar crashed holding its unreported spend.\n",
        r.sidecars,
        super::manifests::REQUEST_COST
    );
    out.push_str(&table(r));
    let reservation = MicroUsd::new(
        super::manifests::MAX_TOKENS * super::manifests::REQUEST_COST.micros() / super::manifests::COMPLETION_TOKENS,
    );
    let slivers = MicroUsd::new(reservation.micros().saturating_mul(r.sidecars as u64));
    if r.unspent > MicroUsd::ZERO && r.unspent < slivers {
        let _ = writeln!(
            out,
            "\nThe ${} left unspent is what remained in the sidecars' slices, each below one request's \
             reservation (${reservation}): no sidecar can admit another request, yet the budget is not \
             spent, so the refusals above are not `budget_exceeded` (the operator does not pool \
             remainders too small to serve a request).",
            r.unspent
        );
    }
    if !r.failure_samples.is_empty() {
        let _ = writeln!(out, "\nFailures (sample): {}", r.failure_samples.join("; "));
    }
    route_section(&mut out, r);
    out
}

/// The measured route: the request path of sidecars sharing a Budget and a route-wide limit.
fn route_section(out: &mut String, r: &Shared) {
    let Some(m) = &r.route else { return };
    let _ = writeln!(
        out,
        "\n### The request path of a shared route\n\n\
         Before the budget above is spent, the same {} sidecars serve a second route, `{}`, with its own hard \
         Budget and route-wide request and token limits (`rateLimit`), both split among them by the operator. \
         One client alternates a direct call to the upstream and a call through one sidecar, {} each; then {} \
         connections spread {} requests over every sidecar, and the fleet's CPU is read from `/proc` before \
         and after.\n\n\
         | figure | measured |\n|---|---|\n\
         | added latency p50, one client | {} (direct {}) |\n\
         | added latency p99, one client | {} |\n\
         | CPU per request (all sidecars) | {} |\n\
         | throughput at {} connections | {:.0} req/s |\n\
         | requests not answered 200 | {} |",
        m.sidecars,
        super::manifests::MEASURE_MODEL,
        super::route::ONE_CLIENT_REQUESTS,
        m.connections,
        super::route::LOAD_REQUESTS,
        us(m.added_p50_us),
        us(m.direct_p50_us),
        us(m.added_p99_us),
        us(m.cpu_us_per_request),
        m.connections,
        m.rps,
        m.not_ok
    );
}

fn us(v: f64) -> String {
    crate::driver::report::fmt_us(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overspend_is_what_was_served_beyond_the_limit_and_never_negative() {
        let opts = Options {
            operator_bin: "op".into(),
            sidecar_bin: "sc".into(),
            upstream_bin: "up".into(),
            cluster_bin_dir: "bin".into(),
            work_dir: "w".into(),
            sidecars: 2,
            rate: 10,
            limit: MicroUsd::new(900),
            max_load: std::time::Duration::from_secs(1),
        };
        let started = Instant::now();
        let samples = [
            Sample {
                at_ms: 0.0,
                outstanding: Some(MicroUsd::new(400)),
                served: MicroUsd::ZERO,
            },
            Sample {
                at_ms: 5.0,
                outstanding: Some(MicroUsd::new(180)),
                served: MicroUsd::new(720),
            },
        ];
        let mut tally = Tally {
            sent: 12,
            served: 10,
            served_cost: MicroUsd::new(900),
            ..Tally::default()
        };
        let inputs = |tally: &Tally| {
            build(Inputs {
                opts: &opts,
                tally,
                samples: &samples,
                started,
                load_s: 1.0,
                stopped_by: "spent",
                in_status: Some(MicroUsd::new(900)),
                status_after_ms: 3.0,
                route: None,
            })
        };
        let r = inputs(&tally);
        assert_eq!(
            (r.overspend, r.unspent, r.bound_max),
            (MicroUsd::ZERO, MicroUsd::ZERO, Some(MicroUsd::new(400)))
        );
        tally.served_cost = MicroUsd::new(990);
        assert_eq!(inputs(&tally).overspend, MicroUsd::new(90));
        assert!(table(&r).contains("= served"));
    }
}
