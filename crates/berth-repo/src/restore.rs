//! Restoring a snapshot's volume into an empty directory.
//!
//! The volume's files land directly in the target (not under
//! `target/volume`). berth writes file contents itself and leaves the rest
//! (directory and file modes, times, ownership, symlinks, special files,
//! hard links, extended attributes) to `rustic_core`'s restore. Why not all
//! of it: `rustic_core` 0.13 reads whole pack ranges with 20 threads and
//! queues their blobs for writing without a bound (a 1.2 GiB restore peaked
//! at 1.1 GiB of memory, restic at 135 MiB), and it `unwrap`s every read, so
//! a damaged pack panics a worker thread instead of returning an error.
//!
//! Here a few workers fetch one blob at a time through a short bounded
//! queue, so memory stays near workers × blob size (blobs are at most
//! 8 MiB), reading it straight from its pack ([`crate::blob_read`]), and
//! every blob is checked against its SHA-256 id before it is written: a
//! damaged pack gives `Corrupt` naming the snapshot, never wrong bytes.
//! Writeback of each written range is started at once, so the disk writes
//! while the CPU decrypts the next blobs instead of after all of them. A
//! finished file gets its mtime at once, so `rustic_core`'s pass finds it
//! complete and only sets metadata. On any error the target is
//! emptied again, so a failed restore never looks like a volume; on success
//! the target's filesystem is synced before the restore returns.

use std::{
    collections::HashSet,
    fs::{self, File},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Instant, SystemTime},
};

use rustic_core::{
    repofile::{Node, NodeType},
    DataId, IndexedFullStatus, LocalDestination, LsOptions, Repository, RestoreOptions, RusticError,
};
use serde::Serialize;

use crate::{
    blob_read::{BlobPlace, BlobReadError, BlobReader, Scratch},
    durable::sync_filesystem,
    error::RepoError,
    repo::{resolve_id, Repo},
    snapshot::VOLUME_PATH,
};

/// Blobs in flight per worker; with up to 8 MiB blobs this bounds memory.
const QUEUE_PER_WORKER: usize = 2;
/// Workers fetching and writing blobs.
const MAX_WORKERS: usize = 8;

/// What a restore wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RestoreStats {
    /// The full id of the restored snapshot.
    pub snapshot: String,
    /// Regular files written (hard links counted once).
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks, hard links, devices, FIFOs and sockets.
    pub other: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Wall-clock time of the restore.
    pub duration_secs: f64,
}

impl Repo {
    /// Restores snapshot `id` (full id or unique prefix) into `target`,
    /// which must be an existing empty directory.
    ///
    /// # Errors
    ///
    /// `SnapshotNotFound` / `Ambiguous`, `TargetNotEmpty`, `NotAVolume` for
    /// snapshots not written by berth, `Corrupt` naming the snapshot when
    /// repository data is damaged, `NoSpace` when the target fills up. On
    /// error the target is left empty.
    pub fn restore(&self, id: &str, target: &Path) -> Result<RestoreStats, RepoError> {
        let started = Instant::now();
        check_empty_dir(target)?;
        let repo = self.fresh()?;
        let snap_id = resolve_id(&repo, self, id)?;
        let hex = snap_id.to_hex().to_string();
        let repo = repo.to_indexed().map_err(|e| RepoError::corrupt_from_rustic(Some(&hex), &e))?;
        let snap = repo
            .get_snapshots(&[hex.as_str()])
            .map_err(|e| RepoError::corrupt_from_rustic(Some(&hex), &e))?
            .pop()
            .ok_or_else(|| RepoError::SnapshotNotFound { id: id.to_string() })?;

        // A snapshot of an empty volume has no volume tree at all.
        let root = repo.get_tree(&snap.tree).map_err(|e| RepoError::corrupt_from_rustic(Some(&hex), &e))?;
        let mut stats = RestoreStats { snapshot: hex.clone(), ..RestoreStats::default() };
        if !root.nodes.is_empty() {
            let volume = repo
                .node_from_snapshot_and_path(&snap, VOLUME_PATH)
                .map_err(|_| RepoError::NotAVolume { id: hex.clone(), path: VOLUME_PATH.to_string() })?;
            if !volume.is_dir() {
                return Err(RepoError::NotAVolume { id: hex, path: VOLUME_PATH.to_string() });
            }
            let reader = BlobReader::new(self.backends.repository(), self.dir.clone(), &self.key)
                .map_err(|e| blob_error(&hex, Path::new(VOLUME_PATH), e))?;
            if let Err(err) = restore_volume(&repo, &reader, &volume, target, &hex, &mut stats) {
                empty_dir(target);
                return Err(err);
            }
        }
        stats.duration_secs = started.elapsed().as_secs_f64();
        Ok(stats)
    }
}

fn check_empty_dir(target: &Path) -> Result<(), RepoError> {
    let not_empty = || RepoError::TargetNotEmpty { path: target.to_path_buf() };
    let mut entries = fs::read_dir(target).map_err(|_| not_empty())?;
    if entries.next().is_some() {
        return Err(not_empty());
    }
    Ok(())
}

