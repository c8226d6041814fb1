//! `BENCHMARKS.md` from a [`Run`]: the targets of issue 21 and DESIGN §10 first, then every figure beside
//! the direct call and the floor of the same run.

mod apis;
mod targets;

use std::fmt::Write as _;
use std::path::Path;

use super::manifests::STREAM_CHUNKS;
use super::results::{Load, Run, Streaming, Target, TargetResults};

/// Microseconds in a readable unit.
pub fn fmt_us(us: f64) -> String {
    if !us.is_finite() {
        "–".to_owned()
    } else if us.abs() >= 10_000.0 {
        format!("{:.1} ms", us / 1_000.0)
    } else if us.abs() >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

fn fmt_mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "–".to_owned(),
        |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    )
}

/// `a / b` as `1.23×`, or a dash when `b` is not positive.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}×", a / b)
    } else {
        "–".to_owned()
    }
}

/// The per-chunk time a target adds over the direct stream: the stream's time after its first
/// token, less the direct call's, over the chunks that follow the first.
pub fn added_per_chunk(s: &Streaming, direct: &Streaming) -> f64 {
    let after_first = |s: &Streaming| s.total_p50_us - s.ttft_p50_us;
    (after_first(s) - after_first(direct)) / f64::from(STREAM_CHUNKS - 1)
}

fn mib(x: f64) -> String {
    format!("{x:.1} MiB")
}

fn msf(x: f64) -> String {
    format!("{x:.1} ms")
}

fn times(x: f64) -> String {
    format!("{x:.2}×")
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    (!v.is_empty()).then(|| super::percentile(&mut v, 0.5))
}

/// The headline of the operator fan-out (`fanout.json` of `bench-fanout`).
#[derive(Debug, Clone, Default)]
pub struct FanoutHeadline {
    /// Simulated sidecars.
    pub sidecars: Option<u64>,
    /// Change to all-acked, median over changes and sidecars, ms.
    pub acked_p50_ms: Option<f64>,
    /// The same, 99th percentile.
    pub acked_p99_ms: Option<f64>,
    /// The same, slowest (`None`: a sidecar never acked).
    pub acked_max_ms: Option<f64>,
}

/// The headline of the shared budget (`budget.json` of `bench-budget`).
#[derive(Debug, Clone, Default)]
pub struct BudgetHeadline {
    /// Sidecar processes.
    pub sidecars: Option<u64>,
    /// Requests per second offered.
    pub rate: Option<u64>,
    /// Served beyond the limit, dollars as written.
    pub overspend: Option<String>,
    /// The largest outstanding allowance of the run, dollars as written.
    pub bound: Option<String>,
    /// The shared route's request-path figures, when measured.
    pub route: Option<SharedRoute>,
}

/// The request path through sidecars sharing a Budget and a route-wide limit (`budget.json`'s
/// `route`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedRoute {
    /// Sidecars the load was spread over.
    pub sidecars: u64,
    /// Their CPU per request, microseconds.
    pub cpu_us_per_request: f64,
    /// One client: the sidecar's p50 less the direct call's, microseconds.
    pub added_p50_us: f64,
    /// The same at p99.
    pub added_p99_us: f64,
    /// Requests per second at `connections`.
    pub rps: f64,
    /// Connections of the throughput run.
    pub connections: u64,
}

/// What the report includes beside the driver's own run: the operator fan-out and the profile.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// `fanout.md`, verbatim.
    pub fanout_md: Option<String>,
    /// From `fanout.json`.
    pub fanout: Option<FanoutHeadline>,
    /// Why the fan-out was not measured.
    pub fanout_missing: Option<String>,
    /// `budget.md` of `bench-budget`, verbatim.
    pub budget_md: Option<String>,
    /// From `budget.json`: the overspend and its bound (the largest outstanding allowance).
    pub budget: Option<BudgetHeadline>,
    /// Why the shared budget was not measured.
    pub budget_missing: Option<String>,
    /// `tests/bench/profile.md`, verbatim.
    pub profile: Option<String>,
}

