//! An open snapshot repository: opening, creating, listing and forgetting.
//!
//! A [`Repo`] is a handle on a restic-format repository that proved its
//! password once. It keeps the decrypted master key rather than a
//! `rustic_core::Repository`, and every operation opens (and, where it needs
//! one, indexes) the repository afresh: an index read before a snapshot does
//! not know the blobs that snapshot wrote, so a long-lived indexed handle
//! would store everything again on the next snapshot, and would miss
//! snapshots written by other handles or processes. Opening with the master
//! key skips the deliberately slow password derivation, so this costs one
//! read of the config and the index files per operation.
//!
//! `rustic_core` takes no locks: several handles, threads and processes may
//! snapshot into one repository at the same time (each writes its own pack,
//! index and snapshot files), and prune only marks unused packs for deletion
//! and deletes them in a later prune once they stayed unused for 23 hours.

use std::{
    collections::BTreeSet,
    fmt,
    fs::{self, File},
    path::{Path, PathBuf},
};

use bytesize::ByteSize;
use rustic_core::{
    repofile::{MasterKey, SnapshotFile, SnapshotId},
    ConfigOptions, Credentials, FileType, KeyOptions, Open, OpenStatus, Repository, RepositoryBackends,
    RepositoryOptions,
};

use crate::{
    durable::sync_filesystem,
    error::{describe, RepoError},
    location::Location,
    progress::{Bars, Progress},
    snapshot_meta::SnapshotInfo,
};

/// Lock file taken while `open_or_init` decides whether to create the
/// repository, so two first snapshots cannot create two repositories (two
/// `config` files with different keys) in one folder.
const INIT_LOCK: &str = ".berth-init.lock";

/// The folders `rustic_core` creates before it writes the key and config;
/// a folder holding only these was left by an interrupted `init`.
const SKELETON: &[&str] = &["data", "index", "keys", "locks", "snapshots"];

/// zstd level for new repositories. On the benchmark's 2.07 GiB data set
/// level 1 left the repository 1.4 % larger than restic's (1908 against
/// 1881 MiB); level 3, rustic's default, about as large as restic's (within
/// 0.2 % either way between runs, berth's smaller chunks compressing a
/// little worse); level 4 saves another 2 % on the set's text (zstd CLI on
/// its 1 MiB pieces: 77.3 against 75.8 MB) at the same speed on random
/// data, now that each thread keeps its zstd context (vendor/rustic_core:
/// with a new context per blob, level 4's larger tables cost 16-17 s
/// against level 3's 10-12 s for the first snapshot, in page faults).
/// Later snapshots compress only what changed.
const COMPRESSION_LEVEL: i32 = 4;

/// Content-defined chunking: no cut in the first `CHUNK_SIZE` bytes of a
/// chunk, then a cut where the rolling hash's low bits are zero, one byte
/// in `CHUNK_SIZE` (so chunks average twice this, 1 MiB). restic's and
/// rustic's default (mean 1 MiB after a 512 KiB minimum) averages 1.5 MiB
/// and rolls the hash over two thirds of every byte read; this rolls it
/// over half, which is most of the CPU of a snapshot that re-reads a
/// changed large file, and every chunk in the snapshot's queues is smaller.
/// On the benchmark: the 1 %-change snapshot 2.99 → 2.74 s, the first
/// snapshot's peak memory 95 → 78 MiB, the repository the same size.
/// restic reads any chunking (it ignores these config fields).
const CHUNK_SIZE: ByteSize = ByteSize::kib(512);

/// Target size of data packs. A snapshot holds the pack it is filling in
/// memory: rustic's default of 32 MiB, growing with the repository without
/// limit, made a 1.2 GiB snapshot peak at 235 MiB (16 MiB: 146 MiB).
const DATAPACK_SIZE: ByteSize = ByteSize::mib(16);
/// Packs grow with the square root of the repository size; stop at this.
const DATAPACK_SIZE_LIMIT: ByteSize = ByteSize::mib(64);

/// An open snapshot repository.
pub struct Repo {
    /// The repository's folder; `None` for a repository in S3.
    pub(crate) dir: Option<PathBuf>,
    /// The location as the user gave it, for messages.
    pub(crate) name: String,
    pub(crate) backends: RepositoryBackends,
    pub(crate) key: MasterKey,
    progress: Progress,
}