/// Removes everything in `dir` (which was empty before the restore), best
/// effort: the error that got us here is the one to report.
fn empty_dir(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
        }
    }
}

fn restore_volume(
    repo: &Repository<IndexedFullStatus>,
    reader: &BlobReader,
    volume: &Node,
    target: &Path,
    snapshot: &str,
    stats: &mut RestoreStats,
) -> Result<(), RepoError> {
    let corrupt = |e: Box<RusticError>| RepoError::corrupt_from_rustic(Some(snapshot), &e);
    let ls = LsOptions::default();

    write_contents(repo, reader, volume, target, snapshot, stats)?;

    // Metadata, symlinks, special files and hard links. Every file is in
    // place with its size and mtime, so rustic reads no pack here.
    let target_str = target
        .to_str()
        .ok_or_else(|| RepoError::invalid(format!("restore target {} is not valid UTF-8", target.display())))?;
    let dest = LocalDestination::new(target_str, false, false).map_err(corrupt)?;
    // Numeric ids: the volume belongs to the task's uid, whatever that uid
    // is called on this machine. Without root, chown fails and rustic only
    // logs it, which is what a non-root restore should do.
    let opts = RestoreOptions::default().numeric_id(true);
    let plan = repo.prepare_restore(&opts, repo.ls(volume, &ls).map_err(corrupt)?, &dest, false).map_err(corrupt)?;
    if plan.restore_size != 0 {
        return Err(RepoError::Corrupt {
            snapshot: Some(snapshot.to_string()),
            detail: format!("{} bytes were not restored by the content pass; restore again", plan.restore_size),
        });
    }
    repo.restore(plan, &opts, repo.ls(volume, &ls).map_err(corrupt)?, &dest).map_err(corrupt)?;
    // The replacement task starts on this volume: it must not come back torn
    // after a power loss.
    sync_filesystem(target)
}

/// A regular file being written by the workers.
struct OpenTarget {
    file: File,
    path: PathBuf,
    /// Blobs still to be written; the worker that writes the last sets the
    /// mtime, which no later write may disturb.
    remaining: AtomicUsize,
    mtime: Option<SystemTime>,
}

struct BlobJob {
    target: Arc<OpenTarget>,
    offset: u64,
    id: DataId,
    place: BlobPlace,
}

/// The first error of any thread, and the flag that stops the others.
#[derive(Default)]
struct Failure {
    failed: AtomicBool,
    first: Mutex<Option<RepoError>>,
}