impl Extras {
    /// Reads what exists; what does not becomes the reason it is missing.
    pub fn read(fanout_dir: Option<&Path>, fanout_missing: Option<&str>, profile: Option<&Path>) -> Self {
        let mut extras = Extras {
            fanout_missing: fanout_missing.map(str::to_owned),
            profile: profile.and_then(|p| std::fs::read_to_string(p).ok()),
            ..Extras::default()
        };
        if let Some(dir) = fanout_dir {
            let md = dir.join("fanout.md");
            match std::fs::read_to_string(&md) {
                Ok(text) => extras.fanout_md = Some(text),
                Err(e) => {
                    extras
                        .fanout_missing
                        .get_or_insert_with(|| format!("`bench-fanout` left no `{}` ({e})", md.display()));
                }
            }
            if let Some(json) = std::fs::read_to_string(dir.join("fanout.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            {
                extras.fanout = Some(FanoutHeadline {
                    sidecars: json["sidecars"].as_u64(),
                    acked_p50_ms: json["acked_p50_ms"].as_f64(),
                    acked_p99_ms: json["acked_p99_ms"].as_f64(),
                    acked_max_ms: json["acked_max_ms"].as_f64(),
                });
            }
        }
        extras
    }

    /// Adds the shared-budget section of `bench-budget` from `dir`, or why it is missing.
    pub fn with_budget(mut self, dir: Option<&Path>, missing: Option<&str>) -> Self {
        self.budget_missing = missing.map(str::to_owned);
        if let Some(dir) = dir {
            let md = dir.join("budget.md");
            if let Some(json) = std::fs::read_to_string(dir.join("budget.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            {
                let text = |key: &str| json[key].as_str().map(str::to_owned);
                self.budget = Some(BudgetHeadline {
                    sidecars: json["sidecars"].as_u64(),
                    rate: json["rate"].as_u64(),
                    overspend: text("overspendUSD"),
                    bound: text("boundMaxUSD"),
                    route: serde_json::from_value(json["route"].clone()).ok(),
                });
            }
            match std::fs::read_to_string(&md) {
                Ok(text) => self.budget_md = Some(text),
                Err(e) => {
                    self.budget_missing
                        .get_or_insert_with(|| format!("`bench-budget` left no `{}` ({e})", md.display()));
                }
            }
        }
        self
    }
}

/// The whole markdown document; `plot` is the PNG's path relative to the document, if drawn.
pub fn markdown(run: &Run, plot: Option<&str>, extras: &Extras) -> String {
    let mut out = String::new();
    let peers = !run.peers.is_empty();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `tests/bench/run{}{}` on {} (commit `{}`); the driver measured for {:.0} s. Benchmarks \
         measure; they are not tests and never fail on a timing. Reproduce with `tests/bench/run --peers` \
         (fan-out, driver and micro-benchmarks measure for about 17 minutes after the builds and installs; \
         without `--peers` about 11; `--quick` for a smoke run).\n",
        if run.quick { " --quick" } else { "" },
        if peers { " --peers" } else { "" },
        run.date,
        run.machine.commit,
        run.seconds
    );
    machine_section(&mut out, run);
    targets::section(&mut out, run, extras);
    peers_section(&mut out, run);
    decomposition_section(&mut out, run);
    if let Some(plot) = plot {
        let _ = writeln!(out, "![Latency against offered load]({plot})\n");
    }
    one_client_section(&mut out, run);
    rates_section(&mut out, run);
    concurrency_section(&mut out, run);
    cpu_section(&mut out, run);
    streaming_section(&mut out, run);
    apis::section(&mut out, run);
    memory_section(&mut out, run);
    setup_section(&mut out, run);
    fanout_section(&mut out, extras);
    budget_section(&mut out, extras);
    if let Some(profile) = &extras.profile {
        out.push_str(profile.trim_end());
        out.push_str("\n\n");
    }
    missing_section(&mut out, run, extras);
    out
}

fn machine_section(out: &mut String, run: &Run) {
    let m = &run.machine;
    let _ = writeln!(out, "## Machine and load\n");
    let _ = writeln!(
        out,
        "- {} cores of {}, {:.0} GiB memory, Linux {}",
        m.cores,
        m.cpu,
        m.memory as f64 / f64::from(1u32 << 30),
        m.kernel
    );
    let _ = writeln!(out, "- {}; {}", m.rustc, m.oha);
    let _ = writeln!(
        out,
        "- Load average (1, 5, 15 min) at the start: {}; at the end: {}",
        m.load_before, m.load_after
    );
    let busy = if m.other_cpu_cores >= 0.1 {
        format!(
            "**The machine was busy**: other processes used {:.2} cores on average during the run ({}). \
             Load generator, upstream and proxy share the same {} cores with them, so every figure here is \
             pessimistic and noisier than on a quiet machine; ratios within the run are the fairer reading.",
            m.other_cpu_cores,
            m.busy_with.join(", "),
            m.cores
        )
    } else {
        format!(
            "The machine was quiet: other processes used {:.2} cores on average during the run.",
            m.other_cpu_cores
        )
    };
    let _ = writeln!(out, "- {busy}");
    let peers: Vec<String> = run
        .peers
        .iter()
        .filter(|p| p.not_measured.is_none())
        .map(|p| p.version.clone().unwrap_or_else(|| p.target.label().to_owned()))
        .collect();
    let _ = writeln!(
        out,
        "- Everything on loopback: `oha` (load), `bench-upstream` (answers at once), `bench-floor` (a bare \
         hyper forwarder), and two `sluice-sidecar --manifests` processes, all release builds on the same \
         machine{}.\n",
        if peers.is_empty() {
            String::new()
        } else {
            format!("; the peers {}", peers.join(", "))
        }
    );
}

/// The sidecar beside each peer, in the figures users choose a gateway by.
fn peers_section(out: &mut String, run: &Run) {
    if run.peers.is_empty() {
        return;
    }
    let Some(d) = run.of(Target::Direct) else { return };
    let _ = writeln!(out, "## Sluice beside the peers\n");
    let _ = writeln!(
        out,
        "Same upstream, same request, same `oha` runs, visited in turn with the other targets. *Added* is \
         over the direct call of the same run; CPU and RSS of a peer are summed over its process tree.\n"
    );
    let _ = writeln!(
        out,
        "| target | added p50, one client | added p99, one client | CPU per request | max throughput | \
         added TTFT p50 (streamed) | RSS ready | RSS with open streams (after the load runs) | start to ready |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    let ds = d.streaming.clone();
    let mut rows: Vec<Target> = vec![Target::SidecarFull, Target::SidecarMinimal];
    rows.extend(Target::PEERS.into_iter().filter(|p| run.of(*p).is_some()));
    for target in rows {
        let Some(t) = run.of(target) else { continue };
        let added = |pick: fn(&Load) -> f64| match (&t.one_client, &d.one_client) {
            (Some(l), Some(dl)) => fmt_us(pick(l) - pick(dl)),
            _ => "–".to_owned(),
        };
        let cpu = t
            .cpu_run
            .as_ref()
            .and_then(|l| l.cpu_us_per_request)
            .map_or_else(|| "–".to_owned(), fmt_us);
        let max = run
            .max_throughput(target)
            .map_or_else(|| "–".to_owned(), |(c, rps)| format!("{rps:.0} req/s (c={c})"));
        let ttft = match (&t.streaming, &ds) {
            (Some(s), Some(ds)) => fmt_us(s.ttft_p50_us - ds.ttft_p50_us),
            _ => "–".to_owned(),
        };
        let f = &t.footprint;
        let held = match (f.rss_streams_after_load, f.streams_held) {
            (Some(rss), n) if n > 0 => format!("{} ({n} streams)", fmt_mib(Some(rss))),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {cpu} | {max} | {ttft} | {} | {held} | {} |",
            target.label(),
            added(|l| l.p50_us),
            added(|l| l.p99_us),
            fmt_mib(f.rss_ready),
            median(&f.ready_ms).map_or_else(|| "–".to_owned(), msf),
        );
    }
    let full = run.of(Target::SidecarFull);
    let measured: Vec<Target> = Target::PEERS.into_iter().filter(|p| run.of(*p).is_some()).collect();
    if let (Some(full), false) = (full, measured.is_empty()) {
        let _ = writeln!(
            out,
            "\nEach peer against the sidecar with the full feature path (above 1× the sidecar is ahead):\n"
        );
        let _ = writeln!(
            out,
            "| peer | its added p50 ÷ sidecar's | its added p99 ÷ sidecar's | its CPU per request ÷ sidecar's | \
             sidecar's max throughput ÷ its |\n|---|---|---|---|---|"
        );
        let added = |t: &TargetResults, pick: fn(&Load) -> f64| match (&t.one_client, &d.one_client) {
            (Some(l), Some(dl)) => pick(l) - pick(dl),
            _ => f64::NAN,
        };
        let cpu = |t: &TargetResults| {
            t.cpu_run
                .as_ref()
                .and_then(|l| l.cpu_us_per_request)
                .unwrap_or(f64::NAN)
        };
        let max = |t: Target| run.max_throughput(t).map_or(f64::NAN, |(_, r)| r);
        for p in measured {
            let Some(t) = run.of(p) else { continue };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                p.label(),
                ratio(added(t, |l| l.p50_us), added(full, |l| l.p50_us)),
                ratio(added(t, |l| l.p99_us), added(full, |l| l.p99_us)),
                ratio(cpu(t), cpu(full)),
                ratio(max(Target::SidecarFull), max(p)),
            );
        }
    }
    let _ = writeln!(out, "\nHow each peer ran:\n");
    for p in &run.peers {
        let name = p.version.clone().unwrap_or_else(|| p.target.label().to_owned());
        match &p.not_measured {
            None => {
                let _ = writeln!(out, "- **{name}**: {}.", p.setup);
            }
            Some(why) => {
                let _ = writeln!(out, "- **{}: not measured**: {why}", p.target.label());
            }
        }
    }
    out.push('\n');
}

/// One figure of the floor, the minimal route and the full path, and how to print it.
struct Split(String, f64, f64, f64, fn(f64) -> String);

/// Splits each cost of the full path into what forwarding itself costs (the floor), what the
/// sidecar's base pipeline adds (minimal − floor) and what the features add (full − minimal).
fn decomposition_section(out: &mut String, run: &Run) {
    let (Some(d), Some(f), Some(m), Some(u)) = (
        run.of(Target::Direct),
        run.of(Target::Floor),
        run.of(Target::SidecarMinimal),
        run.of(Target::SidecarFull),
    ) else {
        return;
    };
    let mut rows: Vec<Split> = Vec::new();
    let one = |t: &TargetResults, pick: fn(&Load) -> f64| t.one_client.as_ref().map_or(f64::NAN, pick);
    for (what, pick) in [
        (
            "added latency p50, one client",
            (|l: &Load| l.p50_us) as fn(&Load) -> f64,
        ),
        ("added latency p99, one client", |l: &Load| l.p99_us),
    ] {
        let base = one(d, pick);
        rows.push(Split(
            what.to_owned(),
            one(f, pick) - base,
            one(m, pick) - base,
            one(u, pick) - base,
            fmt_us,
        ));
    }
    let cpu = |t: &TargetResults| {
        t.cpu_run
            .as_ref()
            .and_then(|l| l.cpu_us_per_request)
            .unwrap_or(f64::NAN)
    };
    rows.push(Split("CPU per request".to_owned(), cpu(f), cpu(m), cpu(u), fmt_us));
    let ttft = |t: &TargetResults| t.streaming.as_ref().map_or(f64::NAN, |s| s.ttft_p50_us);
    rows.push(Split(
        "streaming: added time to first token".to_owned(),
        ttft(f) - ttft(d),
        ttft(m) - ttft(d),
        ttft(u) - ttft(d),
        fmt_us,
    ));
    let per_stream = |t: &TargetResults| {
        let fp = &t.footprint;
        match (fp.rss_streams, fp.rss_fresh, fp.streams_held) {
            (Some(with), Some(idle), n) if n > 0 => (with as f64 - idle as f64) / 1024.0 / n as f64,
            _ => f64::NAN,
        }
    };
    rows.push(Split(
        "memory per open stream (fresh process)".to_owned(),
        per_stream(f),
        per_stream(m),
        per_stream(u),
        |k| format!("{k:.1} KiB"),
    ));
    let _ = writeln!(
        out,
        "## Where the cost goes
"
    );
    let _ = writeln!(
        out,
        "Each cost of the full feature path split in three: what forwarding itself costs (the floor), what \
         the sidecar's base pipeline adds over the floor (minimal route − floor: parsing, route resolution, \
         the upstream client, accounting and the access log), and what the features add (full − minimal: \
         rules, limits, budget, pricing, a second backend).\n"
    );
    let _ = writeln!(
        out,
        "| figure | forwarding (floor) | + base pipeline | + features | = full path |\n|---|---|---|---|---|"
    );
    for Split(what, floor, minimal, full, unit) in rows {
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} | {} |",
            unit(floor),
            unit(minimal - floor),
            unit(full - minimal),
            unit(full)
        );
    }
    out.push('\n');
}