impl fmt::Debug for Repo {
    // Hand-written so the master key never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repo").field("location", &self.name).field("progress", &self.progress).finish_non_exhaustive()
    }
}

impl Repo {
    /// Opens the repository at `location`: a folder, `local:FOLDER`, or
    /// (with the `s3` feature) `s3://BUCKET/PREFIX?endpoint=URL&region=R`
    /// with credentials from the `AWS_*` environment variables.
    ///
    /// # Errors
    ///
    /// `NotFound` when there is no repository there, `WrongPassword` when no
    /// key opens with `password`, `Unsupported` for other remote URLs;
    /// for S3 `Unreachable`, `AccessDenied` and `BucketNotFound`.
    pub fn open(location: &str, password: &str, progress: Progress) -> Result<Repo, RepoError> {
        let loc = Location::parse(location)?;
        let backends = loc.backends(location)?;
        let repo = new_repository(&backends, progress, location)?;
        if repo.config_id().map_err(|e| RepoError::from_rustic(location, &e))?.is_none() {
            return Err(RepoError::NotFound { location: location.to_string() });
        }
        let open =
            repo.open(&Credentials::password(password)).map_err(|e| RepoError::from_rustic_open(location, &e))?;
        Ok(Self::from_open(&loc, location, backends, &open, progress))
    }

    /// Opens the repository at `location`, creating it (and the folder) if
    /// there is none yet. A folder that has other files and no repository
    /// is refused rather than filled.
    ///
    /// # Errors
    ///
    /// As [`Repo::open`], plus `NotARepository` and I/O errors creating it.
    pub fn open_or_init(location: &str, password: &str, progress: Progress) -> Result<Repo, RepoError> {
        let loc = Location::parse(location)?;
        let lock = match loc.local_path() {
            Some(dir) => Some(lock_for_init(dir)?),
            // S3 has no lock to take: two first copies to one empty prefix
            // at the same moment could both create a repository there.
            None => None,
        };

        let backends = loc.backends(location)?;
        let repo = new_repository(&backends, progress, location)?;
        let exists = repo.config_id().map_err(|e| RepoError::from_rustic(location, &e))?.is_some();
        let open = if exists {
            repo.open(&Credentials::password(password)).map_err(|e| RepoError::from_rustic_open(location, &e))?
        } else {
            match loc.local_path() {
                Some(dir) => clear_interrupted_init(dir, location)?,
                None => clear_interrupted_remote_init(&backends, location)?,
            }
            // The key is berth's (key.rs) and is written before the config:
            // a crash in between leaves folders and a key, which the next
            // first use clears as above.
            let master = MasterKey::new();
            backends
                .repository()
                .create()
                .map_err(|e| RepoError::from_rustic(location, &e))
                .and_then(|()| crate::key::write_key(&backends, &master, password, location))?;
            repo.init(
                &Credentials::Masterkey(master),
                &KeyOptions::default(),
                &ConfigOptions::default()
                    .set_compression(COMPRESSION_LEVEL)
                    .set_datapack_size(DATAPACK_SIZE)
                    .set_datapack_size_limit(DATAPACK_SIZE_LIMIT)
                    .set_chunk_size(CHUNK_SIZE)
                    .set_chunk_min_size(CHUNK_SIZE),
            )
            .map_err(|e| RepoError::from_rustic(location, &e))?
        };
        drop(lock);
        Ok(Self::from_open(&loc, location, backends, &open, progress))
    }

    fn from_open(
        location: &Location,
        name: &str,
        backends: RepositoryBackends,
        open: &Repository<OpenStatus>,
        progress: Progress,
    ) -> Self {
        Self { dir: location.local_path().cloned(), name: name.to_string(), backends, key: open.key(), progress }
    }

    /// The location this repository was opened with.
    #[must_use]
    pub fn location(&self) -> &str {
        &self.name
    }

    /// Flushes what an operation wrote to a local repository to stable
    /// storage (see [`sync_filesystem`]). An S3 PUT is durable once
    /// answered, so there is nothing to do for S3.
    pub(crate) fn sync(&self) -> Result<(), RepoError> {
        match &self.dir {
            Some(dir) => sync_filesystem(dir),
            None => Ok(()),
        }
    }

