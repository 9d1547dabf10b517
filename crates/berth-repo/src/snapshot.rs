//! Taking a snapshot of a volume directory.
//!
//! A snapshot stores the volume's contents under the fixed path
//! [`VOLUME_PATH`], whatever folder the volume lives in on disk (volumes are
//! renamed between generations); restic shows every snapshot of a claim with
//! the same path. The parent is chosen by berth, not by rustic's
//! host-and-path matching: the newest snapshot carrying the same `claim=`
//! tag. Files whose size and mtime match the parent's are not read again,
//! so an unchanged volume snapshots in time proportional to its file count.
//!
//! `rustic_core` skips (and only logs) entries it cannot read; berth watches
//! the source for such errors and deletes the snapshot rather than keep one
//! that silently misses files.

use std::{
    io::{self, Read},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rustic_core::{
    BackupOptions, Excludes, LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions, ParentOptions, ReadSource,
    ReadSourceEntry, ReadSourceOpen, RusticResult, SnapshotOptions,
};

use crate::{
    error::{describe, RepoError},
    repo::{load_snapshots_lenient, Repo},
    snapshot_meta::{claim_tag, SnapshotInfo, SnapshotMeta},
};

/// The path every snapshot stores its volume under.
pub const VOLUME_PATH: &str = "/volume";

impl Repo {
    /// Snapshots the directory `source` as a volume of `meta.claim`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad claim or tag, `SourceUnreadable` if any
    /// entry of the volume could not be read (no snapshot is kept then),
    /// `NoSpace` when the repository's disk fills up.
    pub fn snapshot(&self, source: &Path, meta: &SnapshotMeta) -> Result<SnapshotInfo, RepoError> {
        self.snapshot_restored(source, meta, None)
    }

    /// [`Self::snapshot`] of a volume that was restored from a snapshot (see
    /// [`Restored`]): while that snapshot is still the parent, the files the
    /// restore wrote and nothing changed since are not read again.
    pub fn snapshot_restored(
        &self,
        source: &Path,
        meta: &SnapshotMeta,
        restored: Option<&Restored>,
    ) -> Result<SnapshotInfo, RepoError> {
        let tags = meta.to_tags()?;
        let source = source.canonicalize().map_err(|e| RepoError::io("open volume", source, e))?;
        if !source.is_dir() {
            return Err(RepoError::invalid(format!("volume {} is not a directory", source.display())));
        }

        // Indexed now, after any earlier snapshot finished: see repo.rs.
        let repo = self.fresh()?.to_indexed_ids().map_err(|e| self.rustic_err(&e))?;

        // A damaged snapshot file must not stop new snapshots: the parent
        // only saves reading unchanged files.
        let claim = claim_tag(&meta.claim);
        let (snaps, _unreadable) = load_snapshots_lenient(&repo, self)?;
        let parent = snaps.iter().rev().find(|s| s.tags.contains(&claim)).map(|s| s.id.to_hex().to_string());
        let restored_before = restored.filter(|r| parent.as_deref() == Some(r.snapshot.as_str())).map(|r| r.before);

        let mut snap = SnapshotOptions::default()
            .command(format!("berth snapshot {}", meta.claim))
            .to_snapshot()
            .map_err(|e| self.rustic_err(&e))?;
        snap.tags = tags;
        snap.program_version = format!("berth {}", env!("CARGO_PKG_VERSION"));

        let opts = BackupOptions::default().as_path(PathBuf::from(VOLUME_PATH)).parent_opts(
            ParentOptions::default()
                // Without a snapshot of this claim, no parent at all: with
                // an empty list rustic would pick one itself by host and
                // path, and every claim's snapshots share the path /volume,
                // so another claim's files would count as unchanged ones.
                .force(parent.is_none())
                .parents(parent.into_iter().collect::<Vec<_>>())
                // A file is unchanged if its type, size, mtime, ctime and
                // inode are the parent's (restic's default)...
                .ignore_inode(false)
                .ignore_ctime(false)
                // ...or, in a volume restored from the parent, if the
                // restore was the last to change it: a restored file has a
                // new inode and ctime, and without this the first snapshot
                // of every restored generation read all its bytes again.
                .restored_before(restored_before),
        );

        // An override glob prefixed with `!` leaves its matches out; with no
        // other glob, everything else stays in.
        let excludes = Excludes::default().globs(meta.exclude.iter().map(|g| format!("!{g}")).collect::<Vec<_>>());
        let local = LocalSource::new(
            LocalSourceSaveOptions::default(),
            &excludes,
            &LocalSourceFilterOptions::default(),
            &[&source],
        )
        .map_err(|e| self.rustic_err(&e))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let guarded = Guarded { inner: local, errors: errors.clone() };

        let snap =
            repo.archive(&opts, &guarded, snap, std::slice::from_ref(&source)).map_err(|e| self.rustic_err(&e))?;

        let errors = std::mem::take(&mut *lock(&errors));
        if !errors.is_empty() {
            // The packs it wrote stay until prune; the snapshot must go.
            let _ = repo.delete_snapshots(&[snap.id]);
            return Err(RepoError::SourceUnreadable { path: source, errors });
        }
        // Only a durable snapshot may be reported: the ledger records it next.
        self.sync()?;
        Ok(SnapshotInfo::from_file(&snap))
    }
}

/// A volume restored from a snapshot, as its next snapshot needs to know.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Restored {
    /// The full id of the snapshot it was restored from.
    pub snapshot: String,
    /// Nanoseconds since the epoch: no entry the restore wrote has a later
    /// ctime, and the clock had passed it before anything else could write
    /// (see [`wait_past`]). An entry with a later ctime changed since.
    pub before: i128,
}

