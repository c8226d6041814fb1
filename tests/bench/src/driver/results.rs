//! What one run measured, per target, as the report and the plot read it.

use serde::Serialize;

use super::apis::Api;

/// Which process a row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The client calls the upstream itself.
    Direct,
    /// Through the bare forwarding proxy.
    Floor,
    /// Through the sidecar with a minimal route.
    SidecarMinimal,
    /// Through the sidecar with the full feature path.
    SidecarFull,
    /// The full feature path with tracing on, exporting to the bench's OTLP collector.
    SidecarTraced,
    /// The full feature path with tracing on and its collector's port closed.
    SidecarTracedDown,
    /// Through LiteLLM proxy (`--peers`).
    Litellm,
    /// Through Portkey's gateway (`--peers`).
    Portkey,
    /// Through onwards (`--peers`).
    Onwards,
}

impl Target {
    /// Every target, in report order.
    pub const ALL: [Target; 4] = [
        Target::Direct,
        Target::Floor,
        Target::SidecarMinimal,
        Target::SidecarFull,
    ];
    /// The proxies, compared to the direct call.
    pub const PROXIES: [Target; 3] = [Target::Floor, Target::SidecarMinimal, Target::SidecarFull];
    /// The peers `--peers` measures beside them, in report order.
    pub const PEERS: [Target; 3] = [Target::Litellm, Target::Portkey, Target::Onwards];

    /// The full-path sidecars with tracing on (issue 22): measured with one client and for CPU only.
    pub const TRACED: [Target; 2] = [Target::SidecarTraced, Target::SidecarTracedDown];

    /// Whether this is one of [`Target::TRACED`].
    pub fn is_traced(self) -> bool {
        Self::TRACED.contains(&self)
    }

    /// Whether this is one of [`Target::PEERS`].
    pub fn is_peer(self) -> bool {
        Self::PEERS.contains(&self)
    }

    /// Its name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Floor => "floor",
            Target::SidecarMinimal => "sidecar (minimal)",
            Target::SidecarFull => "sidecar (full)",
            Target::SidecarTraced => "sidecar (full, tracing on)",
            Target::SidecarTracedDown => "sidecar (full, tracing on, collector down)",
            Target::Litellm => "LiteLLM proxy",
            Target::Portkey => "Portkey gateway",
            Target::Onwards => "onwards",
        }
    }
}

/// One `oha` run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Load {
    /// Requests answered per second.
    pub rps: f64,
    /// Latency percentiles, microseconds.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Requests answered 200.
    pub ok: u64,
    /// Requests that failed or answered another status.
    pub failed: u64,
    /// CPU of the measured proxy (the upstream for a direct run) per request, microseconds.
    pub cpu_us_per_request: Option<f64>,
    /// CPU of the upstream per request in the same run, microseconds.
    pub upstream_cpu_us_per_request: Option<f64>,
}

/// Streamed answers of [`crate::driver::manifests::STREAM_CHUNKS`] chunks, one at a time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Streaming {
    /// Streams timed.
    pub streams: usize,
    /// Time to first token, median, microseconds.
    pub ttft_p50_us: f64,
    /// Time to first token, 99th percentile.
    pub ttft_p99_us: f64,
    /// Whole stream, median, microseconds.
    pub total_p50_us: f64,
    /// Whole stream, 99th percentile, microseconds.
    pub total_p99_us: f64,
    /// Events received per stream (median).
    pub events: usize,
}

/// Memory and start-up of one process.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Footprint {
    /// RSS once ready, before any request, bytes.
    pub rss_ready: Option<u64>,
    /// RSS idle after the load runs, bytes.
    pub rss_after_load: Option<u64>,
    /// RSS of the freshly started process just before the streams opened, bytes.
    pub rss_fresh: Option<u64>,
    /// Streams held open when `rss_streams` was read.
    pub streams_held: usize,
    /// RSS with `streams_held` slow streams open through a freshly started process, bytes.
    pub rss_streams: Option<u64>,
    /// RSS with as many streams open through the process that ran the load, bytes.
    pub rss_streams_after_load: Option<u64>,
    /// Spawn to `/readyz` 200, each start, milliseconds.
    pub ready_ms: Vec<f64>,
}

