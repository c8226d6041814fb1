//! The verdict table: issue 21's targets (ratios within one run: the full-path sidecar against
//! the floor, onwards, 5,000 connected sidecars) and the DESIGN §10 rows they do not supersede,
//! then the measured rows of the shared route (bench-budget) and of tracing (issue 22). Every
//! row says its goal, what was measured, and the verdict: "met", or by how much it was missed
//! and what bounds it.

use std::fmt::Write as _;

use super::{Extras, added_per_chunk, fmt_us, median, mib, msf, ratio, times};
use crate::driver::results::{Load, Run, Target, TargetResults};

/// The operator target of issue 21: sidecars connected, and the slowest ack.
pub const FANOUT_SIDECARS: u64 = 5_000;
/// The slowest ack of a route change across [`FANOUT_SIDECARS`], milliseconds.
pub const FANOUT_GOAL_MS: f64 = 2_000.0;
/// Tracing with its collector down may move a figure by this much before it reads as more than
/// noise (a bound chosen here: runs of the same binary differ by a few percent on this machine).
const NOISE: f64 = 1.10;

/// One row.
struct Row {
    what: String,
    goal: String,
    measured: String,
    verdict: String,
}

/// A row whose goal is "at most `goal`", with what bounds the figure when it is missed.
fn at_most(what: &str, goal: f64, measured: Option<f64>, unit: fn(f64) -> String, detail: String, bound: &str) -> Row {
    let verdict = match measured {
        None => "not measured".to_owned(),
        Some(m) if m <= goal => "met".to_owned(),
        Some(m) => format!("missed by {} ({}); bounded by {bound}", unit(m - goal), ratio(m, goal)),
    };
    Row {
        what: what.to_owned(),
        goal: format!("≤ {}", unit(goal)),
        measured: match measured {
            Some(m) if detail.is_empty() => unit(m),
            Some(m) => format!("{} ({detail})", unit(m)),
            None => "–".to_owned(),
        },
        verdict,
    }
}

/// The figures of one target the rows are built from.
struct Figures {
    added_p50: Option<f64>,
    added_p99: Option<f64>,
    cpu: Option<f64>,
    ttft: Option<f64>,
    chunk: Option<f64>,
}

fn figures(t: &TargetResults, d: &TargetResults) -> Figures {
    let one = |t: &TargetResults, pick: fn(&Load) -> f64| t.one_client.as_ref().map(pick);
    let added = |pick: fn(&Load) -> f64| Some(one(t, pick)? - one(d, pick)?);
    let streams = t.streaming.as_ref().zip(d.streaming.as_ref());
    Figures {
        added_p50: added(|l| l.p50_us),
        added_p99: added(|l| l.p99_us),
        cpu: t.cpu_run.as_ref().and_then(|l| l.cpu_us_per_request),
        ttft: streams.map(|(s, ds)| s.ttft_p50_us - ds.ttft_p50_us),
        chunk: streams.map(|(s, ds)| added_per_chunk(s, ds)),
    }
}

