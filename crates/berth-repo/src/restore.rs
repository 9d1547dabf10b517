//! Restoring a snapshot's volume into an empty directory.
//!
//! The volume's files land directly in the target (not under
//! `target/volume`). berth writes file contents itself and gives each
//! regular file its metadata as it finishes; directories, symlinks, special
//! files and hard links are left to `rustic_core`'s restore pass. Why not
//! all of it: `rustic_core` 0.13 reads whole pack ranges with 20 threads and
//! queues their blobs for writing without a bound (a 1.2 GiB restore peaked
//! at 1.1 GiB of memory, restic at 135 MiB), it `unwrap`s every read, so a
//! damaged pack panics a worker thread instead of returning an error, and
//! its metadata pass is one thread for every entry.
//!
//! Here a few workers (one more than cores) take a file's blobs in runs of
//! a few MiB through a short bounded queue; each reads a run's blobs
//! straight from their packs into its own buffer ([`crate::blob_read`]),
//! checks every blob against its SHA-256 id before it is written (a damaged
//! pack gives `Corrupt` naming the snapshot, never wrong bytes), and writes
//! the run as one range, its aligned middle with `O_DIRECT`
//! ([`crate::direct_write`]), so the data goes from that buffer to the disk
//! without passing through the page cache. Memory stays near
//! workers × (run + blob). The rest of a large file is written through the
//! page cache with its writeback started at once, so the disk writes while
//! the CPU decrypts instead of after; small files are left to the final
//! sync, which writes them back together. The worker that writes a file's
//! last run sets its owner, mode, extended attributes and times
//! (`rustic_core`'s `set_metadata`), in parallel with the other workers.
//! On any error the target is emptied again, so a failed restore never
//! looks like a volume; on success the target's filesystem is synced
//! before the restore returns.

use std::{
    collections::HashSet,
    fs::{self, File},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Instant, SystemTime},
};

use rustic_core::{
    repofile::{Node, NodeType},
    set_metadata, DataId, IndexedFullStatus, LocalDestination, LsOptions, Repository, RestoreOptions, RestorePlan,
    RusticError,
};
use serde::Serialize;

use crate::{
    blob_read::{BlobPlace, BlobReadError, BlobReader, Scratch, SLOT_FRONT},
    direct_write::{self, Sink, Staging},
    durable::sync_filesystem,
    error::RepoError,
    repo::{resolve_id, Repo},
    snapshot::VOLUME_PATH,
};

/// Runs queued per worker. A run is only a list of blob places: the bytes
/// live in the workers' buffers, so memory is workers × (blob + run).
const QUEUE_PER_WORKER: usize = 2;
/// Workers fetching and writing blobs.
const MAX_WORKERS: usize = 8;
/// A file's blobs are handed out in runs of about this many bytes (a run
/// ends at the first blob that reaches it): large enough that a direct
/// write's aligned middle is most of it, small enough that the parts of a
/// large file are restored in parallel and a worker's buffer stays small.
const RUN_BYTES: u64 = 4 << 20;
/// Files smaller than this are written through the page cache only: a
/// second open costs more than the direct write saves.
const DIRECT_MIN: u64 = 1 << 20;

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
    let target_str = target
        .to_str()
        .ok_or_else(|| RepoError::invalid(format!("restore target {} is not valid UTF-8", target.display())))?;
    let dest = LocalDestination::new(target_str, false, false).map_err(corrupt)?;
    // Numeric ids: the volume belongs to the task's uid, whatever that uid
    // is called on this machine. Without root, chown fails and rustic only
    // logs it, which is what a non-root restore should do.
    let opts = RestoreOptions::default().numeric_id(true);

    let hard_links = write_contents(repo, reader, volume, target, snapshot, Finisher { dest: &dest, opts }, stats)?;

    // Directories, symlinks, special files and hard links: rustic's pass,
    // which sets a directory's metadata after its contents. The regular
    // files the workers wrote have theirs already and are left out.
    // rustic's plan (a walk of the whole target) is only needed to link the
    // other paths of a file with several links; every file is in place with
    // its size and mtime by then, so it finds nothing left to read.
    let plan = if hard_links {
        let plan =
            repo.prepare_restore(&opts, repo.ls(volume, &ls).map_err(corrupt)?, &dest, false).map_err(corrupt)?;
        if plan.restore_size != 0 {
            return Err(RepoError::Corrupt {
                snapshot: Some(snapshot.to_string()),
                detail: format!("{} bytes were not restored by the content pass; restore again", plan.restore_size),
            });
        }
        plan
    } else {
        RestorePlan::default()
    };
    let rest = repo
        .ls(volume, &ls)
        .map_err(corrupt)?
        .filter(|item| !matches!(item, Ok((_, node)) if finished_by_worker(node)));
    repo.restore(plan, &opts, rest, &dest).map_err(corrupt)?;
    // The replacement task starts on this volume: it must not come back torn
    // after a power loss.
    sync_filesystem(target)
}

