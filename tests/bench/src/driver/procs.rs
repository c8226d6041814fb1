//! The processes a run measures: spawned, probed, read from `/proc`, killed when dropped.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long a process may take to answer its probe before the run gives up (a bound, not a figure).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A child process, killed when dropped.
#[derive(Debug)]
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
}

impl Proc {
    /// Spawns `program args…` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Self> {
        Self::spawn_with_env(name, program, args, &[], log)
    }

    /// Like [`Proc::spawn`], with `env` added to the inherited environment.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        log: &Path,
    ) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited: {status}", self.name);
        }
        Ok(())
    }

    /// Waits until the process has written its address file `path` (`--address-file`, see
    /// `sluice_crds::address_file`): where it bound the listeners it was given port 0 for.
    pub async fn wait_for_addresses(&mut self, path: &Path) -> Result<sluice_crds::address_file::Addresses> {
        let since = Instant::now();
        loop {
            if let Some(addresses) = sluice_crds::address_file::read(path)? {
                return Ok(addresses);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before it wrote its address file {}",
                    self.name,
                    path.display()
                );
            }
            if since.elapsed() > READY_WITHIN {
                bail!("{} wrote no {} within {READY_WITHIN:?}", self.name, path.display());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `GET http://addr/path` answers 200; returns how long that took from `since`.
    pub async fn wait_ok(&mut self, addr: SocketAddr, path: &str, since: Instant) -> Result<Duration> {
        self.wait_ok_within(addr, path, since, READY_WITHIN).await
    }

    /// [`Proc::wait_ok`] with another bound (a slow-starting peer).
    pub async fn wait_ok_within(
        &mut self,
        addr: SocketAddr,
        path: &str,
        since: Instant,
        within: Duration,
    ) -> Result<Duration> {
        loop {
            if probe(addr, path).await {
                return Ok(since.elapsed());
            }
            self.check_alive()?;
            if since.elapsed() > within {
                bail!("{} did not answer 200 on {addr}{path} within {within:?}", self.name);
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }

    /// CPU time the process has used (user + system, every thread, dead ones included).
    pub fn cpu(&self) -> Result<Duration> {
        cpu_of(self.pid())
    }

    /// Resident memory in bytes.
    pub fn rss(&self) -> Result<u64> {
        rss_of(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `GET` on a fresh connection; whether it answered 200.
pub async fn probe(addr: SocketAddr, path: &str) -> bool {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
        return false;
    };
    tokio::spawn(conn);
    let Ok(req) = Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<bytes::Bytes>::new())
    else {
        return false;
    };
    match sender.send_request(req).await {
        Ok(resp) => {
            let ok = resp.status() == hyper::StatusCode::OK;
            let _ = resp.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

/// `GET http://addr/path` and its body as text.
pub async fn get_text(addr: SocketAddr, path: &str) -> Result<String> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<bytes::Bytes>::new())?;
    let body = sender.send_request(req).await?.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A loopback address with a port free at the time of asking, for the third-party peers only:
/// they cannot bind port 0 and say which port they got, so theirs is probed and handed over
/// (and may be taken by another process in between). The bench's own servers use [`start_server`].
pub fn free_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// Starts one of the bench's own servers (`bench-upstream`, `bench-floor`) as `program args…
/// --listen 127.0.0.1:0 --address-file ADDRESS_FILE`, logging to `log`, and waits until it has
/// reported where it listens and answers 200 on `health`. Port 0 and the reported address: a port
/// probed free and handed over could be taken by another process before the server bound it.
pub async fn start_server(
    name: &str,
    program: &Path,
    args: &[String],
    address_file: &Path,
    health: &str,
    log: &Path,
) -> Result<(Proc, SocketAddr)> {
    let started = async {
        // A file left by an earlier run would be read as this one's address.
        match std::fs::remove_file(address_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing the stale {}", address_file.display()));
            }
            _ => {}
        }
        let mut all = args.to_vec();
        all.extend([
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--address-file".into(),
            address_file.display().to_string(),
        ]);
        let since = Instant::now();
        let mut proc = Proc::spawn(name, program, &all, log)?;
        let reported = proc.wait_for_addresses(address_file).await?;
        let addr = reported
            .get("listen")
            .copied()
            .with_context(|| format!("{} names no listen", address_file.display()))?;
        proc.wait_ok(addr, health, since).await?;
        anyhow::Ok((proc, addr))
    };
    started
        .await
        .with_context(|| format!("starting {name} (its log: {})", log.display()))
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux almost always).
fn ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// `utime + stime` of a process from `/proc/<pid>/stat`.
pub fn cpu_of(pid: u32) -> Result<Duration> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading stat of {pid}"))?;
    let ticks = parse_stat_cpu_ticks(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))?;
    Ok(ticks_to_duration(ticks))
}

/// Clock ticks as time.
pub fn ticks_to_duration(ticks: u64) -> Duration {
    static PER_SECOND: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let per_second = *PER_SECOND.get_or_init(ticks_per_second);
    Duration::from_nanos(ticks * 1_000_000_000 / per_second.max(1))
}

/// `utime + stime` in ticks: fields 14 and 15, counted after the parenthesised command name.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The process ids of `pid` and every live descendant of it (a peer's workers).
pub fn tree_of(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            Some((p, parse_stat_ppid(&stat)?))
        })
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

/// CPU time of `pid` and its live descendants, with what their exited, reaped children used
/// (`cutime + cstime`).
pub fn tree_cpu(pid: u32) -> Result<Duration> {
    let mut ticks = 0;
    for (n, p) in tree_of(pid).into_iter().enumerate() {
        match std::fs::read_to_string(format!("/proc/{p}/stat")) {
            Ok(stat) => ticks += parse_stat_cpu_ticks(&stat).unwrap_or(0) + parse_stat_child_ticks(&stat).unwrap_or(0),
            // The root must be readable; a descendant may have exited since the listing.
            Err(e) if n == 0 => return Err(e).with_context(|| format!("reading stat of {pid}")),
            Err(_) => {}
        }
    }
    Ok(ticks_to_duration(ticks))
}

/// `VmRSS` of `pid` and its live descendants, in bytes.
pub fn tree_rss(pid: u32) -> Result<u64> {
    let mut total = rss_of(pid)?;
    for p in tree_of(pid).into_iter().skip(1) {
        total += rss_of(p).unwrap_or(0);
    }
    Ok(total)
}

/// The parent pid: field 4, after the parenthesised command name.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// `cutime + cstime` in ticks: fields 16 and 17.
pub fn parse_stat_child_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some(fields.get(13)?.parse::<u64>().ok()? + fields.get(14)?.parse::<u64>().ok()?)
}

/// `VmRSS` of a process in bytes.
pub fn rss_of(pid: u32) -> Result<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading status of {pid}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Reads `VmRSS:   1234 kB` as bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A fresh directory under `base`, emptied if it existed.
pub fn fresh_dir(base: &Path, name: &str) -> Result<PathBuf> {
    let dir = base.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_utime_plus_stime_even_with_spaces_in_the_name() {
        let stat = "4242 (sluice side) S 1 4242 4242 0 -1 4194560 1000 0 0 0 120 35 0 0 20 0 5 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(155));
        assert_eq!(parse_stat_ppid(stat), Some(1));
        assert_eq!(parse_stat_child_ticks(stat), Some(0));
    }

    #[test]
    fn the_tree_of_this_process_starts_with_it() {
        let me = std::process::id();
        assert_eq!(tree_of(me).first(), Some(&me));
        assert!(tree_cpu(me).is_ok());
        assert!(tree_rss(me).unwrap() > 0);
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tsluice\nVmPeak:\t  9000 kB\nVmRSS:\t    8192 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(8192 * 1024));
    }
}