/// `a ÷ b` when both are there and `b` is positive.
fn over(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// "full X, floor Y" for a ratio row's measured column.
fn both(full: Option<f64>, floor: Option<f64>) -> String {
    match (full, floor) {
        (Some(a), Some(b)) => format!("full {}, floor {}", fmt_us(a), fmt_us(b)),
        _ => String::new(),
    }
}

/// Writes the section.
pub(super) fn section(out: &mut String, run: &Run, extras: &Extras) {
    let (Some(d), Some(f), Some(full)) = (
        run.of(Target::Direct),
        run.of(Target::Floor),
        run.of(Target::SidecarFull),
    ) else {
        return;
    };
    let (u, fl) = (figures(full, d), figures(f, d));
    let to_mib = |b: Option<u64>| b.map(|b| b as f64 / (1024.0 * 1024.0));
    let streams = full.footprint.streams_held;
    let at_rate = |t: &TargetResults, rate: u32| t.rates.iter().find(|(r, _)| *r == rate).map(|(_, l)| l.p99_us);
    let added_1000 = at_rate(full, 1_000).zip(at_rate(d, 1_000)).map(|(a, b)| a - b);
    let cpu_bound = "the sidecar's own request path on top of forwarding (the per-stage table and the profile below)";
    let rows = [
        at_most(
            "CPU per request, full feature path ÷ bare forwarder (floor)",
            1.5,
            over(u.cpu, fl.cpu),
            times,
            both(u.cpu, fl.cpu),
            cpu_bound,
        ),
        at_most(
            "added latency p50, one client: full ÷ floor",
            2.0,
            over(u.added_p50, fl.added_p50),
            times,
            both(u.added_p50, fl.added_p50),
            "CPU per request: with one client every µs of the path's CPU is a µs of latency",
        ),
        at_most(
            "added latency p99, one client: full ÷ floor",
            2.0,
            over(u.added_p99, fl.added_p99),
            times,
            both(u.added_p99, fl.added_p99),
            "CPU per request and scheduling on 2 shared cores (the tail moves with the machine's load)",
        ),
        at_most(
            "streaming: added time to first token (p50), full ÷ floor",
            1.5,
            over(u.ttft, fl.ttft),
            times,
            both(u.ttft, fl.ttft),
            "the request path before the first byte (as the added latency)",
        ),
        at_most(
            "streaming: added time per chunk, full ÷ floor",
            1.5,
            over(u.chunk, fl.chunk),
            times,
            both(u.chunk, fl.chunk),
            "the per-event relay (parse, account, re-encode) beside the floor's byte copy",
        ),
        at_most(
            "RSS idle (ready, no traffic yet)",
            20.0,
            to_mib(full.footprint.rss_ready),
            mib,
            String::new(),
            "code, runtime and the configuration's tables resident at start",
        ),
        at_most(
            &format!("RSS with {streams} open streams (fresh process)"),
            64.0,
            to_mib(full.footprint.rss_streams),
            mib,
            String::new(),
            "per-stream buffers and tasks, and tables loaded by the first stream",
        ),
        at_most(
            "added latency p99 at 1,000 req/s (DESIGN §10)",
            1_000.0,
            added_1000,
            fmt_us,
            String::new(),
            "queueing behind CPU per request on 2 shared cores",
        ),
        at_most(
            "start to ready (median; DESIGN §10)",
            100.0,
            median(&full.footprint.ready_ms),
            msf,
            String::new(),
            "loading and validating the manifests",
        ),
    ];
    let _ = writeln!(out, "## Against the targets (issue 21, DESIGN §10)\n");
    let _ = writeln!(
        out,
        "The sidecar with the **full feature path** (rules, per-user, route and backend limits, budget \
         reservation with pricing, accounting, metrics) against the bare forwarder (the floor) of the same run. \
         *Added* = a target's percentile minus the direct call's percentile in the same run; a ratio row \
         divides the sidecar's addition by the floor's.\n"
    );
    let _ = writeln!(out, "| target | goal | measured | verdict |\n|---|---|---|---|");
    let mut lines: Vec<String> = rows
        .iter()
        .map(|r| format!("| {} | {} | {} | {} |", r.what, r.goal, r.measured, r.verdict))
        .collect();
    lines.insert(5, onwards_row(run));
    lines.insert(6, fastest_peer_row(run));
    lines.push(fanout_row(extras));
    lines.push(super::budget_row(extras));
    lines.push(shared_route_row(run, extras));
    lines.extend(tracing_rows(run));
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
}

/// The fastest measured peer: its target and max req/s.
fn fastest_peer(run: &Run) -> Option<(Target, f64)> {
    Target::PEERS
        .into_iter()
        .filter_map(|p| Some((p, run.max_throughput(p)?.1)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

fn throughput(run: &Run, what: &str, peer: Option<(Target, f64)>, missing: &str) -> String {
    match (run.max_throughput(Target::SidecarFull), peer) {
        (Some((c, rps)), Some((peer, peer_rps))) if peer_rps > 0.0 => {
            let r = rps / peer_rps;
            let verdict = if r >= 1.5 {
                "met".to_owned()
            } else {
                format!(
                    "missed by {:.2}× ({:.0} req/s short); bounded by CPU per request (oha, upstream and proxy share 2 cores)",
                    1.5 - r,
                    1.5 * peer_rps - rps
                )
            };
            format!(
                "| {what} | ≥ 1.50× | {r:.2}× ({rps:.0} req/s at {c} connections; {} {peer_rps:.0} req/s) | {verdict} |",
                peer.label()
            )
        }
        _ => format!("| {what} | ≥ 1.50× | – | not measured: {missing} |"),
    }
}

fn peers_missing(run: &Run, which: &str) -> String {
    if run.peers.is_empty() {
        "peers are measured by `tests/bench/run --peers` only".to_owned()
    } else {
        format!("{which} could not be measured (see the peers below)")
    }
}

fn onwards_row(run: &Run) -> String {
    let onwards = run.max_throughput(Target::Onwards).map(|(_, r)| (Target::Onwards, r));
    throughput(
        run,
        "max throughput ÷ onwards' (best of the fixed-concurrency runs)",
        onwards,
        &peers_missing(run, "onwards"),
    )
}

fn fastest_peer_row(run: &Run) -> String {
    throughput(
        run,
        "max throughput ÷ the fastest peer's (DESIGN §10)",
        fastest_peer(run),
        &peers_missing(run, "no peer"),
    )
}

fn fanout_row(extras: &Extras) -> String {
    let what = format!(
        "operator: a route change acked by every one of {} connected sidecars",
        group(FANOUT_SIDECARS)
    );
    let goal = format!("≤ {FANOUT_GOAL_MS:.0} ms (slowest)");
    match &extras.fanout {
        Some(h) if h.acked_p50_ms.is_some() => {
            let ms = |x: Option<f64>| x.map_or_else(|| "–".to_owned(), |v| format!("{v:.0} ms"));
            let bound = "the operator's encode-and-send per sidecar (see the fan-out section)";
            let verdict = match h.acked_max_ms {
                Some(max) if max <= FANOUT_GOAL_MS => "met".to_owned(),
                Some(max) => format!(
                    "missed by {:.0} ms ({:.2}×); bounded by {bound}",
                    max - FANOUT_GOAL_MS,
                    max / FANOUT_GOAL_MS
                ),
                None => "missed: a sidecar never acked a change within the bound".to_owned(),
            };
            let fewer = match h.sidecars {
                Some(n) if n != FANOUT_SIDECARS => format!(" ({} sidecars, not {})", group(n), group(FANOUT_SIDECARS)),
                _ => String::new(),
            };
            format!(
                "| {what} | {goal} | p50 {}, p99 {}, max {}{fewer} | {verdict} |",
                ms(h.acked_p50_ms),
                ms(h.acked_p99_ms),
                ms(h.acked_max_ms)
            )
        }
        _ => format!(
            "| {what} | {goal} | – | not measured: {} |",
            extras
                .fanout_missing
                .as_deref()
                .unwrap_or("`bench-fanout` reported no change-to-ack times")
        ),
    }
}

/// `5000` as `5,000`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The shared route of `bench-budget`: many sidecars sharing one Budget and a route-wide limit
/// through the operator. Measured, with no goal of its own: its floor is the driver's, from
/// another run.
fn shared_route_row(run: &Run, extras: &Extras) -> String {
    let what = "shared route: sidecars sharing a Budget and a route-wide limit through the operator (bench-budget)";
    let Some(s) = extras.budget.as_ref().and_then(|b| b.route.as_ref()) else {
        return format!(
            "| {what} | measured, no goal | – | not measured: {} |",
            super::budget_missing(extras)
        );
    };
    let floor_cpu = run
        .of(Target::Floor)
        .and_then(|f| f.cpu_run.as_ref())
        .and_then(|l| l.cpu_us_per_request);
    let floor = floor_cpu.map_or_else(String::new, |fc| {
        format!("; {} the driver's floor CPU", ratio(s.cpu_us_per_request, fc))
    });
    format!(
        "| {what} | measured, no goal | {} sidecars: CPU {} per request{floor}; added p50 {}, p99 {} (one client); \
         {:.0} req/s at {} connections | measured |",
        s.sidecars,
        fmt_us(s.cpu_us_per_request),
        fmt_us(s.added_p50_us),
        fmt_us(s.added_p99_us),
        s.rps,
        s.connections
    )
}

/// Issue 22's rows: the full path with tracing on (spans to a live collector), and with its
/// collector down, as ratios to the untraced full path of the same run; the second is judged
/// against the first (an absent collector may not add to what tracing costs).
fn tracing_rows(run: &Run) -> Vec<String> {
    let (Some(d), Some(full)) = (run.of(Target::Direct), run.of(Target::SidecarFull)) else {
        return Vec::new();
    };
    let base = figures(full, d);
    let spans = run.tracing.as_ref();
    let mut rows = Vec::new();
    for target in Target::TRACED {
        let what = format!("{} ÷ untraced full (issue 22)", target.label());
        let Some(t) = run.of(target) else {
            let why = spans
                .and_then(|s| s.not_measured.clone())
                .unwrap_or_else(|| "this run had no tracing row".to_owned());
            rows.push(format!("| {what} | – | – | not measured: {why} |"));
            continue;
        };
        let f = figures(t, d);
        let ratios = [
            ("added p50", over(f.added_p50, base.added_p50)),
            ("added p99", over(f.added_p99, base.added_p99)),
            ("CPU", over(f.cpu, base.cpu)),
        ];
        let measured: Vec<String> = ratios
            .iter()
            .map(|(name, r)| format!("{name} {}", r.map_or_else(|| "–".to_owned(), times)))
            .collect();
        let mut measured = measured.join(", ");
        if target == Target::SidecarTraced
            && let Some(s) = spans
        {
            let _ = write!(measured, "; {} spans received for {} requests", s.spans, s.requests);
        }
        let (goal, verdict) = if target == Target::SidecarTraced {
            ("measured, no goal".to_owned(), "measured".to_owned())
        } else {
            // What an absent collector may not change is tracing's own cost (measured in the row
            // above): the one beside it exports the same spans to a collector that takes them.
            let live = run.of(Target::SidecarTraced).map(|t| figures(t, d));
            let against_live = [
                ("added p50", live.as_ref().and_then(|l| over(f.added_p50, l.added_p50))),
                ("added p99", live.as_ref().and_then(|l| over(f.added_p99, l.added_p99))),
                ("CPU", live.as_ref().and_then(|l| over(f.cpu, l.cpu))),
            ];
            let shown: Vec<String> = against_live
                .iter()
                .map(|(name, r)| format!("{name} {}", r.map_or_else(|| "–".to_owned(), times)))
                .collect();
            let _ = write!(measured, "; ÷ tracing to a live collector: {}", shown.join(", "));
            let worst = against_live.iter().filter_map(|(_, r)| *r).reduce(f64::max);
            let verdict = match worst {
                None => "not measured".to_owned(),
                Some(w) if w <= NOISE => "met".to_owned(),
                Some(w) => format!(
                    "missed: {} past the noise bound; bounded by the exporter's work per span",
                    times(w)
                ),
            };
            (
                format!(
                    "no change beyond noise (≤ {} of tracing to a live collector)",
                    times(NOISE)
                ),
                verdict,
            )
        };
        rows.push(format!("| {what} | {goal} | {measured} | {verdict} |"));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_issue_21_target_is_a_row_with_its_ratio_to_the_floor() {
        let md = super::super::markdown(
            &super::super::tests::run(Vec::new(), Vec::new()),
            None,
            &Extras::default(),
        );
        // Full 27 µs of CPU against the floor's 9: 3.00×, 1.50× past the goal of 1.5×.
        assert!(md.contains(
            "| CPU per request, full feature path ÷ bare forwarder (floor) | ≤ 1.50× | 3.00× (full 27.0 µs, floor 9.0 µs) | missed by 1.50× (2.00×); bounded by"
        ));
        // Added p50: full 45 − 10 = 35 µs against the floor's 20 − 10 = 10 µs.
        assert!(md.contains(
            "| added latency p50, one client: full ÷ floor | ≤ 2.00× | 3.50× (full 35.0 µs, floor 10.0 µs) |"
        ));
        for row in [
            "| added latency p99, one client: full ÷ floor |",
            "| streaming: added time to first token (p50), full ÷ floor |",
            "| streaming: added time per chunk, full ÷ floor |",
            "| RSS idle (ready, no traffic yet) | ≤ 20.0 MiB |",
            "open streams (fresh process) | ≤ 64.0 MiB |",
            "| max throughput ÷ onwards' (best of the fixed-concurrency runs) | ≥ 1.50× | – | not measured: peers are measured",
            "| operator: a route change acked by every one of 5,000 connected sidecars | ≤ 2000 ms (slowest) | – | not measured",
            "| shared route: sidecars sharing a Budget and a route-wide limit through the operator (bench-budget) |",
            "| sidecar (full, tracing on) ÷ untraced full (issue 22) | – | – | not measured: this run had no tracing row |",
        ] {
            assert!(md.contains(row), "{row} missing from\n{md}");
        }
    }

    #[test]
    fn the_traced_rows_are_ratios_to_the_untraced_full_path_and_a_dead_collector_is_judged_against_a_live_one() {
        use crate::driver::results::{TargetResults, Tracing};
        let mut traced = TargetResults::new(Target::SidecarTraced);
        let mut down = TargetResults::new(Target::SidecarTracedDown);
        let full = super::super::tests::run(Vec::new(), Vec::new());
        let f = full.of(Target::SidecarFull).unwrap().clone();
        traced.one_client = f.one_client.clone();
        traced.cpu_run = f.cpu_run.clone().map(|mut l| {
            l.cpu_us_per_request = Some(54.0);
            l
        });
        down.one_client = f.one_client.clone();
        down.cpu_run = f.cpu_run.clone();
        let mut r = super::super::tests::run(Vec::new(), vec![traced, down]);
        r.tracing = Some(Tracing {
            requests: 100,
            spans: 200,
            exports: 3,
            not_measured: None,
        });
        let md = super::super::markdown(&r, None, &Extras::default());
        assert!(md.contains(
            "| sidecar (full, tracing on) ÷ untraced full (issue 22) | measured, no goal | added p50 1.00×, added p99 1.00×, CPU 2.00×; 200 spans received for 100 requests | measured |"
        ));
        assert!(md.contains("| sidecar (full, tracing on, collector down) ÷ untraced full (issue 22) | no change beyond noise (≤ 1.10× of tracing to a live collector) | added p50 1.00×, added p99 1.00×, CPU 1.00×; ÷ tracing to a live collector: added p50 1.00×, added p99 1.00×, CPU 0.50× | met |"));
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group(5_000), "5,000");
        assert_eq!(group(100), "100");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