    /// Opens the repository afresh (see the module docs for why).
    pub(crate) fn fresh(&self) -> Result<Repository<OpenStatus>, RepoError> {
        new_repository(&self.backends, self.progress, &self.name)?
            .open(&Credentials::Masterkey(self.key.clone()))
            .map_err(|e| self.rustic_err(&e))
    }

    pub(crate) fn rustic_err(&self, err: &rustic_core::RusticError) -> RepoError {
        RepoError::from_rustic(&self.name, err)
    }

    /// Every snapshot, oldest first.
    ///
    /// # Errors
    ///
    /// `Corrupt` naming the snapshot when a snapshot file cannot be read.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, RepoError> {
        let repo = self.fresh()?;
        let snaps = load_snapshots(&repo, self)?;
        Ok(snaps.iter().map(SnapshotInfo::from_file).collect())
    }

    /// Deletes the snapshot files of `ids` (full ids or unique prefixes).
    /// The data only they used stays until [`Repo::prune`] removes it.
    /// Nothing is deleted unless every id resolves.
    ///
    /// # Errors
    ///
    /// `SnapshotNotFound` / `Ambiguous` for an id that does not resolve.
    pub fn forget(&self, ids: &[String]) -> Result<(), RepoError> {
        self.forget_with(ids, false)
    }

    /// [`Repo::forget`], lifting governance locks when `bypass_governance`.
    /// Every deletion of a snapshot comes here, so a lock holds against
    /// every command: nothing is deleted if any of `ids` is locked.
    ///
    /// # Errors
    ///
    /// As [`Repo::forget`], and `Locked` for a snapshot whose lock holds.
    pub fn forget_with(&self, ids: &[String], bypass_governance: bool) -> Result<(), RepoError> {
        let repo = self.fresh()?;
        let resolved = ids.iter().map(|id| resolve_id(&repo, self, id)).collect::<Result<BTreeSet<_>, _>>()?;
        if resolved.is_empty() {
            return Ok(());
        }
        let resolved: Vec<_> = resolved.into_iter().collect();
        let wanted: Vec<String> = resolved.iter().map(|id| id.to_hex().to_string()).collect();
        let snaps = repo.get_snapshots(&wanted).map_err(|e| RepoError::corrupt_from_rustic(None, &e))?;
        let now = chrono::Utc::now();
        for snap in &snaps {
            let info = SnapshotInfo::from_file(snap);
            if let Some(lock) = info.lock.filter(|l| l.forbids_delete(now, bypass_governance)) {
                return Err(RepoError::Locked {
                    id: info.id,
                    mode: lock.mode,
                    until: lock.until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                });
            }
        }
        repo.delete_snapshots(&resolved).map_err(|e| self.rustic_err(&e))
    }
}

/// Takes the lock of [`INIT_LOCK`] in `dir`, creating the folder.
fn lock_for_init(dir: &Path) -> Result<File, RepoError> {
    fs::create_dir_all(dir).map_err(|e| RepoError::io("create repository folder", dir, e))?;
    let lock_path = dir.join(INIT_LOCK);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| RepoError::io("open", &lock_path, e))?;
    lock.lock().map_err(|e| RepoError::io("lock", &lock_path, e))?;
    Ok(lock)
}

fn new_repository(backends: &RepositoryBackends, progress: Progress, name: &str) -> Result<Repository<()>, RepoError> {
    // No cache: a cache under the user's home would be one more thing to
    // go stale between processes. For a local folder it would save
    // nothing; for S3 (a disaster-recovery copy, written now and then)
    // each operation reading the index objects again is acceptable.
    let opts = RepositoryOptions::default().no_cache(true);
    Repository::new_with_progress(&opts, backends, Bars(progress)).map_err(|e| RepoError::from_rustic(name, &e))
}

/// A repository is created as folders, then berth's key, then the config
/// (by `rustic_core`): a crash in between leaves a key for a master key no
/// config was ever written with, and opening would later pick that key and
/// fail. A folder holding nothing but such leftovers is cleaned so `init`
/// can run again; any other content means the folder is not ours.
fn clear_interrupted_init(dir: &Path, location: &str) -> Result<(), RepoError> {
    let not_ours = || RepoError::NotARepository { location: location.to_string() };
    let entries = fs::read_dir(dir).map_err(|e| RepoError::io("read", dir, e))?;
    let mut leftover_keys = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| RepoError::io("read", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == INIT_LOCK {
            continue;
        }
        if !SKELETON.contains(&name.as_ref()) || !entry.path().is_dir() {
            return Err(not_ours());
        }
        for file in walk_files(&entry.path())? {
            if name == "keys" {
                leftover_keys.push(file);
            } else {
                return Err(not_ours());
            }
        }
    }
    for key in leftover_keys {
        fs::remove_file(&key).map_err(|e| RepoError::io("remove leftover key", &key, e))?;
    }
    Ok(())
}

