//! The soak's report: a markdown section (`## Soak`) and the same figures as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::client::{KindTally, Load};
use super::manifest::{self, UserLimit};
use super::sample::{RssVerdict, Sample};
use super::{Kind, mib};

/// One row of the accounting table.
#[derive(Debug, Clone, Serialize)]
pub struct CountRow {
    /// The kind.
    pub kind: Kind,
    /// The outcome (`all`: every outcome).
    pub outcome: String,
    /// Answers the client saw.
    pub client: u64,
    /// `sluice_requests_total` of the kind's route and this outcome.
    pub sidecar: u64,
    /// Requests the upstream received, where the row has an upstream count.
    pub upstream: Option<u64>,
    /// Whether the counts agree.
    pub agrees: bool,
}

/// The budget against the costs the client saw, micro-dollars.
#[derive(Debug, Clone, Serialize)]
pub struct SpendCheck {
    /// `spentUSD` of `/budgets`.
    pub budget_spent: u64,
    /// `reservedUSD` of `/budgets` after the run (nothing in flight: zero).
    pub budget_reserved: u64,
    /// `limitUSD`.
    pub budget_limit: u64,
    /// Σ `x-sluice-cost-usd` of plain answers.
    pub plain_client: u64,
    /// Σ of streams' costs from their usage chunks at the route's prices.
    pub stream_client: u64,
    /// Both.
    pub client_total: u64,
    /// `sluice_spend_microdollars_total` of the plain route.
    pub plain_metric: u64,
    /// The same of the streamed route.
    pub stream_metric: u64,
    /// `ok` plain answers without a cost header.
    pub ok_without_cost: u64,
    /// Whether budget, metrics and client agree exactly (and nothing is left reserved).
    pub agrees: bool,
}

/// Everything one soak measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it ran (UTC).
    pub date: String,
    /// The commit measured.
    pub commit: String,
    /// Whether tracked files differed from it when the run started.
    pub uncommitted_changes: bool,
    /// Cores the machine offers.
    pub cores: usize,
    /// `/proc/loadavg` at the end.
    pub load_average_after: String,
    /// The command that ran it.
    pub command: String,
    /// The load offered.
    pub load: Load,
    /// Chunks per stream.
    pub stream_chunks: u32,
    /// Pause between chunks, microseconds.
    pub stream_delay_us: u64,
    /// Per-user limit of the plain route.
    pub plain_user_limit: UserLimit,
    /// Per-user limit of the streamed route.
    pub stream_user_limit: UserLimit,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Time between samples, seconds.
    pub sample_every_s: f64,
    /// How long the load ran, last answer included, seconds.
    pub load_seconds: f64,
    /// How long the sidecar's counters took to settle after the last answer, seconds.
    pub settled_after_s: f64,
    /// How long its descriptors took to come back down once every connection closed, seconds.
    pub fds_settle_s: f64,
    /// What the client saw of plain requests.
    pub plain: KindTally,
    /// What the client saw of streamed requests.
    pub stream: KindTally,
    /// The sidecar ready and idle, before the load.
    pub before: Sample,
    /// Samples under load.
    pub samples: Vec<Sample>,
    /// Right after the last answer, connections still open.
    pub after_load: Sample,
    /// At the end: every connection closed.
    pub after: Sample,
    /// Memory after the warm-up.
    pub rss: Option<RssVerdict>,
    /// The accounting table.
    pub counts: Vec<CountRow>,
    /// Streams the upstream sent to their end.
    pub upstream_streams_finished: u64,
    /// The spend check.
    pub spend: SpendCheck,
    /// Why the soak failed; empty when it passed.
    pub failures: Vec<String>,
}

impl Report {
    fn tally(&self, kind: Kind) -> &KindTally {
        match kind {
            Kind::Plain => &self.plain,
            Kind::Stream => &self.stream,
        }
    }
}