/// Whether a node is a regular file whose metadata the worker that
/// finishes it sets. Files with several links are left to rustic's pass,
/// which links their other paths.
fn finished_by_worker(node: &Node) -> bool {
    node.node_type == NodeType::File && !is_hard_link(node)
}

/// Same rule as rustic's for which files are hard links of one another.
fn is_hard_link(node: &Node) -> bool {
    node.meta.links > 1 && node.meta.device_id != 0 && node.meta.inode != 0
}

/// Where and how finished files get their metadata.
#[derive(Clone, Copy)]
struct Finisher<'a> {
    dest: &'a LocalDestination,
    opts: RestoreOptions,
}

/// A regular file being written by the workers.
struct OpenTarget {
    file: File,
    /// The same file opened with `O_DIRECT`, for large files on filesystems
    /// that allow it ([`crate::direct_write`]).
    direct: Option<File>,
    path: PathBuf,
    /// The path below the target, as rustic's destination takes it.
    rel: PathBuf,
    /// Runs still to be written; the worker that writes the last sets the
    /// metadata, whose mtime no later write may disturb.
    remaining: AtomicUsize,
    /// The file's node, without its content list.
    node: Node,
}

/// Consecutive blobs of one file, written by one worker, so that it can
/// write them as one range (aligned in the middle, [`crate::direct_write`]).
struct RunJob {
    target: Arc<OpenTarget>,
    /// File offset of the first blob.
    offset: u64,
    blobs: Vec<(DataId, BlobPlace)>,
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
    finisher: Finisher<'_>,
    stats: &mut RestoreStats,
) -> Result<bool, RepoError> {
    // One more worker than cores: a worker waiting for its direct write
    // leaves its core to the others.
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let workers = (cores + 1).clamp(3, MAX_WORKERS);
    let (tx, rx) = crossbeam_channel::bounded::<RunJob>(workers * QUEUE_PER_WORKER);
    let failure = Failure::default();
    let bytes = AtomicU64::new(0);
    let mut hard_links = false;

    std::thread::scope(|scope| {
        for _ in 0..workers {
            let rx = rx.clone();
            let (failure, bytes) = (&failure, &bytes);
            scope.spawn(move || {
                let mut scratch = match Scratch::new() {
                    Ok(s) => Some((s, Staging::new())),
                    Err(e) => {
                        failure.set(RepoError::Other { detail: format!("starting a zstd decoder: {e}") });
                        None
                    }
                };
                for job in rx {
                    let Some((scratch, staging)) = scratch.as_mut().filter(|_| !failure.is_set()) else {
                        continue; // drain so the producer never blocks
                    };
                    match write_run(reader, &job, snapshot, finisher, scratch, staging) {
                        Ok(len) => {
                            bytes.fetch_add(len, Ordering::Relaxed);
                        }
                        Err(err) => failure.set(err),
                    }
                }
            });
        }
        drop(rx);
        match produce(repo, volume, target, snapshot, finisher, stats, &tx, &failure) {
            Ok(links) => hard_links = links,
            Err(err) => failure.set(err),
        }
        drop(tx);
    });

    if let Some(err) = failure.take() {
        return Err(err);
    }
    stats.bytes = bytes.into_inner();
    Ok(hard_links)
}

/// Walks the volume tree in order, creating directories and files and
/// queueing every blob of every file; returns whether a file has several
/// links.
#[allow(clippy::too_many_arguments)]
fn produce(
    repo: &Repository<IndexedFullStatus>,
    volume: &Node,
    target: &Path,
    snapshot: &str,
    finisher: Finisher<'_>,
    stats: &mut RestoreStats,
    tx: &crossbeam_channel::Sender<RunJob>,
    failure: &Failure,
) -> Result<bool, RepoError> {
    let corrupt = |e: Box<RusticError>| RepoError::corrupt_from_rustic(Some(snapshot), &e);
    // Files with several links are written once, at their first path;
    // rustic links the others in its pass. Same rule as rustic's.
    let mut seen_links = HashSet::new();
    for item in repo.ls(volume, &LsOptions::default()).map_err(corrupt)? {
        if failure.is_set() {
            return Ok(false); // the error that stopped the workers is reported
        }
        let (rel, node) = item.map_err(corrupt)?;
        let path = target.join(&rel);
        match node.node_type {
            NodeType::Dir => {
                fs::create_dir(&path).map_err(|e| RepoError::io("create directory", &path, e))?;
                stats.dirs += 1;
            }
            NodeType::File => {
                if is_hard_link(&node) && !seen_links.insert((node.meta.device_id, node.meta.inode)) {
                    stats.other += 1;
                    continue;
                }
                stats.files += 1;
                queue_file(repo, node, rel, &path, snapshot, finisher, tx)?;
            }
            _ => stats.other += 1,
        }
    }
    Ok(!seen_links.is_empty())
}

