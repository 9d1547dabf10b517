//! Task-log retention: each task's output is kept in `<state>/logs` for the
//! configured time after it was last written (one week by default, as the
//! blog's CloudWatch log group), then removed; a running task's log stays.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Removes `*.log` files in `dir` not written for `retention`, except those
/// named in `keep` (task ids without `.log`); returns how many went.
pub fn prune(dir: &Path, retention: Duration, now: SystemTime, keep: &HashSet<String>) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".log") else { continue };
        if keep.contains(id) {
            continue;
        }
        let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else { continue };
        if now.duration_since(modified).is_ok_and(|age| age > retention) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_logs_go_and_running_or_recent_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let week = Duration::from_secs(7 * 24 * 3600);
        let now = SystemTime::now();
        for (name, age) in [("old", 8), ("running", 30), ("recent", 1)] {
            let f = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
            f.set_modified(now - Duration::from_secs(age * 24 * 3600)).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not a log").unwrap();
        let keep: HashSet<String> = ["running".to_owned()].into();
        assert_eq!(prune(dir.path(), week, now, &keep), 1);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "recent.log", "running.log"]);
        assert_eq!(prune(&dir.path().join("missing"), week, now, &keep), 0);
    }
}
