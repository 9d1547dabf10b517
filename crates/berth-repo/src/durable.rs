//! Making finished work survive a power loss.
//!
//! `rustic_core`'s local backend fsyncs each file it writes but not the
//! folder it renames the file into, so a snapshot reported as taken could
//! lose its snapshot, index or pack file to a power cut, while berth's
//! ledger already points at it. A restore writes without any fsync. One
//! `syncfs(2)` of the filesystem when an operation finishes covers both,
//! at the cost of also flushing whatever else is dirty on that filesystem.

use std::{fs::File, os::fd::AsRawFd, path::Path};

use crate::error::RepoError;

/// Flushes the filesystem holding `path` to stable storage.
pub(crate) fn sync_filesystem(path: &Path) -> Result<(), RepoError> {
    let dir = File::open(path).map_err(|e| RepoError::io("open for sync", path, e))?;
    // SAFETY: `dir` is an open descriptor for the whole call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(RepoError::io("sync", path, std::io::Error::last_os_error()));
    }
    Ok(())
}