impl Failure {
    fn set(&self, err: RepoError) {
        let mut first = self.first.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if first.is_none() {
            *first = Some(err);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    fn is_set(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    fn take(self) -> Option<RepoError> {
        self.first.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn write_contents(
    repo: &Repository<IndexedFullStatus>,
    reader: &BlobReader,
    volume: &Node,
    target: &Path,
    snapshot: &str,
    stats: &mut RestoreStats,
) -> Result<(), RepoError> {
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get).clamp(2, MAX_WORKERS);
    let (tx, rx) = crossbeam_channel::bounded::<BlobJob>(workers * QUEUE_PER_WORKER);
    let failure = Failure::default();
    let bytes = AtomicU64::new(0);

    std::thread::scope(|scope| {
        for _ in 0..workers {
            let rx = rx.clone();
            let (failure, bytes) = (&failure, &bytes);
            scope.spawn(move || {
                let mut scratch = match Scratch::new() {
                    Ok(s) => Some(s),
                    Err(e) => {
                        failure.set(RepoError::Other { detail: format!("starting a zstd decoder: {e}") });
                        None
                    }
                };
                for job in rx {
                    let Some(scratch) = scratch.as_mut().filter(|_| !failure.is_set()) else {
                        continue; // drain so the producer never blocks
                    };
                    match write_blob(reader, &job, snapshot, scratch) {
                        Ok(len) => {
                            bytes.fetch_add(len, Ordering::Relaxed);
                        }
                        Err(err) => failure.set(err),
                    }
                }
            });
        }
        drop(rx);
        if let Err(err) = produce(repo, volume, target, snapshot, stats, &tx, &failure) {
            failure.set(err);
        }
        drop(tx);
    });

    if let Some(err) = failure.take() {
        return Err(err);
    }
    stats.bytes = bytes.into_inner();
    Ok(())
}

/// Walks the volume tree in order, creating directories and files and
/// queueing every blob of every file.
fn produce(
    repo: &Repository<IndexedFullStatus>,
    volume: &Node,
    target: &Path,
    snapshot: &str,
    stats: &mut RestoreStats,
    tx: &crossbeam_channel::Sender<BlobJob>,
    failure: &Failure,
) -> Result<(), RepoError> {
    let corrupt = |e: Box<RusticError>| RepoError::corrupt_from_rustic(Some(snapshot), &e);
    // Files with several links are written once, at their first path;
    // rustic links the others in its pass. Same rule as rustic's.
    let mut seen_links = HashSet::new();
    for item in repo.ls(volume, &LsOptions::default()).map_err(corrupt)? {
        if failure.is_set() {
            return Ok(());
        }
        let (rel, node) = item.map_err(corrupt)?;
        let path = target.join(&rel);
        match node.node_type {
            NodeType::Dir => {
                fs::create_dir(&path).map_err(|e| RepoError::io("create directory", &path, e))?;
                stats.dirs += 1;
            }
            NodeType::File => {
                let meta = &node.meta;
                if meta.links > 1
                    && meta.device_id != 0
                    && meta.inode != 0
                    && !seen_links.insert((meta.device_id, meta.inode))
                {
                    stats.other += 1;
                    continue;
                }
                stats.files += 1;
                queue_file(repo, &node, &path, snapshot, tx)?;
            }
            _ => stats.other += 1,
        }
    }
    Ok(())
}

fn queue_file(
    repo: &Repository<IndexedFullStatus>,
    node: &Node,
    path: &Path,
    snapshot: &str,
    tx: &crossbeam_channel::Sender<BlobJob>,
) -> Result<(), RepoError> {
    let file =
        File::options().write(true).create_new(true).open(path).map_err(|e| RepoError::io("create file", path, e))?;
    let content = node.content.as_deref().unwrap_or_default();
    let mut places = Vec::with_capacity(content.len());
    let mut size = 0u64;
    for id in content {
        let entry = repo.get_index_entry(id).map_err(|e| RepoError::corrupt_from_rustic(Some(snapshot), &e))?;
        let loc = entry.location;
        let place = BlobPlace {
            pack: *entry.pack,
            offset: loc.offset,
            length: loc.length,
            uncompressed: loc.uncompressed_length.map(std::num::NonZeroU32::get),
        };
        places.push((size, place));
        size += u64::from(entry.data_length());
    }
    if size != node.meta.size {
        return Err(RepoError::Corrupt {
            snapshot: Some(snapshot.to_string()),
            detail: format!("{}: blobs hold {size} bytes but the file has {}", path.display(), node.meta.size),
        });
    }
    file.set_len(size).map_err(|e| RepoError::io("size file", path, e))?;
    let target = Arc::new(OpenTarget {
        file,
        path: path.to_path_buf(),
        remaining: AtomicUsize::new(content.len()),
        mtime: node.meta.mtime.map(SystemTime::from),
    });
    if content.is_empty() {
        return finish_file(&target);
    }
    for (id, (offset, place)) in content.iter().zip(places) {
        let job = BlobJob { target: target.clone(), offset, id: *id, place };
        if tx.send(job).is_err() {
            break; // the workers are gone; their error is reported
        }
    }
    Ok(())
}

/// Fetches one blob, checks it hashes to its id, writes it and starts its
/// writeback; returns its length.
fn write_blob(reader: &BlobReader, job: &BlobJob, snapshot: &str, scratch: &mut Scratch) -> Result<u64, RepoError> {
    let target = &job.target;
    let data = reader.read(&job.id, &job.place, scratch).map_err(|e| blob_error(snapshot, &target.path, e))?;
    // The file was created empty and sized, so its holes already read as
    // zeros: skipping zero blobs keeps sparse files sparse.
    if data.iter().any(|&b| b != 0) {
        target.file.write_all_at(data, job.offset).map_err(|e| RepoError::io("write", &target.path, e))?;
        start_writeback(&target.file, job.offset, data.len());
    }
    let len = data.len() as u64;
    if target.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        finish_file(target)?;
    }
    Ok(len)
}

/// Asks the kernel to start writing the range to disk now, without waiting
/// for it. Left alone, a restore smaller than the dirty-page limit (10 % of
/// memory by default) reaches the disk only in the final sync, after all
/// the CPU work; this overlaps the two. Only a hint: errors surface in the
/// final sync, which is what makes the restore durable.
fn start_writeback(file: &File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off64_t::try_from(offset), libc::off64_t::try_from(len)) else {
        return;
    };
    // SAFETY: a valid open descriptor and a range; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

fn blob_error(snapshot: &str, path: &Path, err: BlobReadError) -> RepoError {
    match err {
        BlobReadError::Read(e) => RepoError::corrupt_from_rustic(Some(snapshot), &e),
        BlobReadError::Io(pack, e) => RepoError::Corrupt {
            snapshot: Some(snapshot.to_string()),
            detail: format!("{}: reading pack {}: {e}", path.display(), pack.display()),
        },
        BlobReadError::Corrupt(detail) => {
            RepoError::Corrupt { snapshot: Some(snapshot.to_string()), detail: format!("{}: {detail}", path.display()) }
        }
    }
}

fn finish_file(target: &OpenTarget) -> Result<(), RepoError> {
    if let Some(mtime) = target.mtime {
        target.file.set_modified(mtime).map_err(|e| RepoError::io("set mtime", &target.path, e))?;
    }
    Ok(())
}