/// [`clear_interrupted_init`] for a repository in S3: leftover keys of an
/// interrupted `init` are removed, and a prefix holding any other
/// repository file without a `config` is refused.
fn clear_interrupted_remote_init(backends: &RepositoryBackends, location: &str) -> Result<(), RepoError> {
    let be = backends.repository();
    let list = |tpe| be.list(tpe).map_err(|e| RepoError::from_rustic(location, &e));
    for tpe in [FileType::Snapshot, FileType::Index, FileType::Pack] {
        if !list(tpe)?.is_empty() {
            return Err(RepoError::NotARepository { location: location.to_string() });
        }
    }
    for key in list(FileType::Key)? {
        be.remove(FileType::Key, &key, false).map_err(|e| RepoError::from_rustic(location, &e))?;
    }
    Ok(())
}

fn walk_files(dir: &Path) -> Result<Vec<PathBuf>, RepoError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| RepoError::io("read", &dir, e))? {
            let path = entry.map_err(|e| RepoError::io("read", &dir, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// Reads every snapshot file, oldest first.
///
/// # Errors
///
/// `Corrupt` (naming an unreadable snapshot when it can be told) if any
/// snapshot file fails to read or decrypt.
pub(crate) fn load_snapshots<S: Open>(repo: &Repository<S>, handle: &Repo) -> Result<Vec<SnapshotFile>, RepoError> {
    let (snaps, errors) = load_snapshots_lenient(repo, handle)?;
    if let Some(first) = errors.first() {
        // The stream does not say which file failed: find an id that did
        // not load to name it.
        let loaded: BTreeSet<_> = snaps.iter().map(|s| s.id).collect();
        let missing = repo.list::<SnapshotId>().map_err(|e| handle.rustic_err(&e))?.find(|id| !loaded.contains(id));
        return Err(RepoError::Corrupt {
            snapshot: missing.map(|id| id.to_hex().to_string()),
            detail: format!("{} snapshot file(s) unreadable: {first}", errors.len()),
        });
    }
    Ok(snaps)
}

/// Reads every snapshot file it can, oldest first, and the errors of those
/// it cannot. For callers (like parent selection) that must not be stopped
/// by one damaged snapshot file.
pub(crate) fn load_snapshots_lenient<S: Open>(
    repo: &Repository<S>,
    handle: &Repo,
) -> Result<(Vec<SnapshotFile>, Vec<String>), RepoError> {
    let mut snaps = Vec::new();
    let mut errors = Vec::new();
    for item in repo.stream_files::<SnapshotFile>().map_err(|e| handle.rustic_err(&e))? {
        match item {
            Ok((id, mut snap)) => {
                // What `rustic_core` does when it loads a snapshot itself.
                snap.id = id;
                let _ = snap.original.get_or_insert(id);
                snaps.push(snap);
            }
            Err(err) => errors.push(describe(&*err)),
        }
    }
    snaps.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
    Ok((snaps, errors))
}

/// Resolves a full snapshot id or a unique prefix of one.
pub(crate) fn resolve_id<S>(repo: &Repository<S>, handle: &Repo, id: &str) -> Result<SnapshotId, RepoError> {
    let wanted = id.to_ascii_lowercase();
    if wanted.is_empty() || wanted.len() > 64 || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(RepoError::invalid(format!("snapshot id {id:?} must be 1 to 64 hex digits")));
    }
    let mut matches = repo
        .list::<SnapshotId>()
        .map_err(|e| handle.rustic_err(&e))?
        .filter(|sid| sid.to_hex().as_str().starts_with(&wanted));
    match (matches.next(), matches.next()) {
        (Some(found), None) => Ok(found),
        (None, _) => Err(RepoError::SnapshotNotFound { id: id.to_string() }),
        (Some(_), Some(_)) => Err(RepoError::Ambiguous { id: id.to_string() }),
    }
}