fn queue_file(
    repo: &Repository<IndexedFullStatus>,
    mut node: Node,
    rel: PathBuf,
    path: &Path,
    snapshot: &str,
    finisher: Finisher<'_>,
    tx: &crossbeam_channel::Sender<RunJob>,
) -> Result<(), RepoError> {
    let file =
        File::options().write(true).create_new(true).open(path).map_err(|e| RepoError::io("create file", path, e))?;
    let content = node.content.take().unwrap_or_default();
    let content = content.as_slice();
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
    let runs = runs(content, places);
    let target = Arc::new(OpenTarget {
        file,
        direct: if size >= DIRECT_MIN { direct_write::open_direct(path) } else { None },
        path: path.to_path_buf(),
        rel,
        remaining: AtomicUsize::new(runs.len()),
        node,
    });
    if runs.is_empty() {
        return finish_file(&target, finisher);
    }
    for (offset, blobs) in runs {
        if tx.send(RunJob { target: target.clone(), offset, blobs }).is_err() {
            break; // the workers are gone; their error is reported
        }
    }
    Ok(())
}

/// Splits a file's blobs, with their file offsets, into runs of about
/// [`RUN_BYTES`].
fn runs(content: &[DataId], places: Vec<(u64, BlobPlace)>) -> Vec<(u64, Vec<(DataId, BlobPlace)>)> {
    let mut runs: Vec<(u64, Vec<(DataId, BlobPlace)>)> = Vec::new();
    for (id, (offset, place)) in content.iter().zip(places) {
        match runs.last_mut() {
            Some((start, blobs)) if offset - *start < RUN_BYTES => blobs.push((*id, place)),
            _ => runs.push((offset, vec![(*id, place)])),
        }
    }
    runs
}

/// Fetches a run's blobs, checks each hashes to its id, and writes them as
/// ranges of the file (a zero blob is a hole, never written, so sparse
/// files stay sparse); returns the bytes the run covers.
fn write_run(
    reader: &BlobReader,
    job: &RunJob,
    snapshot: &str,
    finisher: Finisher<'_>,
    scratch: &mut Scratch,
    staging: &mut Staging,
) -> Result<u64, RepoError> {
    let target = &job.target;
    let sink = Sink { buffered: &target.file, direct: target.direct.as_ref() };
    let flush = |staging: &mut Staging| -> Result<(), RepoError> {
        let start = staging.start();
        let written = staging.flush(&sink).map_err(|e| RepoError::io("write", &target.path, e))?;
        // Only large files: for a small one the hint is an I/O of its own
        // (a device kick, an interrupt), which for 10,000 files of a few
        // KiB cost more CPU than it saved; the final sync writes them back
        // together.
        if written.buffered > 0 && target.direct.is_some() {
            start_writeback(&target.file, start, written.buffered + written.direct);
        }
        Ok(())
    };
    let mut offset = job.offset;
    for (id, place) in &job.blobs {
        let slot = staging.slot(offset, SLOT_FRONT, place.slot_len());
        let n = match reader.read_into(id, place, scratch, slot) {
            Ok(n) => n,
            Err(e) => {
                staging.clear();
                return Err(blob_error(snapshot, &target.path, e));
            }
        };
        // The file was created empty and sized, so its holes already read
        // as zeros.
        if slot[SLOT_FRONT..SLOT_FRONT + n].iter().any(|&b| b != 0) {
            staging.commit(n);
        } else {
            flush(staging)?;
        }
        offset += n as u64;
    }
    flush(staging)?;
    if target.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        finish_file(target, finisher)?;
    }
    Ok(offset - job.offset)
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

/// Gives a fully written file its metadata: all of it (rustic's
/// `set_metadata`, in its order: owner, mode, extended attributes, times)
/// here, in parallel, instead of in rustic's single-threaded pass; a hard
/// link only its mtime, which rustic's pass checks before it links the
/// other paths and sets the rest.
fn finish_file(target: &OpenTarget, finisher: Finisher<'_>) -> Result<(), RepoError> {
    if finished_by_worker(&target.node) {
        set_metadata(finisher.dest, finisher.opts, &target.rel, &target.node);
    } else if let Some(mtime) = target.node.meta.mtime {
        target.file.set_modified(SystemTime::from(mtime)).map_err(|e| RepoError::io("set mtime", &target.path, e))?;
    }
    Ok(())
}
