//! Whether the kernel killed a container for memory, where the engine
//! cannot say.
//!
//! Under cgroup v1, Podman reports `OOMKilled: false` and exit code 137 for
//! a container the kernel killed at its memory limit: the same as a
//! `kill -9`. So berth asks the kernel itself, with cgroup v1's OOM
//! notification: an eventfd registered on the container's
//! `memory.oom_control` through `cgroup.event_control`. The kernel signals
//! it when the cgroup hits an OOM (and, on some kernels, once more when the
//! cgroup is removed); a notification while the cgroup is still there is an
//! OOM. The eventfd is polled on the runtime, never blocked on: a thread
//! waiting for a removal notice that this machine's kernel never sends
//! kept a test's runtime from shutting down. Under
//! cgroup v2 engines read `memory.events` and report `OOMKilled`
//! themselves, so there is nothing to watch.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// The watch of one container's OOM notifications.
pub(crate) struct OomWatch {
    watch: Option<(PathBuf, AsyncFd<File>, File)>,
    fired: bool,
}

impl OomWatch {
    /// Whether an OOM was seen, asked once the container has stopped: the
    /// notifications still pending are read at once, without waiting.
    pub async fn fired(mut self) -> bool {
        if let Some((dir, event, _control)) = &self.watch {
            // Readable now or not at all: the kernel notified before the kill.
            if let Ok(Ok(mut ready)) = tokio::time::timeout(Duration::ZERO, event.readable()).await {
                let mut count = [0u8; 8];
                if ready.try_io(|e| e.get_ref().read_exact(&mut count)).is_ok_and(|r| r.is_ok()) && dir.exists() {
                    self.fired = true;
                }
            }
        }
        self.fired
    }

    /// Reads notifications as they come (until dropped or the cgroup is
    /// gone); one while the cgroup is still there is an OOM.
    pub async fn follow(&mut self) {
        let Some((dir, event, _control)) = &self.watch else { return std::future::pending().await };
        loop {
            let Ok(mut ready) = event.readable().await else { return std::future::pending().await };
            let mut count = [0u8; 8];
            match ready.try_io(|e| e.get_ref().read_exact(&mut count)) {
                Ok(Ok(())) if dir.exists() => self.fired = true,
                Ok(Ok(())) => return std::future::pending().await,
                Ok(Err(_)) => return std::future::pending().await,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Watches the memory cgroup of process `pid` (a container's main process).
pub(crate) fn watch(pid: Option<u32>) -> OomWatch {
    let registered = pid.and_then(memory_cgroup).map(|dir| register(&dir).map(|r| (dir, r)));
    let watch = match registered {
        // SAFETY: `event` is an open fd the AsyncFd owns for its whole life.
        Some(Ok((dir, (event, control)))) => match unsafe { AsyncFd::register(event) } {
            Ok(event) => Some((dir, event, control)),
            Err(e) => {
                tracing::debug!(?pid, error = %e, "cannot poll a container's OOM notifications");
                None
            }
        },
        Some(Err(e)) => {
            tracing::debug!(?pid, error = %e, "cannot watch a container's memory cgroup for OOM");
            None
        }
        None => None,
    };
    OomWatch { watch, fired: false }
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

/// Registers a non-blocking eventfd for the OOM notifications of the
/// cgroup `dir`; returns it and the control file it is registered on.
fn register(dir: &Path) -> io::Result<(File, File)> {
    let control = File::open(dir.join("memory.oom_control"))?;
    // SAFETY: eventfd has no memory-safety preconditions; the fd it returns
    // is owned by the File below.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new fd that nothing else owns.
    let event = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    let mut registry = fs::OpenOptions::new().write(true).open(dir.join("cgroup.event_control"))?;
    registry.write_all(format!("{} {}", event.as_raw_fd(), control.as_raw_fd()).as_bytes())?;
    Ok((event, control))
}
