//! Whether the kernel killed a container for memory, where the engine
//! cannot say.
//!
//! Under cgroup v1, Podman reports `OOMKilled: false` and exit code 137 for
//! a container the kernel killed at its memory limit: the same as a
//! `kill -9`. So berth asks the kernel itself, with cgroup v1's OOM
//! notification: an eventfd registered on the container's
//! `memory.oom_control` through `cgroup.event_control`. The kernel signals
//! it when the cgroup hits an OOM, and once more when the cgroup is
//! removed; a signal while the cgroup is still there is an OOM. Under
//! cgroup v2 engines read `memory.events` and report `OOMKilled`
//! themselves, so there is nothing to watch.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The watch of one container's OOM notifications.
pub(crate) struct OomWatch {
    fired: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    thread: Option<tokio::task::JoinHandle<()>>,
}

impl OomWatch {
    /// Whether an OOM was seen, once the container has stopped: ends the
    /// watch after a last look at the notifications still pending.
    pub async fn fired(self) -> bool {
        self.done.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread {
            let _ = tokio::time::timeout(Duration::from_secs(2), thread).await;
        }
        self.fired.load(Ordering::SeqCst)
    }
}

/// Watches the memory cgroup of process `pid` (a container's main process).
pub(crate) fn watch(pid: Option<u32>) -> OomWatch {
    let fired = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let registered = pid.and_then(memory_cgroup).map(|dir| register(&dir).map(|r| (dir, r)));
    let thread = match registered {
        Some(Ok((dir, (event, control)))) => {
            let (fired, done) = (fired.clone(), done.clone());
            Some(tokio::task::spawn_blocking(move || wait(&dir, event, control, &fired, &done)))
        }
        Some(Err(e)) => {
            tracing::debug!(?pid, error = %e, "cannot watch a container's memory cgroup for OOM");
            None
        }
        None => None,
    };
    OomWatch { fired, done, thread }
}

/// The cgroup v1 memory folder of `pid`, if memory is a v1 controller here.
fn memory_cgroup(pid: u32) -> Option<PathBuf> {
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "memory").then(|| path.trim_start_matches('/').to_owned())
    })?;
    let dir = Path::new("/sys/fs/cgroup/memory").join(path);
    dir.join("memory.oom_control").exists().then_some(dir)
}

/// Registers an eventfd for the OOM notifications of the cgroup `dir`.
fn register(dir: &Path) -> io::Result<(File, File)> {
    let control = File::open(dir.join("memory.oom_control"))?;
    // SAFETY: eventfd has no memory-safety preconditions; the fd it returns
    // is owned by the File below.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new fd that nothing else owns.
    let event = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    let mut registry = fs::OpenOptions::new().write(true).open(dir.join("cgroup.event_control"))?;
    registry.write_all(format!("{} {}", event.as_raw_fd(), control.as_raw_fd()).as_bytes())?;
    Ok((event, control))
}

/// Waits for notifications until `done` (the container stopped) or the
/// cgroup is gone; sets `fired` on one that came while the cgroup was
/// there (an OOM). Polled, not blocked on: not every kernel notifies the
/// removal of a cgroup, and a thread must not wait for it forever.
fn wait(dir: &Path, mut event: File, _control: File, fired: &AtomicBool, done: &AtomicBool) {
    loop {
        // Read after `done` once more: an OOM notified just before the
        // container's exit was seen is still pending.
        let last = done.load(Ordering::SeqCst);
        let mut poll = libc::pollfd { fd: event.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, if last { 0 } else { 200 }) };
        if ready > 0 {
            let mut count = [0u8; 8];
            if event.read_exact(&mut count).is_err() {
                return;
            }
            if dir.exists() {
                fired.store(true, Ordering::SeqCst);
            }
        }
        if last || !dir.exists() {
            return;
        }
    }
}