fn one_client_section(out: &mut String, run: &Run) {
    let Some(d) = run.of(Target::Direct).and_then(|t| t.one_client.clone()) else {
        return;
    };
    let f = run.of(Target::Floor).and_then(|t| t.one_client.clone());
    let _ = writeln!(out, "## One client at a time (non-streamed)\n");
    let _ = writeln!(
        out,
        "| target | req/s | p50 | p90 | p99 | added p50 | added p90 | added p99 | p50 ÷ direct | added p50 ÷ floor's | added p99 ÷ floor's |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    for t in &run.targets {
        let Some(l) = &t.one_client else { continue };
        let added = |pick: fn(&Load) -> f64| pick(l) - pick(&d);
        let floor_added = |pick: fn(&Load) -> f64| match (&f, t.target) {
            (_, Target::Direct) | (None, _) => f64::NAN,
            (Some(f), _) => pick(f) - pick(&d),
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.target.label(),
            l.rps,
            fmt_us(l.p50_us),
            fmt_us(l.p90_us),
            fmt_us(l.p99_us),
            fmt_us(added(|l| l.p50_us)),
            fmt_us(added(|l| l.p90_us)),
            fmt_us(added(|l| l.p99_us)),
            ratio(l.p50_us, d.p50_us),
            ratio(added(|l| l.p50_us), floor_added(|l| l.p50_us)),
            ratio(added(|l| l.p99_us), floor_added(|l| l.p99_us)),
        );
    }
    out.push('\n');
}