fn usd(micros: u64) -> String {
    format!("${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn yes(ok: bool) -> &'static str {
    if ok { "yes" } else { "**NO**" }
}

fn percentile_ms(sorted_us: &[u32], q: f64) -> String {
    if sorted_us.is_empty() {
        return "—".into();
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    format!("{:.2}", f64::from(sorted_us[rank - 1]) / 1000.0)
}

/// The `## Soak` section.
pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let verdict = if r.failures.is_empty() { "passed" } else { "FAILED" };
    let _ = writeln!(md, "## Soak\n");
    let _ = writeln!(
        md,
        "**{verdict}** — {} UTC, commit `{}`{}, {} cores shared with other work (load average after: {}).\n",
        r.date,
        r.commit,
        if r.uncommitted_changes {
            " with uncommitted changes of the shared tree"
        } else {
            ""
        },
        r.cores,
        r.load_average_after
    );
    let _ = writeln!(md, "Command:\n\n```sh\n{}\n```\n", r.command);
    let l = &r.load;
    let _ = writeln!(
        md,
        "The real sidecar (release build, `--manifests`, access log at `info` to a file) in front of the \
         benchmark upstream served in-process and counting per route. Load for {:.0} s (offered {:?}): \
         **{} plain requests/s + {} streams/s** of {} chunks {} µs apart, at most {} in flight per kind \
         (a tick that finds the bound reached sends nothing and is counted as not sent). Requests rotate \
         over {} users; every {}th request of each kind is one greedy user's, which a per-user limit \
         ({} requests/min on the plain route, {} on the streamed one) partly refuses, so refusals are \
         counted too. Both routes are priced (${}/${} per million input/output tokens) and spend one hard \
         Budget of ${} that never runs out, so every request reserves and settles. Samples of the \
         sidecar's `VmRSS`, `/proc/<pid>/fd` and threads every {:.0} s; the first {:.0} s are the warm-up.\n",
        r.load_seconds,
        l.duration,
        l.plain_rate,
        l.stream_rate,
        r.stream_chunks,
        r.stream_delay_us,
        l.max_in_flight,
        l.users,
        l.greedy_every,
        r.plain_user_limit.requests_per_minute,
        r.stream_user_limit.requests_per_minute,
        manifest::INPUT_PER_MTOK,
        manifest::OUTPUT_PER_MTOK,
        manifest::BUDGET_LIMIT_USD,
        r.sample_every_s,
        r.warmup_s,
    );

    let _ = writeln!(md, "### Requests by kind\n");
    let _ = writeln!(
        md,
        "| kind | sent | not sent (bound) | achieved rate | outcomes | ok p50 ms | ok p99 ms | ok max ms |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---|---:|---:|---:|");
    for kind in Kind::ALL {
        let t = r.tally(kind);
        let outcomes: Vec<String> = t.outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1}/s | {} | {} | {} | {} |",
            kind.label(),
            t.sent,
            t.not_sent,
            t.sent as f64 / r.load.duration.as_secs_f64().max(1e-9),
            outcomes.join(", "),
            percentile_ms(&t.latencies_us, 0.50),
            percentile_ms(&t.latencies_us, 0.99),
            percentile_ms(&t.latencies_us, 1.0),
        );
    }

    let _ = writeln!(md, "\n### Accounting: client = sidecar `/metrics` = upstream\n");
    let _ = writeln!(
        md,
        "Sidecar: `sluice_requests_total` of the kind's route (`soak/plain`, `soak/stream`) by `outcome`, read \
         from the admin `/metrics` after the last answer ({:.1} s to settle). Upstream: requests that reached \
         its `/plain/…` or `/stream/…` path; the refused ones never reach it.\n",
        r.settled_after_s
    );
    let _ = writeln!(md, "| kind | outcome | client | sidecar | upstream | agree |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|---|");
    for row in &r.counts {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            row.kind.label(),
            row.outcome,
            row.client,
            row.sidecar,
            row.upstream.map_or_else(|| "—".into(), |u| u.to_string()),
            yes(row.agrees)
        );
    }
    let _ = writeln!(
        md,
        "\nStreams the upstream sent to their last event: {} of {} received.\n",
        r.upstream_streams_finished,
        r.counts
            .iter()
            .find(|c| c.kind == Kind::Stream && c.outcome == "all")
            .and_then(|c| c.upstream)
            .unwrap_or(0)
    );

    let s = &r.spend;
    let _ = writeln!(md, "### Spend: budget = Σ per-request costs (micro-dollars, exact)\n");
    let _ = writeln!(md, "| | micro-dollars | USD |");
    let _ = writeln!(md, "|---|---:|---:|");
    for (what, v) in [
        ("client: Σ `x-sluice-cost-usd` of plain answers", s.plain_client),
        ("client: Σ cost of streams from their usage chunk", s.stream_client),
        ("client: total", s.client_total),
        ("sidecar: `spentUSD` of admin `/budgets`", s.budget_spent),
        ("sidecar: `reservedUSD` after the run", s.budget_reserved),
        (
            "sidecar: `sluice_spend_microdollars_total`, plain route",
            s.plain_metric,
        ),
        (
            "sidecar: `sluice_spend_microdollars_total`, streamed route",
            s.stream_metric,
        ),
    ] {
        let _ = writeln!(md, "| {what} | {v} | {} |", usd(v));
    }
    let seen = |t: &KindTally| -> String {
        let v: Vec<String> = t.costs_seen.iter().map(|(c, n)| format!("{c} µ$ × {n}")).collect();
        v.join(", ")
    };
    let _ = writeln!(
        md,
        "\nAgree: {}. Per-request costs seen: plain {}; streams {}. A streamed answer carries no \
         `x-sluice-cost-usd` (its headers leave before its usage is known; {} did), so the client prices \
         its usage chunk (`stream_options.include_usage`) at the route's prices, rounded to the nearest \
         micro-dollar per request as the sidecar does. Plain `ok` answers without the header: {}.\n",
        yes(s.agrees),
        seen(&r.plain),
        seen(&r.stream),
        r.stream.stream_cost_headers,
        s.ok_without_cost
    );

    let _ = writeln!(md, "### Memory, descriptors, threads of the sidecar\n");
    match &r.rss {
        Some(v) => {
            let _ = writeln!(
                md,
                "RSS after the warm-up ({} samples): first {:.1} MiB, min {:.1}, max {:.1}, last {:.1} MiB; \
                 **growth (last − first) {:+.2} MiB**, peak growth {:+.2} MiB, least-squares slope {:+.1} KiB/min. \
                 Bound: growth ≤ {:.1} MiB — **{}**.\n",
                v.samples,
                mib(v.first),
                mib(v.min),
                mib(v.max),
                mib(v.last),
                v.growth as f64 / 1048576.0,
                v.peak_growth as f64 / 1048576.0,
                v.slope_per_min / 1024.0,
                mib(v.bound),
                if v.within { "within" } else { "EXCEEDED" }
            );
            let after: Vec<&Sample> = r.samples.iter().filter(|s| s.at_s >= r.warmup_s).collect();
            if let (Some(first), Some(last)) = (after.first(), after.last()) {
                let answers = last.finished.saturating_sub(first.finished);
                let _ = writeln!(
                    md,
                    "Between those samples the sidecar answered {answers} requests: memory kept at {:.0} bytes per \
                     request or more would have exceeded the bound.\n",
                    v.bound as f64 / answers.max(1) as f64
                );
            }
        }
        None => {
            let _ = writeln!(md, "RSS: no sample after the warm-up.\n");
        }
    }
    let max_fds = r.samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let max_threads = r.samples.iter().map(|s| s.threads).max().unwrap_or(0);
    let _ = writeln!(md, "| moment | RSS MiB | fds | threads |");
    let _ = writeln!(md, "|---|---:|---:|---:|");
    let _ = writeln!(
        md,
        "| ready, idle, before the load | {:.1} | {} | {} |",
        mib(r.before.rss),
        r.before.fds,
        r.before.threads
    );
    let _ = writeln!(
        md,
        "| under load: highest of the samples | {:.1} | {max_fds} | {max_threads} |",
        mib(r.samples.iter().map(|s| s.rss).max().unwrap_or(0))
    );
    let _ = writeln!(
        md,
        "| after the last answer, connections open | {:.1} | {} | {} |",
        mib(r.after_load.rss),
        r.after_load.fds,
        r.after_load.threads
    );
    let _ = writeln!(
        md,
        "| end: client and upstream connections closed ({:.1} s later) | {:.1} | {} | {} |",
        r.fds_settle_s,
        mib(r.after.rss),
        r.after.fds,
        r.after.threads
    );
    let _ = writeln!(
        md,
        "\nDescriptors at the end ≤ at the start: **{}**.\n",
        yes(r.after.fds <= r.before.fds)
    );
    let _ = writeln!(
        md,
        "<details><summary>Every sample</summary>\n\n| s | RSS MiB | fds | threads | answers finished | in flight |"
    );
    let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|");
    for s in &r.samples {
        let _ = writeln!(
            md,
            "| {:.0} | {:.2} | {} | {} | {} | {} |",
            s.at_s,
            mib(s.rss),
            s.fds,
            s.threads,
            s.finished,
            s.in_flight
        );
    }
    let _ = writeln!(md, "\n</details>\n");
    if r.failures.is_empty() {
        let _ = writeln!(
            md,
            "Verdict: every request accounted for, spend exact, no descriptor leak, memory within the bound."
        );
    } else {
        let _ = writeln!(md, "Verdict: **failed**:\n");
        for f in &r.failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_are_written_with_six_decimals() {
        assert_eq!(usd(62), "$0.000062");
        assert_eq!(usd(12_500_000), "$12.500000");
    }

    #[test]
    fn percentiles_of_sorted_microseconds() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.5), "50.00");
        assert_eq!(percentile_ms(&v, 1.0), "100.00");
        assert_eq!(percentile_ms(&[], 0.5), "—");
    }
}