impl Restored {
    /// The restore of `snapshot` into `target`, which has just finished:
    /// the newest ctime in it, once the coarse clock the kernel stamps
    /// ctimes with has passed it.
    pub fn of(snapshot: &str, target: &Path) -> Result<Self, RepoError> {
        let before = newest_ctime(target).map_err(|e| RepoError::io("read the restored volume", target, e))?;
        wait_past(before);
        Ok(Self { snapshot: snapshot.to_owned(), before })
    }
}

/// The newest ctime (ns since the epoch) of `root` and everything in it.
fn newest_ctime(root: &Path) -> io::Result<i128> {
    use std::os::unix::fs::MetadataExt;
    let ctime = |m: &std::fs::Metadata| i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec());
    let mut newest = ctime(&std::fs::symlink_metadata(root)?);
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            newest = newest.max(ctime(&meta));
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(newest)
}

/// Waits until the kernel's coarse real-time clock, which it stamps ctimes
/// with, is past `ns`: a write after this returns gets a later ctime even
/// within the same clock tick (a few milliseconds at most).
fn wait_past(ns: i128) {
    loop {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec into `now`.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
        if i128::from(now.tv_sec) * 1_000_000_000 + i128::from(now.tv_nsec) > ns {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A source that records every error it hands to `rustic_core`, which
/// would otherwise only log it and leave the entry out of the snapshot.
struct Guarded<R> {
    inner: R,
    errors: Arc<Mutex<Vec<String>>>,
}

impl<R> ReadSource for Guarded<R>
where
    R: ReadSource,
    R::Open: Send,
    R::Iter: Send,
{
    type Open = GuardedOpen<R::Open>;
    type Iter = GuardedIter<R::Iter>;

    fn size(&self) -> RusticResult<Option<u64>> {
        self.inner.size()
    }

    fn entries(&self) -> Self::Iter {
        GuardedIter { inner: self.inner.entries(), errors: self.errors.clone() }
    }
}

struct GuardedIter<I> {
    inner: I,
    errors: Arc<Mutex<Vec<String>>>,
}

impl<I, O> Iterator for GuardedIter<I>
where
    I: Iterator<Item = RusticResult<ReadSourceEntry<O>>>,
{
    type Item = RusticResult<ReadSourceEntry<GuardedOpen<O>>>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.next()?;
        Some(match item {
            Ok(entry) => Ok(ReadSourceEntry {
                path: entry.path,
                node: entry.node,
                open: entry.open.map(|inner| GuardedOpen { inner, errors: self.errors.clone() }),
            }),
            Err(err) => {
                lock(&self.errors).push(describe(&*err));
                Err(err)
            }
        })
    }
}

struct GuardedOpen<O> {
    inner: O,
    errors: Arc<Mutex<Vec<String>>>,
}

impl<O: ReadSourceOpen> ReadSourceOpen for GuardedOpen<O> {
    type Reader = GuardedReader<O::Reader>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self.inner.open() {
            Ok(inner) => Ok(GuardedReader { inner, errors: self.errors }),
            Err(err) => {
                lock(&self.errors).push(describe(&*err));
                Err(err)
            }
        }
    }
}

struct GuardedReader<R> {
    inner: R,
    errors: Arc<Mutex<Vec<String>>>,
}

impl<R: Read> Read for GuardedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|err| {
            if err.kind() != io::ErrorKind::Interrupted {
                lock(&self.errors).push(format!("reading a file: {err}"));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_core::{repofile::Node, ErrorKind, RusticError};

    /// A source of one entry that cannot be listed and one whose reads fail.
    struct Failing;

    struct FailingReader;

    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk went away"))
        }
    }

    impl ReadSource for Failing {
        type Open = FailingReader;
        type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<FailingReader>>>;

        fn size(&self) -> RusticResult<Option<u64>> {
            Ok(None)
        }

        fn entries(&self) -> Self::Iter {
            vec![
                Err(RusticError::new(ErrorKind::InputOutput, "permission denied")),
                Ok(ReadSourceEntry { path: "/v/f".into(), node: Node::default(), open: Some(FailingReader) }),
            ]
            .into_iter()
        }
    }

    #[test]
    fn every_error_the_archiver_would_skip_is_recorded() {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let source = Guarded { inner: Failing, errors: errors.clone() };
        let mut entries = source.entries();
        assert!(entries.next().unwrap().is_err());
        let entry = entries.next().unwrap().unwrap();
        let mut reader = entry.open.unwrap().open().unwrap();
        assert!(reader.read(&mut [0; 8]).is_err());
        let errors = lock(&errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("permission denied"));
        assert!(errors[1].contains("disk went away"));
    }
}
