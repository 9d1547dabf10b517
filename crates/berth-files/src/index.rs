//! The listing index: the folder's names, sizes and times kept in memory, so a
//! listing of a large folder does not stat every file on every request.
//!
//! Stat-ing 10,000 files costs about 30 ms of system calls here, the bulk of
//! a `/files` answer. The index is rebuilt from disk whenever the folder's own
//! stamp (mtime, ctime, inode) changed — any create, delete or rename by any
//! process — and at the latest after [`FRESH_FOR`], which bounds how stale the
//! size or time of a file rewritten in place by another process can be. The
//! service's own writes update the index directly, under the volume's commit
//! lock, so a write through berth never costs a rebuild.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::name::FileName;
use crate::volume::Entry;

/// Longest time an index is trusted without a rebuild.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// What identifies one state of the folder itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirStamp {
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

impl DirStamp {
    pub fn of(dir: &Path) -> io::Result<Self> {
        let m = fs::metadata(dir)?;
        Ok(Self { mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()), ino: m.ino() })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub size: u64,
    pub modified: SystemTime,
}

struct Built {
    files: BTreeMap<String, Meta>,
    stamp: DirStamp,
    at: Instant,
}

/// The index of one folder; empty until the first listing.
#[derive(Default)]
pub struct Index {
    built: Mutex<Option<Built>>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Index")
    }
}

impl Index {
    /// Regular files whose name starts with `prefix` and sorts after `after`,
    /// in name order, at most `limit`; and whether more remained.
    pub fn list(&self, root: &Path, prefix: &str, after: Option<&str>, limit: usize) -> io::Result<(Vec<Entry>, bool)> {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = DirStamp::of(root)?;
        let fresh = built.as_ref().is_some_and(|b| b.stamp == stamp && b.at.elapsed() < FRESH_FOR);
        if !fresh {
            *built = Some(Built { files: scan(root)?, stamp, at: Instant::now() });
        }
        let files = &built.as_ref().expect("built above").files;
        // Start at whichever of the prefix and the cursor comes later.
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let mut page: Vec<Entry> = files
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
            .take(limit + 1)
            .map(|(name, m)| Entry { name: name.clone(), size: m.size, modified: m.modified })
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        Ok((page, more))
    }

    /// Records the service's own change to the folder, made while the
    /// folder's stamp was `before`: `edit` updates the index to match. If
    /// someone else changed the folder since the index was built, the index
    /// is dropped instead, so the next listing rebuilds it from disk.
    pub fn apply(&self, root: &Path, before: Option<DirStamp>, edit: impl FnOnce(&mut BTreeMap<String, Meta>)) {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = built.as_mut() else { return };
        match (before, DirStamp::of(root)) {
            (Some(before), Ok(after)) if before == b.stamp => {
                edit(&mut b.files);
                b.stamp = after;
            }
            _ => *built = None,
        }
    }
}

/// Reads the folder: regular files only (not links, folders, temporary files
/// or names no client could send).
fn scan(root: &Path) -> io::Result<BTreeMap<String, Meta>> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if FileName::parse(&name).is_err() {
            continue;
        }
        // DirEntry::metadata does not follow links; a file removed since
        // readdir is skipped.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.file_type().is_file() {
            continue;
        }
        files.insert(name, Meta { size: meta.len(), modified: meta.modified()? });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[Entry]) -> Vec<&str> {
        v.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn sees_changes_made_by_others() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), "1").unwrap();
        let index = Index::default();
        assert_eq!(names(&index.list(dir.path(), "", None, 10).unwrap().0), ["a"]);
        // Another process creates a file: the folder's stamp changes. The
        // stamp's clock may be coarse, so allow for the freshness bound.
        fs::write(dir.path().join("b"), "2").unwrap();
        let deadline = Instant::now() + FRESH_FOR + Duration::from_millis(500);
        loop {
            let (page, _) = index.list(dir.path(), "", None, 10).unwrap();
            if names(&page) == ["a", "b"] {
                break;
            }
            assert!(Instant::now() < deadline, "index never saw the new file");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn own_changes_apply_without_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::default();
        index.list(dir.path(), "", None, 10).unwrap();
        let before = DirStamp::of(dir.path()).unwrap();
        fs::write(dir.path().join("x"), "1").unwrap();
        let name = FileName::parse("x").unwrap();
        index.apply(dir.path(), Some(before), |files| {
            files.insert(name.to_string(), Meta { size: 1, modified: SystemTime::now() });
        });
        assert_eq!(names(&index.list(dir.path(), "", None, 10).unwrap().0), ["x"]);
        let before = DirStamp::of(dir.path()).unwrap();
        fs::remove_file(dir.path().join("x")).unwrap();
        index.apply(dir.path(), Some(before), |files| {
            files.remove(name.as_str());
        });
        assert!(index.list(dir.path(), "", None, 10).unwrap().0.is_empty());
    }

    #[test]
    fn prefix_and_cursor_bound_the_range() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["a1", "b1", "b2", "b3", "c1"] {
            fs::write(dir.path().join(n), n).unwrap();
        }
        let index = Index::default();
        let (page, more) = index.list(dir.path(), "b", None, 2).unwrap();
        assert_eq!((names(&page), more), (vec!["b1", "b2"], true));
        let (page, more) = index.list(dir.path(), "b", Some("b2"), 2).unwrap();
        assert_eq!((names(&page), more), (vec!["b3"], false));
        let (page, _) = index.list(dir.path(), "b", Some("a9"), 10).unwrap();
        assert_eq!(names(&page), ["b1", "b2", "b3"]);
        let (page, _) = index.list(dir.path(), "", Some("b3"), 10).unwrap();
        assert_eq!(names(&page), ["c1"]);
    }
}