fn rates_section(out: &mut String, run: &Run) {
    let _ = writeln!(out, "## Fixed offered rates (open loop, `--latency-correction`)\n");
    let _ = writeln!(
        out,
        "| rate | target | achieved req/s | p50 | p99 | added p50 | added p99 | p99 ÷ direct | added p99 ÷ floor's |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    let rates: Vec<u32> = run
        .of(Target::Direct)
        .map(|t| t.rates.iter().map(|(r, _)| *r).collect())
        .unwrap_or_default();
    for rate in rates {
        let at = |target: Target| {
            run.of(target)
                .and_then(|t| t.rates.iter().find(|(r, _)| *r == rate).map(|(_, l)| l.clone()))
        };
        let (Some(d), f) = (at(Target::Direct), at(Target::Floor)) else {
            continue;
        };
        for target in run.targets.iter().map(|t| t.target) {
            let Some(l) = at(target) else { continue };
            let floor_added = match (&f, target) {
                (_, Target::Direct) | (None, _) => f64::NAN,
                (Some(f), _) => f.p99_us - d.p99_us,
            };
            let _ = writeln!(
                out,
                "| {rate}/s | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
                target.label(),
                l.rps,
                fmt_us(l.p50_us),
                fmt_us(l.p99_us),
                fmt_us(l.p50_us - d.p50_us),
                fmt_us(l.p99_us - d.p99_us),
                ratio(l.p99_us, d.p99_us),
                ratio(l.p99_us - d.p99_us, floor_added),
            );
        }
    }
    out.push('\n');
}

fn concurrency_section(out: &mut String, run: &Run) {
    let _ = writeln!(out, "## Fixed concurrency (closed loop): throughput\n");
    let _ = writeln!(
        out,
        "| connections | target | req/s | p50 | p99 | req/s ÷ direct | req/s ÷ floor | proxy CPU per request |\n\
         |---|---|---|---|---|---|---|---|"
    );
    let levels: Vec<u32> = run
        .of(Target::Direct)
        .map(|t| t.concurrency.iter().map(|(c, _)| *c).collect())
        .unwrap_or_default();
    for c in levels {
        let at = |target: Target| {
            run.of(target)
                .and_then(|t| t.concurrency.iter().find(|(n, _)| *n == c).map(|(_, l)| l.clone()))
        };
        let d = at(Target::Direct).map_or(f64::NAN, |l| l.rps);
        let f = at(Target::Floor).map_or(f64::NAN, |l| l.rps);
        for target in run.targets.iter().map(|t| t.target) {
            let Some(l) = at(target) else { continue };
            let cpu = if target == Target::Direct {
                "–".to_owned()
            } else {
                l.cpu_us_per_request.map_or_else(|| "–".to_owned(), fmt_us)
            };
            let _ = writeln!(
                out,
                "| {c} | {} | {:.0} | {} | {} | {} | {} | {cpu} |",
                target.label(),
                l.rps,
                fmt_us(l.p50_us),
                fmt_us(l.p99_us),
                ratio(l.rps, d),
                ratio(l.rps, f),
            );
        }
    }
    out.push('\n');
}

fn cpu_section(out: &mut String, run: &Run) {
    let _ = writeln!(
        out,
        "## CPU per request (the proxy's process only, a peer's whole process tree; from `/proc/<pid>/stat`)\n"
    );
    let _ = writeln!(
        out,
        "| target | CPU per request, one client | CPU per request, fixed count (a peer: fixed time) | ÷ floor | upstream's CPU per request (same run) |\n\
         |---|---|---|---|---|"
    );
    let cpu = |t: &TargetResults| t.cpu_run.as_ref().and_then(|l| l.cpu_us_per_request);
    let floor = run.of(Target::Floor).and_then(cpu).unwrap_or(f64::NAN);
    for t in &run.targets {
        let one = t.one_client.as_ref().and_then(|l| l.cpu_us_per_request);
        let fixed = cpu(t);
        let up = t.cpu_run.as_ref().and_then(|l| l.upstream_cpu_us_per_request);
        let label = if t.target == Target::Direct {
            "direct (the upstream itself)"
        } else {
            t.target.label()
        };
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} |",
            one.map_or_else(|| "–".to_owned(), fmt_us),
            fixed.map_or_else(|| "–".to_owned(), fmt_us),
            if t.target == Target::Direct {
                "–".to_owned()
            } else {
                fixed.map_or_else(|| "–".to_owned(), |x| ratio(x, floor))
            },
            up.map_or_else(|| "–".to_owned(), fmt_us),
        );
    }
    let _ = writeln!(
        out,
        "\nCPU time comes in clock ticks (10 ms each); over the fixed-count run that is a resolution of about \
         ±1 tick ÷ the requests. One client pays a wake-up per request that concurrency amortizes.\n"
    );
}

