//! Measurement helpers shared by every suite: latency histograms, process
//! CPU and memory read from `/proc`, and a description of the machine.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// Linux exports process times in `USER_HZ` ticks, fixed at 100 per second
/// for user space on every architecture Linux supports.
const TICKS_PER_SEC: f64 = 100.0;

/// A latency histogram in nanoseconds (1 ns to 10 min, 3 significant
/// digits), so that loopback round trips of a few µs keep their precision.
#[derive(Clone)]
pub struct LatHist(Histogram<u64>);

impl Default for LatHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatHist {
    /// An empty histogram.
    pub fn new() -> Self {
        // The bounds are constants that `new_with_bounds` accepts: low ≥ 1,
        // high ≥ 2 × low, 3 significant figures.
        LatHist(
            Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)
                .expect("constant histogram bounds are valid"),
        )
    }

    /// Records one duration (clamped into the histogram's range).
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.0.saturating_record(ns);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &LatHist) {
        // Same bounds on both sides, so `add` cannot fail; fall back to
        // recording the other's quantiles if it ever does.
        if self.0.add(&other.0).is_err() {
            for v in other.0.iter_recorded() {
                self.0
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    /// Number of values.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Percentiles in microseconds.
    pub fn summary(&self) -> Lat {
        let us = |ns: u64| ns as f64 / 1000.0;
        let h = &self.0;
        if h.is_empty() {
            return Lat::default();
        }
        Lat {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Lat {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest value.
    pub max_us: f64,
}

/// CPU time (user + system) of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// CPU seconds of the thread of `pid` named `name` (its `comm`, at most
/// 15 bytes), e.g. the server's group-commit thread.
pub fn thread_cpu_seconds(pid: u32, name: &str) -> Option<f64> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        return Some((utime + stime) / TICKS_PER_SEC);
    }
    None
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// Watches a process's CPU use between [`ProcWatch::start`] and
/// [`ProcWatch::finish`].
pub struct ProcWatch {
    pid: Option<u32>,
    cpu0: Option<f64>,
    t0: Instant,
}

/// CPU and memory of a process over a measured interval.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProcFigures {
    /// CPU seconds (user + system) spent in the interval.
    pub cpu_seconds: f64,
    /// CPU use in the interval, percent of one core.
    pub cpu_percent: f64,
    /// Resident memory at the end, MiB.
    pub rss_mib: f64,
    /// Peak resident memory over the process's life, MiB.
    pub peak_rss_mib: f64,
}

impl ProcWatch {
    /// Starts watching `pid` (nothing is measured when it is `None`).
    pub fn start(pid: Option<u32>) -> Self {
        ProcWatch {
            pid,
            cpu0: pid.and_then(cpu_seconds),
            t0: Instant::now(),
        }
    }

    /// The figures since [`ProcWatch::start`].
    pub fn finish(&self) -> Option<ProcFigures> {
        let pid = self.pid?;
        let cpu = cpu_seconds(pid)? - self.cpu0?;
        let secs = self.t0.elapsed().as_secs_f64().max(1e-9);
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        Some(ProcFigures {
            cpu_seconds: cpu,
            cpu_percent: 100.0 * cpu / secs,
            rss_mib: mib(rss_bytes(pid).unwrap_or(0)),
            peak_rss_mib: mib(status_bytes(pid, "VmHWM:").unwrap_or(0)),
        })
    }
}

/// The machine the figures come from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub nproc: usize,
    /// CPU model name from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Block device, file system and rotational flag of the bench's
    /// temporary directory (where every fsync of the run lands).
    pub disk: String,
    /// Load average (1, 5, 15 min) when the run started: other work on a
    /// shared machine shows here.
    pub loadavg_at_start: String,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads the machine's description; `dir` is where the run writes.
    pub fn probe(dir: &Path) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / (1024.0 * 1024.0))
            .unwrap_or(0.0);
        Machine {
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model,
            memory_gib,
            disk: disk_of(dir),
            loadavg_at_start: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        }
    }
}

/// "device (fstype, ssd|rotational)" of the mount holding `dir`.
fn disk_of(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let best = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1])).then(|| (f[0], f[1], f[2]))
        })
        .max_by_key(|(_, mnt, _)| mnt.len());
    let Some((dev, mnt, fstype)) = best else {
        return "unknown".into();
    };
    let name = dev.rsplit('/').next().unwrap_or(dev);
    let base: String = name
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .to_string();
    let rot = [name, base.as_str()].iter().find_map(|n| {
        std::fs::read_to_string(format!("/sys/block/{n}/queue/rotational"))
            .ok()
            .map(|s| s.trim() == "1")
    });
    let kind = match rot {
        Some(true) => "rotational",
        Some(false) => "non-rotational (virtual disk or SSD)",
        None => "kind unknown",
    };
    format!("{dev} on {mnt} ({fstype}, {kind})")
}

/// Finds the process whose command line holds every one of `needles` (the
/// server child, identified by its data directory).
pub fn find_pid(needles: &[&str]) -> Option<u32> {
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if needles.iter().all(|n| cmd.contains(n)) {
            return Some(pid);
        }
    }
    None
}

/// `n / secs`, 0 when no time passed.
pub fn rate(n: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        n / secs
    } else {
        0.0
    }
}
