//! The usage sampler against real processes: CPU of a busy loop, memory of
//! an allocation, descendants, and a process that is gone.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use berth_core::autoscale::TaskUsage;
use berth_local::usage::{sample, usage, ProcessTreeSample};

/// How long CPU is measured over.
const WINDOW: Duration = Duration::from_millis(1500);

/// A child in its own process group; the whole group is killed on drop.
struct Proc(Child);

impl Proc {
    fn spawn(program: &str, args: &[&str]) -> Self {
        Self::spawn_with(Command::new(program).args(args).stdin(Stdio::null()))
    }

    fn spawn_with(command: &mut Command) -> Self {
        Proc(command.process_group(0).spawn().unwrap_or_else(|e| panic!("spawn {command:?}: {e}")))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pgid = libc::pid_t::try_from(self.0.id()).unwrap();
        // SAFETY: signals our own child's process group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Samples each pid, waits [`WINDOW`], samples again: usage per pid.
fn measure(pids: &[u32], cpu_units: u32, memory_mib: u32) -> Vec<(ProcessTreeSample, TaskUsage)> {
    let before: Vec<_> = pids.iter().map(|p| sample(*p).unwrap()).collect();
    thread::sleep(WINDOW);
    pids.iter()
        .zip(before)
        .map(|(p, prev)| {
            let next = sample(*p).unwrap();
            (next, usage(&prev, &next, cpu_units, memory_mib))
        })
        .collect()
}

fn resident_bytes_of(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: reads a system constant.
    pages * u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap()
}

#[test]
fn a_busy_loop_uses_more_cpu_than_sleep() {
    let busy = Proc::spawn("sh", &["-c", "while :; do :; done"]);
    let idle = Proc::spawn("sleep", &["30"]);
    // 1024 units: percent of one core.
    let got = measure(&[busy.pid(), idle.pid()], 1024, 512);
    let (busy_cpu, idle_cpu) = (got[0].1.cpu_percent_of_reservation, got[1].1.cpu_percent_of_reservation);
    assert!(busy_cpu >= 20.0, "busy loop: {busy_cpu}% of a core");
    assert!(busy_cpu <= 150.0, "one thread cannot use much more than a core: {busy_cpu}%");
    assert!(idle_cpu <= 5.0, "sleep: {idle_cpu}% of a core");
    assert!(busy_cpu > idle_cpu + 15.0);
    assert!(got[0].0.cpu_ticks > 0);
}

#[test]
fn an_allocation_shows_in_resident_memory() {
    // Filled bytes, so every page is touched and resident.
    let script = "import sys, time\nb = b'\\x01' * (200 * 1024 * 1024)\nprint('ready', flush=True)\ntime.sleep(30)\n";
    let mut child =
        Proc::spawn_with(Command::new("python3").args(["-c", script]).stdin(Stdio::null()).stdout(Stdio::piped()));
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    let got = measure(&[child.pid()], 256, 512);
    let (next, u) = got[0];
    let mib = next.rss_bytes as f64 / (1024.0 * 1024.0);
    assert!(mib >= 180.0, "resident {mib:.1} MiB");
    assert!(mib <= 400.0, "resident {mib:.1} MiB");
    let expected = mib / 512.0 * 100.0;
    assert!((u.memory_percent_of_reservation - expected).abs() < 1e-6, "{u:?} vs {expected}");
    assert!((35.0..=80.0).contains(&u.memory_percent_of_reservation), "{u:?}");
}

#[test]
fn descendants_count() {
    let parent = Proc::spawn("sh", &["-c", "sleep 30 & while :; do :; done & wait"]);
    // Let the shell start its children.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sample(parent.pid()).unwrap().rss_bytes <= resident_bytes_of(parent.pid()) {
        assert!(std::time::Instant::now() < deadline, "the children never showed up");
        thread::sleep(Duration::from_millis(50));
    }
    let got = measure(&[parent.pid()], 1024, 512);
    let (next, u) = got[0];
    // The shell itself waits; the CPU is its child's busy loop.
    assert!(u.cpu_percent_of_reservation >= 20.0, "{u:?}");
    // Three processes' pages: more than the shell's alone.
    assert!(next.rss_bytes > resident_bytes_of(parent.pid()), "{next:?}");
}

#[test]
fn a_process_that_is_gone_is_an_error() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let err = sample(pid).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    // Beyond any pid_max.
    assert_eq!(sample(u32::MAX).unwrap_err().kind(), std::io::ErrorKind::NotFound);
}
