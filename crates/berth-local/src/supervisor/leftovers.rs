//! Processes a killed supervisor left behind, and their removal at the next
//! start.
//!
//! A task's own process dies with the supervisor (`PR_SET_PDEATHSIG`), but
//! that signal does not reach what the task started: `sh -c 'server & …'`
//! leaves `server` running, still writing to a volume that the next start
//! snapshots, adopts or restores. So each running task's process group is
//! recorded in a folder of the state (a file named by the group id, holding
//! the task's ARN), removed when the task has stopped, and a new supervisor
//! kills the groups that are still recorded before it starts anything. A
//! process is killed only when it is in the recorded group *and* carries
//! the task's `BERTH_TASK_ARN`: after a reboot, or once the group emptied,
//! the id may belong to something else.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use berth_core::TaskArn;

use crate::usage;

/// Records that the process group `pgid` runs task `arn`.
pub(crate) fn record(dir: &Path, pgid: u32, arn: &TaskArn) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let path = dir.join(pgid.to_string());
    // Written aside and renamed, so a reader never sees half a record.
    let staging = dir.join(format!(".{pgid}.tmp"));
    fs::write(&staging, arn.0.as_bytes())?;
    fs::rename(&staging, path)
}

/// Forgets the record of `pgid`, once its task has stopped.
pub(crate) fn forget(dir: &Path, pgid: u32) {
    match fs::remove_file(dir.join(pgid.to_string())) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(pgid, error = %e, "cannot remove a task's process group record");
        }
        _ => {}
    }
}

/// Kills every process a previous supervisor's tasks left running, and
/// forgets their records; returns how many processes were killed.
pub fn reap(dir: &Path) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    // The recorded groups, each with the marker its processes carry.
    let mut groups: HashMap<u32, String> = HashMap::new();
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        // A staging file of a record that was never renamed has no group.
        if let Some(pgid) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u32>().ok()) {
            groups.insert(pgid, format!("BERTH_TASK_ARN={}", fs::read_to_string(&path)?.trim()));
        }
        files.push(path);
    }
    let killed = if groups.is_empty() { 0 } else { kill_recorded(&groups)? };
    // Forgotten only once their processes are gone: a failed scan keeps them
    // for the next start.
    for path in files {
        fs::remove_file(&path)?;
    }
    Ok(killed)
}

/// Kills the processes of the recorded `groups` (group id → the variable
/// its task's processes carry); returns how many.
fn kill_recorded(groups: &HashMap<u32, String>) -> io::Result<usize> {
    let mut killed = 0;
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // A process may exit while it is read: it is skipped.
        let Some(marker) = usage::process_group(pid).and_then(|g| groups.get(&g)) else { continue };
        let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else { continue };
        if !environ.split(|b| *b == 0).any(|var| var == marker.as_bytes()) {
            continue;
        }
        // SAFETY: kill(2) has no memory-safety preconditions.
        if libc::pid_t::try_from(pid).is_ok_and(|p| unsafe { libc::kill(p, libc::SIGKILL) } == 0) {
            tracing::warn!(pid, task = marker, "killed a process a previous run's task left behind");
            killed += 1;
        }
    }
    Ok(killed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_its_task_and_reaping_an_empty_group_forgets_it() {
        let dir = tempfile::tempdir().unwrap();
        let arn = TaskArn("arn:aws:ecs:local:000000000000:task/berth/none".into());
        // A group id no process has (pid_max is at most 2^22).
        record(dir.path(), 4_194_304 + 7, &arn).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("4194311")).unwrap(), arn.0);
        assert_eq!(reap(dir.path()).unwrap(), 0);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(reap(&dir.path().join("missing")).unwrap(), 0);
    }
}
