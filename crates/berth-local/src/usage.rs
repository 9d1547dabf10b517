//! Reads how much CPU and memory a local task uses, for auto scaling.
//!
//! A *process-tree sample* is the CPU time and resident memory of a task's
//! process and all its descendants at one instant, read from `/proc`. Two
//! samples of the same task give its [`TaskUsage`]: CPU in percent of the
//! task's CPU units (1024 units = one core) over the interval between them,
//! and memory in percent of the task's MiB at the later one — the readings
//! core's `autoscale::decide` tracks, as ECS's `CPUUtilization` and
//! `MemoryUtilization` do for a Fargate task.
//!
//! Caveats: descendants are found by scanning every `/proc/<pid>/stat` for
//! its parent, once per sample (no kernel option needed, fine at one sample
//! every few seconds). CPU time counts the reaped children of processes in
//! the tree (`cutime`, `cstime`), so short-lived commands a task runs are
//! not lost; a descendant that leaves the tree (daemonizes) takes its time
//! with it, and a counter that goes backwards reads as no CPU. Resident
//! memory counts pages shared between processes of the tree once per process.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_core::autoscale::{TaskUsage, UsageSample};

/// CPU time and resident memory of a process tree at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessTreeSample {
    /// User and system time of the tree, in clock ticks (`CLK_TCK` a second).
    pub cpu_ticks: u64,
    /// Resident memory of the tree, in bytes.
    pub rss_bytes: u64,
    /// When it was read.
    pub at: Instant,
}

/// One process's line of `/proc/<pid>/stat`, the fields used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    ppid: u32,
    /// The process group.
    pgrp: u32,
    /// utime + stime + cutime + cstime, in ticks.
    ticks: u64,
    /// Resident pages.
    rss_pages: u64,
}

/// Samples the process `pid` and all its descendants. Fails (`NotFound`)
/// when `pid` does not exist; descendants that exit meanwhile are skipped.
pub fn sample(pid: u32) -> io::Result<ProcessTreeSample> {
    epoch();
    let at = Instant::now();
    let root = read_stat(pid)?;
    let mut stats = HashMap::from([(pid, root)]);
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in fs::read_dir("/proc")? {
        let Some(other) = entry?.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if other == pid {
            continue;
        }
        // Gone since the listing, or unreadable: not part of any tree we can see.
        if let Ok(stat) = read_stat(other) {
            children.entry(stat.ppid).or_default().push(other);
            stats.insert(other, stat);
        }
    }
    let (mut cpu_ticks, mut rss_pages) = (0u64, 0u64);
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let stat = stats[&p];
        cpu_ticks = cpu_ticks.saturating_add(stat.ticks);
        rss_pages = rss_pages.saturating_add(stat.rss_pages);
        todo.extend(children.remove(&p).unwrap_or_default());
    }
    Ok(ProcessTreeSample { cpu_ticks, rss_bytes: rss_pages.saturating_mul(page_size()), at })
}

/// The usage of a task with `cpu_units` and `memory_mib` between two
/// samples of its tree: CPU over the interval, memory at `next`. A zero
/// reservation reads as 0 %, as does CPU over an empty interval.
pub fn usage(prev: &ProcessTreeSample, next: &ProcessTreeSample, cpu_units: u32, memory_mib: u32) -> TaskUsage {
    // The interval straight from the two instants, whenever they were read.
    let (mut from, mut to) = (prev.reading(), next.reading());
    (from.at, to.at) = (Duration::ZERO, next.at.saturating_duration_since(prev.at));
    to.usage_since(&from, cpu_units, memory_mib)
}

impl ProcessTreeSample {
    /// Core's view of this sample: CPU time from clock ticks, and the
    /// instant on this process's monotonic clock.
    pub fn reading(&self) -> UsageSample {
        let hz = clock_ticks();
        let cpu_time =
            Duration::from_secs(self.cpu_ticks / hz) + Duration::from_nanos((self.cpu_ticks % hz) * 1_000_000_000 / hz);
        UsageSample { cpu_time, memory_bytes: self.rss_bytes, at: self.at.saturating_duration_since(epoch()) }
    }
}

/// Now, as a [`UsageSample::at`] reading.
pub(crate) fn now() -> Duration {
    let epoch = epoch();
    Instant::now().saturating_duration_since(epoch)
}

/// The origin of [`UsageSample::at`] readings: set before the first sample
/// is read, so every sample's instant is after it.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The process group of process `pid`; `None` when it is gone or unreadable.
pub(crate) fn process_group(pid: u32) -> Option<u32> {
    read_stat(pid).ok().map(|s| s.pgrp)
}

fn read_stat(pid: u32) -> io::Result<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("unreadable /proc/{pid}/stat")))
}

/// Parses `/proc/<pid>/stat` (proc(5)). The command name, field 2, is in
/// parentheses and may hold spaces and parentheses itself: fields are
/// counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0, so field n is index n - 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ticks = [14, 15, 16, 17].into_iter().map(field).sum::<Option<u64>>()?;
    let id = |n: usize| u32::try_from(field(n)?).ok();
    Some(Stat { ppid: id(4)?, pgrp: id(5)?, ticks, rss_pages: field(24)? })
}

/// Clock ticks a second (`sysconf(_SC_CLK_TCK)`, 100 on Linux in practice).
fn clock_ticks() -> u64 {
    // SAFETY: sysconf reads a constant of the system; no memory is involved.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// Bytes per page (`sysconf(_SC_PAGESIZE)`).
fn page_size() -> u64 {
    // SAFETY: as in `clock_ticks`.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_stat_with_an_awkward_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime priority nice threads itrealvalue starttime vsize rss …
        let line =
            "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 11 22 33 44 20 0 1 0 5 1000 256 18446744073709551615";
        assert_eq!(parse_stat(line), Some(Stat { ppid: 7, pgrp: 42, ticks: 110, rss_pages: 256 }));
        assert_eq!(parse_stat("42 (x) S"), None);
    }

    #[test]
    fn this_process_group_is_read_from_proc() {
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() } as u32;
        assert_eq!(process_group(std::process::id()), Some(own));
    }

    #[test]
    fn usage_math() {
        let at = Instant::now();
        let hz = clock_ticks();
        let prev = ProcessTreeSample { cpu_ticks: 1000, rss_bytes: 0, at };
        // Half a core for 2 s, 128 MiB resident.
        let next = ProcessTreeSample { cpu_ticks: 1000 + hz, rss_bytes: 128 << 20, at: at + Duration::from_secs(2) };
        // 256 units are a quarter core: half a core is 200 % of it.
        let u = usage(&prev, &next, 256, 512);
        assert!((u.cpu_percent_of_reservation - 200.0).abs() < 1e-9, "{u:?}");
        assert!((u.memory_percent_of_reservation - 25.0).abs() < 1e-9, "{u:?}");
        assert!((usage(&prev, &next, 1024, 512).cpu_percent_of_reservation - 50.0).abs() < 1e-9);
        // No interval, no reservation, a counter gone backwards: 0, not a panic or infinity.
        assert_eq!(usage(&next, &next, 256, 512).cpu_percent_of_reservation, 0.0);
        assert_eq!(usage(&prev, &next, 0, 0), TaskUsage::default());
        let back = ProcessTreeSample { cpu_ticks: 0, ..next };
        assert_eq!(usage(&prev, &back, 256, 512).cpu_percent_of_reservation, 0.0);
    }
}
