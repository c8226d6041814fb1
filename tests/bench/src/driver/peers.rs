//! The peers of `--peers`: LiteLLM proxy, Portkey's gateway and onwards. `tests/bench/run`
//! installs each, pinned, under the cache directory and records in `<peers>/<name>/status`
//! either `ok <version>` or `failed: <why>`; this module configures and starts them against the
//! same upstream as the sidecar, on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::manifests::ROUTES;
use super::procs::{self, Proc};
use super::results::{PeerStatus, Target};

/// How long a peer may take to answer its probe (LiteLLM imports for several seconds).
const READY_WITHIN: Duration = Duration::from_secs(120);

/// LiteLLM's `master_key`: every request presents it.
const LITELLM_MASTER_KEY: &str = "sk-bench-master";

/// A started peer.
#[derive(Debug)]
pub struct Started {
    /// The process (the root of its tree), killed when dropped.
    pub proc: Proc,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Headers every request to it carries (auth, routing).
    pub headers: Vec<(String, String)>,
    /// Spawn to its probe answering 200.
    pub ready: Duration,
}

/// The install directory of `peer` under `peers_dir`.
fn dir_of(peers_dir: &Path, peer: Target) -> PathBuf {
    peers_dir.join(name_of(peer))
}

fn name_of(peer: Target) -> &'static str {
    match peer {
        Target::Litellm => "litellm",
        Target::Portkey => "portkey",
        _ => "onwards",
    }
}

/// How `peer` is configured and driven, for the report.
pub fn setup_of(peer: Target) -> String {
    match peer {
        Target::Litellm => "`litellm --config … --num_workers 1 --telemetry False` (PyPI `litellm[proxy]`, its own \
             virtualenv), one `openai/<model>` entry per model with `api_base` the upstream, `master_key` set and \
             sent as `Authorization: Bearer`, no callbacks, `LITELLM_LOCAL_MODEL_COST_MAP=True`; its default \
             logging (one uvicorn access line per request)"
            .to_owned(),
        Target::Portkey => {
            "`node build/start-server.js --headless` (npm `@portkey-ai/gateway`), `TRUSTED_CUSTOM_HOSTS=127.0.0.1`, \
             routed per request with `x-portkey-provider: openai` and `x-portkey-custom-host` = the upstream; \
             `@hono/node-server` pinned to 1.11.5 because later versions make every streamed answer fail \
             with `TypeError: immutable` (Portkey gateway issue 1389); its OpenAI stream transform waits 25 ms \
             (`setTimeout`) before relaying the first chunk, which its added time to first token includes"
                .to_owned()
        }
        _ => "`onwards -f targets.json` (crates.io, `cargo install --locked`), one target per model with `url` the \
              upstream, `http_pool.max_idle_per_host` 1000, its default `RUST_LOG=info` and metrics"
            .to_owned(),
    }
}

/// Reads what the run script recorded about `peer`'s install.
pub fn status_of(peers_dir: &Path, peer: Target) -> PeerStatus {
    let path = dir_of(peers_dir, peer).join("status");
    let (version, not_measured) = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let line = text.lines().next().unwrap_or("").trim().to_owned();
            match line.strip_prefix("ok ") {
                Some(version) => (Some(version.to_owned()), None),
                None => (
                    None,
                    Some(format!("install failed: {}", line.trim_start_matches("failed: "))),
                ),
            }
        }
        Err(_) => (None, Some(format!("not installed ({} is missing)", path.display()))),
    };
    PeerStatus {
        target: peer,
        version: version.map(|v| format!("{} {v}", name_of(peer))),
        setup: setup_of(peer),
        not_measured,
    }
}