/// A `sluice-sidecar --manifests` process, where it listens, and how long it took to be ready.
#[derive(Debug)]
pub struct Sidecar {
    /// The process.
    pub proc: Proc,
    /// Its API listener.
    pub addr: SocketAddr,
    /// Its admin listener.
    pub admin: SocketAddr,
    /// From spawn to `/readyz` answering 200.
    pub ready: Duration,
}

/// Starts `bin_dir/sluice-sidecar` on `manifests` with a fresh state directory under `work_dir`,
/// logging to `logs/sidecar-<name>.log`, and waits until it is ready.
pub async fn start_sidecar(
    bin_dir: &Path,
    work_dir: &Path,
    name: &str,
    manifests: &Path,
    logs: &Path,
) -> Result<Sidecar> {
    start_sidecar_with_env(bin_dir, work_dir, name, manifests, logs, &[]).await
}

/// [`start_sidecar`] with `env` added to the inherited environment (the tracing row's `OTEL_*`).
pub async fn start_sidecar_with_env(
    bin_dir: &Path,
    work_dir: &Path,
    name: &str,
    manifests: &Path,
    logs: &Path,
    env: &[(&str, String)],
) -> Result<Sidecar> {
    // Port 0 and the addresses the sidecar reports: a port probed free could be taken first.
    let state = fresh_dir(work_dir, &format!("state-{name}"))?;
    let address_file = state.join("addresses.json");
    let args = [
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--admin-listen".into(),
        "127.0.0.1:0".into(),
        "--address-file".into(),
        address_file.display().to_string(),
        "--manifests".into(),
        manifests.display().to_string(),
        "--state-dir".into(),
        state.display().to_string(),
    ];
    let since = Instant::now();
    let started = async {
        let mut proc = Proc::spawn_with_env(
            &format!("sluice-sidecar ({name})"),
            &bin_dir.join("sluice-sidecar"),
            &args,
            env,
            &logs.join(format!("sidecar-{name}.log")),
        )?;
        let reported = proc.wait_for_addresses(&address_file).await?;
        let listener = |flag: &str| {
            reported
                .get(flag)
                .copied()
                .with_context(|| format!("{} names no {flag}", address_file.display()))
        };
        let (addr, admin) = (listener("listen")?, listener("admin-listen")?);
        let ready = proc.wait_ok(admin, "/readyz", since).await?;
        anyhow::Ok(Sidecar {
            proc,
            addr,
            admin,
            ready,
        })
    };
    started
        .await
        .with_context(|| format!("starting the {name} sidecar (its log is in {})", logs.display()))
}
