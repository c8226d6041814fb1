//! What the run ran on, and what else was using the machine meanwhile.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::procs;
use super::results::Machine;

/// The machine's description, with the load average now.
pub fn describe(oha: &Path, repo: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024);
    // The run's own outputs (the fan-out's results are copied in before the driver starts) do
    // not make the measured tree dirty.
    let outputs_excluded = [
        "status",
        "--porcelain",
        "--",
        ".",
        ":!BENCHMARKS.md",
        ":!tests/bench/results",
    ];
    let dirty = command(repo, "git", &outputs_excluded).is_some_and(|s| !s.is_empty());
    let commit = command(repo, "git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        load_before: load_average(),
        load_after: String::new(),
        busy_with: Vec::new(),
        other_cpu_cores: 0.0,
        rustc: command(repo, "rustc", &["-V"]).unwrap_or_default(),
        oha: command(repo, &oha.to_string_lossy(), &["--version"]).unwrap_or_default(),
        commit: if dirty { format!("{commit}+dirty") } else { commit },
    }
}

/// The 1, 5 and 15-minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn command(dir: &Path, program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).current_dir(dir).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// CPU time the whole machine spent busy (every core; idle and I/O wait excluded), from `/proc/stat`.
pub fn system_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks = stat.lines().next().map_or(0, parse_system_busy);
    procs::ticks_to_duration(ticks)
}

/// Busy ticks of the `cpu` line: user, nice, system, irq, softirq, steal.
pub fn parse_system_busy(line: &str) -> u64 {
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| fields.get(i)).sum()
}

/// CPU of this process and of the children it has waited for (`utime stime cutime cstime`).
pub fn self_and_children() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let ticks = stat.rfind(')').map_or(0, |i| {
        let fields: Vec<&str> = stat[i + 1..].split_whitespace().collect();
        // After the name, field 3 is first: utime..cstime are fields 14..17.
        (11..=14).filter_map(|k| fields.get(k)?.parse::<u64>().ok()).sum()
    });
    procs::ticks_to_duration(ticks)
}

/// CPU used by every process, by pid: `(command name, cpu)`.
#[derive(Debug, Default)]
pub struct CpuCensus {
    by_pid: HashMap<u32, (String, Duration)>,
}

impl CpuCensus {
    /// Reads every process's CPU now.
    pub fn take() -> Self {
        let mut by_pid = HashMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Self { by_pid };
        };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let name = stat
                .split_once('(')
                .and_then(|(_, r)| r.rsplit_once(')'))
                .map_or_else(String::new, |(n, _)| n.to_owned());
            if let Some(ticks) = procs::parse_stat_cpu_ticks(&stat) {
                by_pid.insert(pid, (name, procs::ticks_to_duration(ticks)));
            }
        }
        Self { by_pid }
    }

    /// CPU used since `before` by processes not in `ours` (nor named in `our_names`), summed by
    /// command name, largest first. Processes that started and ended in between are not seen:
    /// this names the busiest others; [`system_busy`] gives the total.
    pub fn others_since(&self, before: &CpuCensus, ours: &HashSet<u32>, our_names: &[&str]) -> Vec<(String, Duration)> {
        let mut by_name: BTreeMap<String, Duration> = BTreeMap::new();
        for (pid, (name, cpu)) in &self.by_pid {
            if ours.contains(pid) || our_names.iter().any(|n| name.starts_with(n)) {
                continue;
            }
            let earlier = before
                .by_pid
                .get(pid)
                .filter(|(n, _)| n == name)
                .map_or(Duration::ZERO, |(_, c)| *c);
            let used = cpu.saturating_sub(earlier);
            if !used.is_zero() {
                *by_name.entry(name.clone()).or_default() += used;
            }
        }
        let mut list: Vec<_> = by_name.into_iter().collect();
        list.sort_by_key(|(_, cpu)| std::cmp::Reverse(*cpu));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_busy_leaves_out_idle_and_iowait() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        assert_eq!(parse_system_busy("cpu  100 5 50 9000 300 1 2 3 0 0"), 161);
    }
}
