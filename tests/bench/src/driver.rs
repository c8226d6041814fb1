//! The driver: starts the upstream, the floor and two sidecars, loads each the same way in turn,
//! and collects a [`Run`].
//!
//! Every scenario visits the targets one after another (direct, floor, minimal sidecar, full
//! sidecar) so that a change in background load touches all of them alike.

pub mod apis;
pub mod machine;
pub mod manifests;
pub mod oha;
pub mod peers;
pub mod procs;
pub mod report;
pub mod results;
pub mod streams;
mod tracing;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use self::apis::{Api, RequestKind};
use self::manifests::Features;
use self::oha::{Oha, Shape};
use self::procs::{Proc, Sidecar};
use self::results::{Load, PeerStatus, Run, Streaming, Target, TargetResults, Tracing};

/// What to run and where to put it.
#[derive(Debug, Clone)]
pub struct Options {
    /// The short run (about a minute) instead of the full one.
    pub quick: bool,
    /// Directory holding `bench-upstream`, `bench-floor` and `sluice-sidecar` (release builds).
    pub bin_dir: PathBuf,
    /// The `oha` binary.
    pub oha: PathBuf,
    /// The repository, for the commit measured.
    pub repo: PathBuf,
    /// Scratch space: manifests, state, logs.
    pub work_dir: PathBuf,
    /// Slow streams held open at once for the memory figure.
    pub streams_held: usize,
    /// Where `tests/bench/run --peers` installed the peers; `None` measures none.
    pub peers_dir: Option<PathBuf>,
}

/// Durations and counts of one run.
#[derive(Debug, Clone)]
struct Plan {
    warmup_requests: u64,
    one_client: Duration,
    rates: Vec<(u32, u32)>,
    rate_duration: Duration,
    concurrency: Vec<u32>,
    concurrency_duration: Duration,
    cpu_requests: u64,
    cpu_connections: u32,
    stream_warmup: usize,
    streams: usize,
    ready_starts: usize,
    /// A peer's warm-up, as a time at 8 connections (LiteLLM answers ~100 req/s, not 20,000).
    peer_warmup: Duration,
    /// A peer's CPU run, as a time at `cpu_connections`.
    peer_cpu: Duration,
    peer_stream_warmup: usize,
    peer_streams: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let s = Duration::from_secs;
        // (rate, connections): enough connections to carry the rate while the proxy keeps up.
        let rates = vec![(100, 8), (1_000, 32), (5_000, 64)];
        if quick {
            Self {
                warmup_requests: 1_000,
                one_client: s(2),
                rates,
                rate_duration: s(2),
                concurrency: vec![32, 256],
                concurrency_duration: s(2),
                cpu_requests: 5_000,
                cpu_connections: 16,
                stream_warmup: 10,
                streams: 50,
                ready_starts: 3,
                peer_warmup: s(1),
                peer_cpu: s(2),
                peer_stream_warmup: 5,
                peer_streams: 20,
            }
        } else {
            Self {
                warmup_requests: 5_000,
                one_client: s(15),
                rates,
                rate_duration: s(10),
                concurrency: vec![32, 256],
                concurrency_duration: s(10),
                cpu_requests: 40_000,
                cpu_connections: 16,
                stream_warmup: 50,
                streams: 500,
                ready_starts: 10,
                peer_warmup: s(3),
                peer_cpu: s(5),
                peer_stream_warmup: 10,
                peer_streams: 100,
            }
        }
    }

    fn describe(&self, peers: bool) -> Vec<String> {
        let rates: Vec<String> = self
            .rates
            .iter()
            .map(|(r, c)| format!("{r}/s over {c} connections"))
            .collect();
        vec![
            format!("warm-up: {} requests per target at 8 connections", self.warmup_requests),
            format!("one client: `oha -c 1` for {:?} per target", self.one_client),
            format!(
                "fixed rates with `--latency-correction`, {:?} each: {}",
                self.rate_duration,
                rates.join(", ")
            ),
            format!(
                "fixed concurrency {:?}, {:?} each",
                self.concurrency, self.concurrency_duration
            ),
            format!(
                "CPU: {} requests at {} connections per target, `/proc/<pid>/stat` utime+stime before and after",
                self.cpu_requests, self.cpu_connections
            ),
            format!(
                "streaming: {} streams of {} chunks one at a time on one connection, after {} warm-up streams",
                self.streams,
                manifests::STREAM_CHUNKS,
                self.stream_warmup
            ),
            format!(
                "start-to-ready: {} starts of each sidecar configuration",
                self.ready_starts
            ),
        ]
        .into_iter()
        .chain(peers.then(|| {
            format!(
                "peers: the same one-client, fixed-rate and fixed-concurrency runs, visited in turn with the \
                 other targets; their warm-up is {:?} at 8 connections and their CPU run {:?} at {} connections \
                 (a count of requests would take minutes through LiteLLM); {} streams after {} warm-up streams; \
                 start to ready once; CPU and RSS summed over the peer's process tree",
                self.peer_warmup, self.peer_cpu, self.cpu_connections, self.peer_streams, self.peer_stream_warmup
            )
        }))
        .collect()
    }
}