fn streaming_section(out: &mut String, run: &Run) {
    let Some(d) = run.of(Target::Direct).and_then(|t| t.streaming.clone()) else {
        return;
    };
    let _ = writeln!(
        out,
        "## Streaming ({STREAM_CHUNKS}-chunk SSE answers sent at once by the upstream, one stream at a time)\n"
    );
    let _ = writeln!(
        out,
        "| target | streams | events seen | TTFT p50 | TTFT p99 | whole stream p50 | added TTFT p50 | added per chunk |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for t in &run.targets {
        let Some(s) = &t.streaming else { continue };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            t.target.label(),
            s.streams,
            s.events,
            fmt_us(s.ttft_p50_us),
            fmt_us(s.ttft_p99_us),
            fmt_us(s.total_p50_us),
            fmt_us(s.ttft_p50_us - d.ttft_p50_us),
            fmt_us(added_per_chunk(s, &d)),
        );
    }
    let _ = writeln!(
        out,
        "\nTTFT is the time from sending the request to the first body bytes holding an event. Per chunk = \
         (whole stream − TTFT) less the direct call's, over the {} chunks after the first. The direct \
         upstream writes its chunks back to back, so this is the proxy's processing cost per chunk, not a \
         pacing delay.\n",
        STREAM_CHUNKS - 1
    );
}