/// Everything measured of one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResults {
    /// Which target.
    pub target: Target,
    /// One client at a time.
    pub one_client: Option<Load>,
    /// Fixed offered rates, `(requests per second, load)`.
    pub rates: Vec<(u32, Load)>,
    /// Fixed concurrency, `(connections, load)`.
    pub concurrency: Vec<(u32, Load)>,
    /// A fixed number of requests (a peer: a fixed time) at moderate concurrency, for CPU per
    /// request.
    pub cpu_run: Option<Load>,
    /// Streaming timings.
    pub streaming: Option<Streaming>,
    /// Memory and start-up.
    pub footprint: Footprint,
}

impl TargetResults {
    /// An empty record for `target`.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            one_client: None,
            rates: Vec::new(),
            concurrency: Vec::new(),
            cpu_run: None,
            streaming: None,
            footprint: Footprint::default(),
        }
    }
}

/// The machine and the conditions of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Cores the OS shows.
    pub cores: usize,
    /// Memory, bytes.
    pub memory: u64,
    /// Kernel release.
    pub kernel: String,
    /// 1-minute load average when the run started.
    pub load_before: String,
    /// 1-minute load average when it ended.
    pub load_after: String,
    /// Processes other than this run's that used CPU during it, with their share.
    pub busy_with: Vec<String>,
    /// CPU time used by other processes during the run, as cores.
    pub other_cpu_cores: f64,
    /// `rustc -V`.
    pub rustc: String,
    /// `oha --version`.
    pub oha: String,
    /// The commit measured, `+dirty` when the tree had changes.
    pub commit: String,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// When it ran (UTC, RFC 3339).
    pub date: String,
    /// Whether this was the short `--quick` run.
    pub quick: bool,
    /// The machine.
    pub machine: Machine,
    /// Seconds the run took.
    pub seconds: f64,
    /// The settings used, as text for the notes.
    pub settings: Vec<String>,
    /// Per target.
    pub targets: Vec<TargetResults>,
    /// Observations made during the run (what the full sidecar accounted, errors seen).
    pub notes: Vec<String>,
    /// The peers asked for with `--peers`, measured or not (empty without it).
    pub peers: Vec<PeerStatus>,
    /// Each client API through the targets that serve it, chat measured again beside the others.
    pub apis: Vec<ApiResults>,
    /// The tracing row: what the bench's collector received (`None`: not measured).
    pub tracing: Option<Tracing>,
}

/// What the tracing row's collector saw (issue 22).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tracing {
    /// Requests sent through the sidecar exporting to the collector.
    pub requests: u64,
    /// Spans the collector received from it.
    pub spans: u64,
    /// Export calls that brought them.
    pub exports: u64,
    /// Why it was not measured, when it was not (the collector did not start, say).
    pub not_measured: Option<String>,
}

/// One client API measured through one target.
#[derive(Debug, Clone, Serialize)]
pub struct ApiResults {
    /// Which API.
    pub api: Api,
    /// Through which target.
    pub target: Target,
    /// One client at a time.
    pub one_client: Option<Load>,
    /// A fixed number of requests at moderate concurrency, for CPU per request.
    pub cpu_run: Option<Load>,
    /// Streaming timings (the full-path sidecar only).
    pub streaming: Option<Streaming>,
}

impl ApiResults {
    /// An empty record of `api` through `target`.
    pub fn new(api: Api, target: Target) -> Self {
        Self {
            api,
            target,
            one_client: None,
            cpu_run: None,
            streaming: None,
        }
    }
}

/// What became of one peer.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    /// Which peer.
    pub target: Target,
    /// Its version as installed (`tests/bench/run` records it), when installed.
    pub version: Option<String>,
    /// How it was set up and driven, for the report.
    pub setup: String,
    /// Why it was not measured, when it was not.
    pub not_measured: Option<String>,
}

impl Run {
    /// The results of `target`.
    pub fn of(&self, target: Target) -> Option<&TargetResults> {
        self.targets.iter().find(|t| t.target == target)
    }

    /// The results of `api` through `target`.
    pub fn api(&self, api: Api, target: Target) -> Option<&ApiResults> {
        self.apis.iter().find(|r| r.api == api && r.target == target)
    }

    /// The highest req/s `target` reached at a fixed concurrency, with that concurrency.
    pub fn max_throughput(&self, target: Target) -> Option<(u32, f64)> {
        self.of(target)?
            .concurrency
            .iter()
            .map(|(c, l)| (*c, l.rps))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}
