//! The tracing row (issue 22): the full-path sidecar again with tracing on, once exporting over
//! OTLP/gRPC to `bench-collector` (a real receiver that counts what arrives) and once pointed at
//! a closed port, measured beside the untraced full path.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, Result};

use super::procs::{self, Proc, Sidecar};
use super::results::{Target, Tracing};
use super::{Endpoint, Options};

/// The traced sidecars and the collector they export to.
#[derive(Debug)]
pub struct Traced {
    /// Exporting to the collector.
    pub live: Sidecar,
    /// Exporting to a closed port.
    pub down: Sidecar,
    collector: Proc,
    collector_http: SocketAddr,
}

impl Traced {
    /// Starts the collector and both sidecars on the full path's `manifests`.
    pub async fn start(opts: &Options, manifests: &Path, logs: &Path) -> Result<Self> {
        let address_file = logs.join("collector.addresses.json");
        let (collector, collector_http) = procs::start_server(
            "bench-collector",
            &opts.bin_dir.join("bench-collector"),
            &["--grpc".into(), "127.0.0.1:0".into()],
            &address_file,
            "/healthz",
            &logs.join("collector.log"),
        )
        .await?;
        let grpc = sluice_crds::address_file::read(&address_file)?
            .and_then(|a| a.get("grpc").copied())
            .with_context(|| format!("{} names no grpc", address_file.display()))?;
        let closed = closed_port().await?;
        let start = |name: &'static str, endpoint: SocketAddr| async move {
            let env = [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{endpoint}")),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
                ("OTEL_SERVICE_NAME", format!("sluice-bench-{name}")),
            ];
            procs::start_sidecar_with_env(&opts.bin_dir, &opts.work_dir, name, manifests, logs, &env).await
        };
        Ok(Self {
            live: start("traced", grpc).await?,
            down: start("traced-down", closed).await?,
            collector,
            collector_http,
        })
    }

    /// The two endpoints to measure.
    pub(super) fn endpoints(&self) -> [Endpoint; 2] {
        let endpoint = |target, s: &Sidecar| Endpoint {
            target,
            addr: s.addr,
            pid: s.proc.pid(),
            headers: Vec::new(),
        };
        [
            endpoint(Target::SidecarTraced, &self.live),
            endpoint(Target::SidecarTracedDown, &self.down),
        ]
    }

    /// The pids of every process here.
    pub fn pids(&self) -> [u32; 3] {
        [self.live.proc.pid(), self.down.proc.pid(), self.collector.pid()]
    }

    /// What the collector received for `requests` requests sent through the live sidecar.
    pub async fn counted(&mut self, requests: u64) -> Tracing {
        let mut tracing = Tracing {
            requests,
            ..Tracing::default()
        };
        if let Err(e) = self.collector.check_alive() {
            tracing.not_measured = Some(format!("the collector exited: {e:#}"));
            return tracing;
        }
        let counts = procs::get_text(self.collector_http, "/count")
            .await
            .and_then(|t| Ok(serde_json::from_str::<serde_json::Value>(&t)?));
        match counts {
            Ok(json) => {
                tracing.spans = json["spans"].as_u64().unwrap_or(0);
                tracing.exports = json["exports"].as_u64().unwrap_or(0);
            }
            Err(e) => tracing.not_measured = Some(format!("the collector's count was unreadable: {e:#}")),
        }
        tracing
    }
}

/// A loopback port nothing listens on: bound by the OS, then released.
async fn closed_port() -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(addr)
}