fn memory_section(out: &mut String, run: &Run) {
    let _ = writeln!(out, "## Memory and start-up\n");
    let _ = writeln!(
        out,
        "| target | RSS ready | RSS after the load runs | open streams | RSS with them open (fresh process) | \
         RSS with them open (after the load runs) | start to ready (median / max) |\n\
         |---|---|---|---|---|---|---|"
    );
    for t in &run.targets {
        let f = &t.footprint;
        let ready = match median(&f.ready_ms) {
            Some(m) => format!(
                "{} / {} ({} starts)",
                msf(m),
                msf(f.ready_ms.iter().copied().fold(f64::MIN, f64::max)),
                f.ready_ms.len()
            ),
            None => "–".to_owned(),
        };
        let label = if t.target == Target::Direct {
            "upstream"
        } else {
            t.target.label()
        };
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {ready} |",
            fmt_mib(f.rss_ready),
            fmt_mib(f.rss_after_load),
            if f.streams_held > 0 {
                f.streams_held.to_string()
            } else {
                "–".to_owned()
            },
            fmt_mib(f.rss_streams),
            fmt_mib(f.rss_streams_after_load),
        );
    }
    let _ = writeln!(
        out,
        "\nStart to ready: from spawning the process to the admin `/readyz` answering 200, polled every 0.5 ms \
         (a peer: once, to its own health or readiness endpoint). A peer's streams are held through the process \
         that ran the load; its RSS is summed over its process tree.\n"
    );
}