/// One process under load and where to reach it.
#[derive(Debug)]
struct Endpoint {
    target: Target,
    addr: SocketAddr,
    /// The process, or the root of its process tree.
    pid: u32,
    /// Headers every request carries (a peer's auth and routing).
    headers: Vec<(String, String)>,
}

/// Runs everything; returns what was measured.
pub async fn run(opts: &Options) -> Result<Run> {
    let started = Instant::now();
    let plan = Plan::new(opts.quick);
    let census_before = machine::CpuCensus::take();
    let (system_before, self_before) = (machine::system_busy(), machine::self_and_children());
    let mut machine = machine::describe(&opts.oha, &opts.repo);
    let oha = Oha::new(&opts.oha)?;
    std::fs::create_dir_all(&opts.work_dir)?;
    let logs = procs::fresh_dir(&opts.work_dir, "logs")?;
    let mut notes = Vec::new();
    let mut ours: HashSet<u32> = HashSet::from([std::process::id()]);

    step("starting the upstream and the floor");
    let (mut upstream, up_addr) = procs::start_server(
        "bench-upstream",
        &opts.bin_dir.join("bench-upstream"),
        &[],
        &logs.join("upstream.addresses.json"),
        "/healthz",
        &logs.join("upstream.log"),
    )
    .await?;
    let (mut floor, floor_addr) = start_floor(opts, up_addr, "floor", &logs).await?;
    ours.extend([upstream.pid(), floor.pid()]);

    let upstream_url = format!("http://{up_addr}");
    let minimal_dir = procs::fresh_dir(&opts.work_dir, "manifests-minimal")?;
    manifests::write(&minimal_dir, Features::Minimal, &upstream_url)?;
    let full_dir = procs::fresh_dir(&opts.work_dir, "manifests-full")?;
    manifests::write(&full_dir, Features::Full, &upstream_url)?;

    let mut results: Vec<TargetResults> = Target::ALL.into_iter().map(TargetResults::new).collect();

    step("start-to-ready");
    for (target, dir) in [(Target::SidecarMinimal, &minimal_dir), (Target::SidecarFull, &full_dir)] {
        for n in 0..plan.ready_starts {
            let sidecar = start_sidecar(opts, &format!("{}-start{n}", target_name(target)), dir, &logs).await?;
            slot(&mut results, target).footprint.ready_ms.push(ms(sidecar.ready));
        }
    }

    step("starting the sidecars under test");
    let minimal = start_sidecar(opts, "minimal", &minimal_dir, &logs).await?;
    let full = start_sidecar(opts, "full", &full_dir, &logs).await?;
    ours.extend([minimal.proc.pid(), full.proc.pid()]);
    let mut endpoints = vec![
        Endpoint {
            target: Target::Direct,
            addr: up_addr,
            pid: upstream.pid(),
            headers: Vec::new(),
        },
        Endpoint {
            target: Target::Floor,
            addr: floor_addr,
            pid: floor.pid(),
            headers: Vec::new(),
        },
        Endpoint {
            target: Target::SidecarMinimal,
            addr: minimal.addr,
            pid: minimal.proc.pid(),
            headers: Vec::new(),
        },
        Endpoint {
            target: Target::SidecarFull,
            addr: full.addr,
            pid: full.proc.pid(),
            headers: Vec::new(),
        },
    ];
    step("starting the full-path sidecar with tracing on, and its collector");
    let mut traced = match tracing::Traced::start(opts, &full_dir, &logs).await {
        Ok(t) => {
            ours.extend(t.pids());
            for e in t.endpoints() {
                results.push(TargetResults::new(e.target));
                endpoints.push(e);
            }
            Some(t)
        }
        Err(e) => {
            notes.push(format!("tracing row: not measured: {e:#}"));
            None
        }
    };

    let mut statuses: Vec<PeerStatus> = Vec::new();
    let mut peer_procs: Vec<(Target, Proc)> = Vec::new();
    if let Some(peers_dir) = &opts.peers_dir {
        for peer in Target::PEERS {
            let mut status = peers::status_of(peers_dir, peer);
            if status.not_measured.is_none() {
                step(&format!("starting {}", peer.label()));
                let work = procs::fresh_dir(&opts.work_dir, &format!("peer-{}", target_name(peer)))?;
                let log = logs.join(format!("peer-{}.log", target_name(peer)));
                match peers::start(peers_dir, peer, up_addr, &work, &log).await {
                    Ok(p) => {
                        let mut r = TargetResults::new(peer);
                        r.footprint.ready_ms.push(ms(p.ready));
                        results.push(r);
                        endpoints.push(Endpoint {
                            target: peer,
                            addr: p.addr,
                            pid: p.proc.pid(),
                            headers: p.headers,
                        });
                        peer_procs.push((peer, p.proc));
                    }
                    Err(e) => status.not_measured = Some(format!("did not start: {e:#}")),
                }
            }
            if let Some(why) = &status.not_measured {
                eprintln!("    {} not measured: {why}", peer.label());
            }
            statuses.push(status);
        }
    }
    // Peers start slowly (LiteLLM imports for seconds): let them settle before their idle RSS.
    if !peer_procs.is_empty() {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for e in &endpoints {
        slot(&mut results, e.target).footprint.rss_ready = procs::tree_rss(e.pid).ok();
    }
    let upstream_pid = upstream.pid();

    step("warm-up");
    for e in &endpoints {
        let shape = if e.target.is_peer() {
            Shape::Closed {
                connections: 8,
                duration: plan.peer_warmup,
            }
        } else {
            Shape::Count {
                connections: 8,
                requests: plan.warmup_requests,
            }
        };
        measure_noted(&oha, e, upstream_pid, shape, "warm-up", &mut notes).await?;
    }

    step("one client at a time");
    for e in &endpoints {
        let shape = Shape::Closed {
            connections: 1,
            duration: plan.one_client,
        };
        let load = measure_noted(&oha, e, upstream_pid, shape, "one client", &mut notes).await?;
        slot(&mut results, e.target).one_client = load;
    }

    for &(rate, connections) in &plan.rates {
        step(&format!("fixed rate {rate}/s"));
        for e in endpoints.iter().filter(|e| !e.target.is_traced()) {
            let shape = Shape::Rate {
                rate,
                connections,
                duration: plan.rate_duration,
            };
            let what = format!("{rate}/s");
            if let Some(load) = measure_noted(&oha, e, upstream_pid, shape, &what, &mut notes).await? {
                slot(&mut results, e.target).rates.push((rate, load));
            }
        }
    }

    for &connections in &plan.concurrency {
        step(&format!("concurrency {connections}"));
        for e in endpoints.iter().filter(|e| !e.target.is_traced()) {
            let shape = Shape::Closed {
                connections,
                duration: plan.concurrency_duration,
            };
            let what = format!("c={connections}");
            if let Some(load) = measure_noted(&oha, e, upstream_pid, shape, &what, &mut notes).await? {
                slot(&mut results, e.target).concurrency.push((connections, load));
            }
        }
    }

    step("CPU per request");
    for e in &endpoints {
        let shape = if e.target.is_peer() {
            Shape::Closed {
                connections: plan.cpu_connections,
                duration: plan.peer_cpu,
            }
        } else {
            Shape::Count {
                connections: plan.cpu_connections,
                requests: plan.cpu_requests,
            }
        };
        let load = measure_noted(&oha, e, upstream_pid, shape, "CPU run", &mut notes).await?;
        slot(&mut results, e.target).cpu_run = load;
    }

    step("streaming: time to first token and per chunk");
    for e in endpoints.iter().filter(|e| !e.target.is_traced()) {
        let body = Api::Chat.stream_request(manifests::STREAM_MODEL);
        let (warmup, count) = if e.target.is_peer() {
            (plan.peer_stream_warmup, plan.peer_streams)
        } else {
            (plan.stream_warmup, plan.streams)
        };
        let timed = streams::time_streams(e.addr, &body, &e.headers, warmup, count)
            .await
            .with_context(|| format!("streaming through {}", e.target.label()));
        match timed {
            Ok(timings) => slot(&mut results, e.target).streaming = Some(summarize_streams(&timings)),
            Err(err) if e.target.is_peer() => notes.push(format!("{}: streaming failed: {err:#}", e.target.label())),
            Err(err) => return Err(err),
        }
    }

    let apis = apis::measure_all(&oha, &endpoints, upstream_pid, &plan, &mut notes).await?;

    step("memory after load");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for e in &endpoints {
        slot(&mut results, e.target).footprint.rss_after_load = procs::tree_rss(e.pid).ok();
    }

    step(&format!(
        "{} slow streams held open through a freshly started floor and sidecars",
        opts.streams_held
    ));
    for target in Target::PROXIES {
        let (proc, addr) = match target {
            Target::Floor => start_floor(opts, up_addr, "floor-streams", &logs).await?,
            _ => {
                let (name, dir) = match target {
                    Target::SidecarMinimal => ("minimal-streams", &minimal_dir),
                    _ => ("full-streams", &full_dir),
                };
                let sidecar = start_sidecar(opts, name, dir, &logs).await?;
                (sidecar.proc, sidecar.addr)
            }
        };
        let fresh = procs::rss_of(proc.pid()).ok();
        let held = hold(&mut notes, target, addr, proc.pid(), &[], opts.streams_held).await;
        let f = &mut slot(&mut results, target).footprint;
        f.rss_fresh = fresh;
        (f.streams_held, f.rss_streams) = held.unwrap_or_default();
        drop(proc);
    }
    let held = hold(
        &mut notes,
        Target::SidecarFull,
        full.addr,
        full.proc.pid(),
        &[],
        opts.streams_held,
    )
    .await;
    slot(&mut results, Target::SidecarFull).footprint.rss_streams_after_load = held.and_then(|(_, rss)| rss);
    for e in endpoints.iter().filter(|e| e.target.is_peer()) {
        step(&format!(
            "{} slow streams held open through {} (after its load runs)",
            opts.streams_held,
            e.target.label()
        ));
        let held = hold(&mut notes, e.target, e.addr, e.pid, &e.headers, opts.streams_held).await;
        let f = &mut slot(&mut results, e.target).footprint;
        if let Some((n, rss)) = held {
            (f.streams_held, f.rss_streams_after_load) = (n, rss);
        }
    }

    for (sidecar, target) in [(&minimal, Target::SidecarMinimal), (&full, Target::SidecarFull)] {
        note_accounting(&mut notes, sidecar, target).await;
    }
    for p in [&mut upstream, &mut floor] {
        p.check_alive()?;
    }
    let tracing = match &mut traced {
        Some(t) => {
            let r = run_of(&results, Target::SidecarTraced);
            let counted = |l: &Option<Load>| l.as_ref().map_or(0, |l| l.ok + l.failed);
            let requests = plan.warmup_requests + counted(&r.one_client) + counted(&r.cpu_run);
            Some(t.counted(requests).await)
        }
        None => Some(Tracing {
            not_measured: Some("the traced sidecars or their collector did not start (see the notes)".into()),
            ..Tracing::default()
        }),
    };
    for (target, p) in &mut peer_procs {
        if let Err(e) = p.check_alive() {
            notes.push(format!("{}: {e:#} before the end of the run", target.label()));
        }
    }

    // Everything the machine did, less this driver, its waited-for children (oha, the sidecars
    // started and stopped) and the processes still running: what others used meanwhile.
    let mut live: Duration = [&upstream, &floor, &minimal.proc, &full.proc]
        .iter()
        .filter_map(|p| p.cpu().ok())
        .sum();
    if let Some(t) = &traced {
        live += t
            .pids()
            .into_iter()
            .filter_map(|p| procs::cpu_of(p).ok())
            .sum::<Duration>();
    }
    for (_, p) in &peer_procs {
        live += procs::tree_cpu(p.pid()).unwrap_or_default();
        ours.extend(procs::tree_of(p.pid()));
    }
    let ours_cpu = machine::self_and_children().saturating_sub(self_before) + live;
    let system = machine::system_busy().saturating_sub(system_before);
    let census_after = machine::CpuCensus::take();
    let seconds = started.elapsed().as_secs_f64();
    let others = census_after.others_since(&census_before, &ours, &["oha", "bench-driver"]);
    machine.other_cpu_cores = system.saturating_sub(ours_cpu).as_secs_f64() / seconds;
    machine.busy_with = others
        .iter()
        .take(6)
        .map(|(name, cpu)| format!("{name} {:.0} CPU-s", cpu.as_secs_f64()))
        .collect();
    machine.load_after = machine::load_average();
    let mut settings = plan.describe(opts.peers_dir.is_some());
    settings.push(format!(
        "memory: {} streams of `{}` (one chunk a second) held open through each proxy, freshly started, \
         and through the full-path sidecar (and each peer) again after all the load runs",
        opts.streams_held,
        manifests::HOLD_MODEL
    ));
    settings.push(
        "tracing row (issue 22): two more full-path sidecars with `OTEL_EXPORTER_OTLP_ENDPOINT` set \
         (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, the default sampler: every request traced), one exporting to \
         `bench-collector` (an OTLP/gRPC receiver from `opentelemetry-proto` that counts spans), one to a \
         loopback port bound and released (nothing listens); measured in the warm-up, one-client and CPU runs \
         beside the others"
            .to_owned(),
    );
    settings.push(format!(
        "sidecar log level: `SLUICE_LOG={}` (default `info`: one access-log line per request, written to a file)",
        std::env::var("SLUICE_LOG").unwrap_or_else(|_| "info".into())
    ));
    drop(peer_procs);
    Ok(Run {
        date: jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .map_or_else(|_| String::new(), |t| t.to_string()),
        quick: opts.quick,
        machine,
        seconds,
        settings,
        targets: results,
        notes,
        peers: statuses,
        apis,
        tracing,
    })
}

/// One `oha` run of the chat request against `e`, with the CPU its process tree (and the
/// upstream) used per request.
async fn measure(oha: &Oha, e: &Endpoint, upstream_pid: u32, shape: Shape) -> Result<Load> {
    measure_request(oha, e, upstream_pid, &Api::Chat.request(), shape).await
}

/// [`measure`] with any request.
async fn measure_request(
    oha: &Oha,
    e: &Endpoint,
    upstream_pid: u32,
    request: &RequestKind,
    shape: Shape,
) -> Result<Load> {
    let (cpu0, up0) = (procs::tree_cpu(e.pid)?, procs::cpu_of(upstream_pid)?);
    let mut load = oha
        .run(e.addr, request, &e.headers, shape)
        .await
        .with_context(|| format!("loading {}", e.target.label()))?;
    let (cpu1, up1) = (procs::tree_cpu(e.pid)?, procs::cpu_of(upstream_pid)?);
    let requests = (load.ok + load.failed).max(1) as f64;
    load.cpu_us_per_request = Some((cpu1.saturating_sub(cpu0)).as_secs_f64() * 1e6 / requests);
    load.upstream_cpu_us_per_request = Some((up1.saturating_sub(up0)).as_secs_f64() * 1e6 / requests);
    Ok(load)
}

/// [`measure`], noting failed requests; a peer's failed run is noted and skipped (`None`) where
/// one of ours ends the run.
async fn measure_noted(
    oha: &Oha,
    e: &Endpoint,
    upstream_pid: u32,
    shape: Shape,
    what: &str,
    notes: &mut Vec<String>,
) -> Result<Option<Load>> {
    match measure(oha, e, upstream_pid, shape).await {
        Ok(load) => {
            note_failures(notes, e.target, what, &load);
            Ok(Some(load))
        }
        Err(err) if e.target.is_peer() => {
            notes.push(format!("{} / {what}: not measured: {err:#}", e.target.label()));
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// [`measure_request`], noting failed requests (one of ours: a failed run ends the run).
async fn measure_with(
    oha: &Oha,
    e: &Endpoint,
    upstream_pid: u32,
    request: &RequestKind,
    shape: Shape,
    notes: &mut Vec<String>,
    what: &str,
) -> Result<Load> {
    let load = measure_request(oha, e, upstream_pid, request, shape).await?;
    note_failures(notes, e.target, what, &load);
    Ok(load)
}

/// How long holding the streams may take before it is given up (a peer accepting slowly).
const HOLD_WITHIN: Duration = Duration::from_secs(120);

/// Holds `count` slow streams through `addr` for a moment; returns how many opened and the RSS
/// of `pid`'s process tree with them open.
async fn hold(
    notes: &mut Vec<String>,
    target: Target,
    addr: SocketAddr,
    pid: u32,
    headers: &[(String, String)],
    count: usize,
) -> Option<(usize, Option<u64>)> {
    let body = Api::Chat.stream_request(manifests::HOLD_MODEL);
    let opened = tokio::time::timeout(HOLD_WITHIN, streams::hold_streams(addr, &body, headers, count)).await;
    let result = match opened {
        Ok(Ok(held)) => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rss = procs::tree_rss(pid).ok();
            let n = held.len();
            drop(held);
            Some((n, rss))
        }
        Ok(Err(err)) => {
            notes.push(format!(
                "{}: could not hold {count} streams open: {err:#}",
                target.label()
            ));
            None
        }
        Err(_) => {
            notes.push(format!(
                "{}: {count} streams were not all open within {HOLD_WITHIN:?}; not measured",
                target.label()
            ));
            None
        }
    };
    // Let the closed streams drain before the next measurement.
    tokio::time::sleep(Duration::from_secs(1)).await;
    result
}

async fn start_floor(opts: &Options, upstream: SocketAddr, name: &str, logs: &Path) -> Result<(Proc, SocketAddr)> {
    procs::start_server(
        "bench-floor",
        &opts.bin_dir.join("bench-floor"),
        &["--upstream".into(), format!("http://{upstream}")],
        &logs.join(format!("{name}.addresses.json")),
        "/healthz",
        &logs.join(format!("{name}.log")),
    )
    .await
}

async fn start_sidecar(opts: &Options, name: &str, manifests: &Path, logs: &Path) -> Result<Sidecar> {
    procs::start_sidecar(&opts.bin_dir, &opts.work_dir, name, manifests, logs).await
}

fn summarize_streams(timings: &[streams::StreamTiming]) -> Streaming {
    let mut ttft: Vec<f64> = timings.iter().map(|t| us(t.first_token)).collect();
    let mut total: Vec<f64> = timings.iter().map(|t| us(t.total)).collect();
    let mut events: Vec<usize> = timings.iter().map(|t| t.events).collect();
    events.sort_unstable();
    Streaming {
        streams: timings.len(),
        ttft_p50_us: percentile(&mut ttft, 0.50),
        ttft_p99_us: percentile(&mut ttft, 0.99),
        total_p50_us: percentile(&mut total, 0.50),
        total_p99_us: percentile(&mut total, 0.99),
        events: events.get(events.len() / 2).copied().unwrap_or(0),
    }
}

/// The `q` quantile (nearest rank) of `values`.
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

fn note_failures(notes: &mut Vec<String>, target: Target, what: &str, load: &Load) {
    if load.failed > 0 {
        notes.push(format!(
            "{} / {what}: {} of {} requests failed or were not 200",
            target.label(),
            load.failed,
            load.ok + load.failed
        ));
    }
}

/// Records what a sidecar accounted, as evidence that the feature path really ran.
async fn note_accounting(notes: &mut Vec<String>, sidecar: &Sidecar, target: Target) {
    match procs::get_text(sidecar.admin, "/budgets").await {
        Ok(text) if target == Target::SidecarFull => {
            let compact: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let cut: String = compact.chars().take(400).collect();
            notes.push(format!("{}: admin `/budgets` after the run: `{cut}`", target.label()));
        }
        Ok(_) => {}
        Err(e) => notes.push(format!("{}: admin `/budgets` unreadable: {e:#}", target.label())),
    }
    if let Ok(metrics) = procs::get_text(sidecar.admin, "/metrics").await {
        let series = metrics.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
        notes.push(format!(
            "{}: `/metrics` exposed {series} series after the run",
            target.label()
        ));
    }
}

/// The results of `t` (an empty record when this run had none).
fn run_of(results: &[TargetResults], t: Target) -> TargetResults {
    results
        .iter()
        .find(|r| r.target == t)
        .cloned()
        .unwrap_or_else(|| TargetResults::new(t))
}

/// The results of `t`, created if this run had none yet.
fn slot(results: &mut Vec<TargetResults>, t: Target) -> &mut TargetResults {
    let i = match results.iter().position(|r| r.target == t) {
        Some(i) => i,
        None => {
            results.push(TargetResults::new(t));
            results.len() - 1
        }
    };
    &mut results[i]
}

fn target_name(t: Target) -> &'static str {
    match t {
        Target::Direct => "direct",
        Target::Floor => "floor",
        Target::SidecarMinimal => "minimal",
        Target::SidecarFull => "full",
        Target::SidecarTraced => "traced",
        Target::SidecarTracedDown => "traced-down",
        Target::Litellm => "litellm",
        Target::Portkey => "portkey",
        Target::Onwards => "onwards",
    }
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_request_calls_the_fast_model() {
        let body: serde_json::Value = serde_json::from_slice(&Api::Chat.request().body).unwrap();
        assert_eq!(body["model"], manifests::FAST_MODEL);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 0.5), 50.0);
        assert_eq!(percentile(&mut v, 0.99), 99.0);
        assert_eq!(percentile(&mut [7.0], 0.99), 7.0);
    }
}