/// Writes `peer`'s configuration into `work`, starts it against `upstream` and waits until it is
/// ready.
pub async fn start(peers_dir: &Path, peer: Target, upstream: SocketAddr, work: &Path, log: &Path) -> Result<Started> {
    let dir = dir_of(peers_dir, peer);
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    // Probed, not port 0: no peer can say which port it bound, so it is handed one found free.
    let addr = procs::free_addr()?;
    let since = Instant::now();
    let (mut proc, probe, headers) = match peer {
        Target::Litellm => {
            let config = work.join("litellm.yaml");
            std::fs::write(&config, litellm_config(upstream))?;
            let args = [
                "--config".into(),
                config.display().to_string(),
                "--host".into(),
                addr.ip().to_string(),
                "--port".into(),
                addr.port().to_string(),
                "--num_workers".into(),
                "1".into(),
                "--telemetry".into(),
                "False".into(),
            ];
            let env = [("LITELLM_LOCAL_MODEL_COST_MAP", "True".to_owned())];
            let proc = Proc::spawn_with_env("LiteLLM proxy", &dir.join("venv/bin/litellm"), &args, &env, log)?;
            let headers = vec![("authorization".into(), format!("Bearer {LITELLM_MASTER_KEY}"))];
            (proc, (addr, "/health/liveliness"), headers)
        }
        Target::Portkey => {
            let server = dir.join("node_modules/@portkey-ai/gateway/build/start-server.js");
            let args = [
                server.display().to_string(),
                format!("--port={}", addr.port()),
                "--headless".into(),
            ];
            let env = [("TRUSTED_CUSTOM_HOSTS", upstream.ip().to_string())];
            let proc = Proc::spawn_with_env("Portkey gateway", Path::new("node"), &args, &env, log)?;
            let headers = vec![
                ("x-portkey-provider".into(), "openai".into()),
                ("x-portkey-custom-host".into(), format!("http://{upstream}/v1")),
                ("authorization".into(), "Bearer sk-bench".into()),
            ];
            (proc, (addr, "/"), headers)
        }
        Target::Onwards => {
            let config = work.join("targets.json");
            std::fs::write(&config, onwards_config(upstream)?)?;
            // Probed like `addr`: onwards cannot report a port-0 bind of its metrics listener either.
            let metrics = procs::free_addr()?;
            let args = [
                "-f".into(),
                config.display().to_string(),
                "--port".into(),
                addr.port().to_string(),
                "--metrics-port".into(),
                metrics.port().to_string(),
            ];
            let proc = Proc::spawn("onwards", &dir.join("bin/onwards"), &args, log)?;
            (proc, (metrics, "/readyz"), Vec::new())
        }
        other => bail!("{} is not a peer", other.label()),
    };
    let ready = proc
        .wait_ok_within(probe.0, probe.1, since, READY_WITHIN)
        .await
        .with_context(|| format!("starting {} (its log: {})", peer.label(), log.display()))?;
    Ok(Started {
        proc,
        addr,
        headers,
        ready,
    })
}

/// LiteLLM's config: every model the run calls, forwarded under its own name to the upstream.
fn litellm_config(upstream: SocketAddr) -> String {
    let mut yaml = String::from("model_list:\n");
    for (_, model) in ROUTES {
        yaml.push_str(&format!(
            "  - model_name: {model}\n    litellm_params:\n      model: openai/{model}\n      \
             api_base: http://{upstream}/v1\n      api_key: sk-bench\n"
        ));
    }
    yaml.push_str(&format!(
        "general_settings:\n  master_key: {LITELLM_MASTER_KEY}\n\
         litellm_settings:\n  telemetry: false\n  callbacks: []\n  success_callback: []\n  failure_callback: []\n"
    ));
    yaml
}

/// onwards' targets: every model the run calls, to the upstream (it keeps the request's path).
fn onwards_config(upstream: SocketAddr) -> Result<String> {
    let targets: serde_json::Map<String, serde_json::Value> = ROUTES
        .iter()
        .map(|(_, model)| {
            (
                (*model).to_owned(),
                serde_json::json!({ "url": format!("http://{upstream}") }),
            )
        })
        .collect();
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "targets": targets,
        "http_pool": { "max_idle_per_host": 1000, "idle_timeout_secs": 90 },
    }))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_is_configured_in_each_peer() {
        let up: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let yaml = litellm_config(up);
        let json: serde_json::Value = serde_json::from_str(&onwards_config(up).unwrap()).unwrap();
        for (_, model) in ROUTES {
            assert!(yaml.contains(&format!("model_name: {model}\n")));
            assert_eq!(json["targets"][model]["url"], "http://127.0.0.1:9");
        }
        assert!(yaml.contains("master_key: sk-bench-master"));
    }

    #[test]
    fn the_install_status_is_read() {
        let dir = std::env::temp_dir().join(format!("sluice-bench-peers-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("litellm")).unwrap();
        std::fs::create_dir_all(dir.join("portkey")).unwrap();
        std::fs::write(dir.join("litellm/status"), "ok 1.100.5\n").unwrap();
        std::fs::write(dir.join("portkey/status"), "failed: npm install exited 1\n").unwrap();
        let ok = status_of(&dir, Target::Litellm);
        assert_eq!(ok.version.as_deref(), Some("litellm 1.100.5"));
        assert!(ok.not_measured.is_none());
        let failed = status_of(&dir, Target::Portkey);
        assert_eq!(
            failed.not_measured.as_deref(),
            Some("install failed: npm install exited 1")
        );
        assert!(
            status_of(&dir, Target::Onwards)
                .not_measured
                .unwrap()
                .starts_with("not installed")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