fn setup_section(out: &mut String, run: &Run) {
    let _ = writeln!(out, "## How it was measured\n");
    let _ = writeln!(
        out,
        "- Targets: **direct** (client → upstream), **floor** (client → `bench-floor` → upstream), \
         **sidecar (minimal)** (one `openai-compatible` backend, nothing else) and **sidecar (full)** (two \
         backends with pricing and limits, two content rules evaluated on every request, per-user, route and \
         backend limits set far above the load, a hard `Budget` reserved and settled per request, metrics). \
         Every request carries `x-sluice-user`. The manifests are written by `bench-driver` \
         (`tests/bench/src/driver/manifests.rs`)."
    );
    let _ = writeln!(
        out,
        "- The request: a two-message chat completion (`max_tokens: 32`); the upstream answers a fixed \
         ~400-byte `chat.completion` with usage."
    );
    for s in &run.settings {
        let _ = writeln!(out, "- {s}");
    }
    let _ = writeln!(
        out,
        "- Percentiles are oha's (streaming: the driver's own client); *added* latency is a difference of \
         percentiles measured in the same run, not a percentile of differences."
    );
    if !run.notes.is_empty() {
        let _ = writeln!(out, "\nObserved during the run:\n");
        for n in &run.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    out.push('\n');
}

/// The operator fan-out section: `fanout.md` as `bench-fanout` wrote it, or why it is missing.
fn fanout_section(out: &mut String, extras: &Extras) {
    match &extras.fanout_md {
        Some(md) => {
            if !md.trim_start().starts_with('#') {
                let _ = writeln!(out, "## Operator fan-out\n");
            }
            out.push_str(md.trim_end());
            out.push_str("\n\n");
        }
        None => {
            let _ = writeln!(out, "## Operator fan-out\n");
            let _ = writeln!(
                out,
                "Not measured: {}.\n",
                extras.fanout_missing.as_deref().unwrap_or("`bench-fanout` was not run")
            );
        }
    }
}

fn budget_row(extras: &Extras) -> String {
    let what = "budget overspend, 1,000 req/s over 50 sidecars, hard limit";
    let goal = "≤ the allowance bound";
    let Some(BudgetHeadline {
        sidecars,
        rate,
        overspend: Some(overspend),
        bound: Some(bound),
        ..
    }) = &extras.budget
    else {
        return format!("| {what} | {goal} | – | not measured: {} |", budget_missing(extras));
    };
    let micros = |usd: &str| usd.parse::<sluice_crds::MicroUsd>().ok();
    let verdict = match (micros(overspend), micros(bound)) {
        (Some(o), Some(b)) if o <= b => "met",
        (Some(_), Some(_)) => "missed: past the bound",
        _ => "unreadable figures",
    };
    let size = match (sidecars, rate) {
        (Some(50), Some(1_000)) => String::new(),
        (Some(n), Some(r)) => format!(" ({n} sidecars at {r} req/s)"),
        _ => String::new(),
    };
    format!("| {what} | {goal} | ${overspend} over, bound ${bound}{size} | {verdict} |")
}

/// The shared-budget section: `budget.md` as `bench-budget` wrote it, or why it is missing.
fn budget_section(out: &mut String, extras: &Extras) {
    match &extras.budget_md {
        Some(md) => {
            out.push_str(md.trim_end());
            out.push_str("\n\n");
        }
        None => {
            let _ = writeln!(out, "## Shared budget\n");
            let _ = writeln!(out, "Not measured: {}.\n", budget_missing(extras));
        }
    }
}

fn budget_missing(extras: &Extras) -> &str {
    extras.budget_missing.as_deref().unwrap_or("`bench-budget` was not run")
}

/// What this run did not measure, and why: generated from the run, so it stays true.
fn missing_section(out: &mut String, run: &Run, extras: &Extras) {
    let mut missing: Vec<String> = Vec::new();
    if run.peers.is_empty() {
        missing.push(
            "**Peers** (LiteLLM proxy, Portkey's gateway, onwards): measured by `tests/bench/run --peers` only; \
             this run was made without it, so the throughput target is unmeasured."
                .to_owned(),
        );
    }
    for p in &run.peers {
        if let Some(why) = &p.not_measured {
            missing.push(format!("**{}**: not measured: {why}.", p.target.label()));
        } else if let Some(t) = run.of(p.target) {
            if t.footprint.rss_streams_after_load.is_none() {
                missing.push(format!(
                    "**{}**: RSS with open streams not measured (see the notes of the run above).",
                    p.target.label()
                ));
            }
            if t.streaming.is_none() {
                missing.push(format!(
                    "**{}**: streaming not measured (see the notes of the run above).",
                    p.target.label()
                ));
            }
        }
    }
    if run.peers.iter().any(|p| p.not_measured.is_none()) {
        missing.push(
            "**Peers' memory with open streams on a fresh process** and their start-up over several starts: each \
             peer is started once, and its streams are held after its load runs (restarting LiteLLM alone \
             takes seconds); the sidecar's fresh-process figure has no peer counterpart."
                .to_owned(),
        );
    }
    if extras.fanout_md.is_none() {
        missing.push(format!(
            "**Operator fan-out**: not measured: {}.",
            extras.fanout_missing.as_deref().unwrap_or("`bench-fanout` was not run")
        ));
    }
    if extras.budget_md.is_none() {
        missing.push(format!("**Shared budget**: not measured: {}.", budget_missing(extras)));
    }
    if extras.profile.is_none() {
        missing.push(
            "**Profile and before/after** of the request path (issue 9, item 7): `tests/bench/profile.md` was not \
             there when this report was written."
                .to_owned(),
        );
    }
    let _ = writeln!(out, "## Not measured in this run\n");
    if missing.is_empty() {
        let _ = writeln!(out, "Nothing of issue 9: every figure above comes from this run.\n");
    }
    for m in missing {
        let _ = writeln!(out, "- {m}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::results::{Machine, PeerStatus, Streaming};

    fn load(rps: f64, p50: f64, cpu: f64) -> Load {
        Load {
            rps,
            p50_us: p50,
            p90_us: p50 * 1.5,
            p99_us: p50 * 2.0,
            ok: 1000,
            failed: 0,
            cpu_us_per_request: Some(cpu),
            upstream_cpu_us_per_request: Some(4.0),
        }
    }

    fn target(t: Target, rps: f64, p50: f64, cpu: f64) -> TargetResults {
        let mut r = TargetResults::new(t);
        r.one_client = Some(load(rps, p50, cpu));
        r.rates = vec![(1_000, load(1_000.0, p50, cpu))];
        r.concurrency = vec![(32, load(rps * 2.0, p50, cpu)), (256, load(rps, p50, cpu))];
        r.cpu_run = Some(load(rps, p50, cpu));
        r.streaming = Some(Streaming {
            streams: 10,
            ttft_p50_us: p50,
            ttft_p99_us: p50,
            total_p50_us: p50 * 3.0,
            total_p99_us: p50 * 4.0,
            events: 102,
        });
        r
    }

    pub(super) fn run(peers: Vec<PeerStatus>, extra: Vec<TargetResults>) -> Run {
        let mut targets = vec![
            target(Target::Direct, 50_000.0, 10.0, 4.0),
            target(Target::Floor, 30_000.0, 20.0, 9.0),
            target(Target::SidecarMinimal, 20_000.0, 40.0, 25.0),
            target(Target::SidecarFull, 20_000.0, 45.0, 27.0),
        ];
        targets.extend(extra);
        Run {
            date: "2026-11-22T00:00:00Z".into(),
            quick: false,
            machine: Machine::default(),
            seconds: 1.0,
            settings: Vec::new(),
            targets,
            notes: Vec::new(),
            peers,
            apis: Vec::new(),
            tracing: None,
        }
    }

    fn status(t: Target, not_measured: Option<&str>) -> PeerStatus {
        PeerStatus {
            target: t,
            version: not_measured.is_none().then(|| "x 1.0".to_owned()),
            setup: "set up".into(),
            not_measured: not_measured.map(str::to_owned),
        }
    }

    #[test]
    fn the_throughput_target_compares_with_onwards() {
        let r = run(
            vec![
                status(Target::Litellm, None),
                status(Target::Portkey, Some("install failed: npm")),
                status(Target::Onwards, None),
            ],
            vec![
                target(Target::Litellm, 100.0, 15_000.0, 15_000.0),
                target(Target::Onwards, 10_000.0, 130.0, 60.0),
            ],
        );
        let md = markdown(&r, None, &Extras::default());
        // Sidecar 40,000 at c=32 against onwards' 20,000: 2.00×.
        assert!(md.contains(
            "| max throughput ÷ onwards' (best of the fixed-concurrency runs) | ≥ 1.50× | 2.00× (40000 req/s at 32 connections; onwards 20000 req/s) | met |"
        ));
        assert!(md.contains("## Sluice beside the peers"));
        assert!(md.contains("- **Portkey gateway: not measured**: install failed: npm"));
        assert!(md.contains("**Portkey gateway**: not measured: install failed: npm."));
        assert!(md.contains("| LiteLLM proxy | "));
        assert!(md.contains("**Operator fan-out**: not measured"));
        assert!(md.contains("**Shared budget**: not measured: `bench-budget` was not run."));
    }

    #[test]
    fn without_peers_nothing_pretends_to_be_measured() {
        let extras = Extras {
            fanout_md: Some("## Operator fan-out\n\nfigures\n".into()),
            fanout: Some(FanoutHeadline {
                sidecars: Some(5_000),
                acked_p50_ms: Some(120.0),
                acked_p99_ms: Some(480.0),
                acked_max_ms: Some(2_200.0),
            }),
            fanout_missing: None,
            budget_md: Some("## Shared budget: 50 sidecars at 1000 req/s\n\n| overspend | $0 |\n".into()),
            budget: Some(BudgetHeadline {
                sidecars: Some(50),
                rate: Some(1_000),
                overspend: Some("0.000000".into()),
                bound: Some("2.700000".into()),
                route: None,
            }),
            budget_missing: None,
            profile: Some("## Profile\n\nbefore/after\n".into()),
        };
        let md = markdown(&run(Vec::new(), Vec::new()), None, &extras);
        assert!(md.contains("not measured: peers are measured by `tests/bench/run --peers` only"));
        assert!(md.contains("p50 120 ms, p99 480 ms, max 2200 ms | missed by 200 ms (1.10×); bounded by"));
        assert!(md.contains("## Profile\n\nbefore/after\n"));
        assert!(!md.contains("## Sluice beside the peers"));
        assert!(!md.contains("**Operator fan-out**: not measured"));
        assert!(md.contains("## Shared budget: 50 sidecars at 1000 req/s\n\n| overspend | $0 |\n"));
        assert!(!md.contains("**Shared budget**: not measured"));
        assert!(md.contains("| budget overspend, 1,000 req/s over 50 sidecars, hard limit | ≤ the allowance bound | $0.000000 over, bound $2.700000 | met |"));
    }
}
