//! The state folder lock: one `berth up` per state folder.
//!
//! Two platforms on one folder would run two supervisors launching tasks on
//! the same volumes. An advisory `flock` on `up.lock` is released by the
//! kernel when the process dies, even by `kill -9`, so a crash never leaves
//! a stale lock behind.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

use crate::state::StateDir;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another berth up is running with state folder {0} (stop it with `berth down`)")]
    Held(String),
    #[error("cannot lock the state folder {0}: {1}")]
    Io(String, std::io::Error),
}

/// Held for as long as the platform runs.
pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn acquire(state: &StateDir) -> Result<Self, LockError> {
        let root = state.root().display().to_string();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(state.lock())
            .map_err(|e| LockError::Io(root.clone(), e))?;
        // SAFETY: flock on a descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            return Err(if err.kind() == std::io::ErrorKind::WouldBlock {
                LockError::Held(root)
            } else {
                LockError::Io(root, err)
            });
        }
        Ok(Self { _file: file })
    }
}
