//! Keeping a repository healthy: prune (plan, then execute) and check.
//!
//! Prune is `rustic_core`'s lock-free two-phase prune. Packs no snapshot
//! needs any more, and packs no index references, are first only *marked*
//! for deletion; a later prune deletes them once they stayed marked for
//! 23 hours, and un-marks any a snapshot started using again in between.
//! That is what lets snapshots run while prune does, so berth never uses
//! rustic's instant delete. The disk space of forgotten snapshots therefore
//! comes back one prune after a day has passed.
//!
//! A process killed while writing a pack leaves a `data/XX/<id>-tmp-` file
//! that `rustic_core` neither lists nor removes; prune deletes those older
//! than a day, which no running writer can still own.

use std::{
    fs,
    path::Path,
    time::{Duration, SystemTime},
};

use rustic_core::{CheckOptions, PruneOptions};
use serde::Serialize;

use crate::{
    error::{describe, RepoError},
    repo::Repo,
};

/// What a prune does (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneStats {
    /// Whether this was only a plan.
    pub dry_run: bool,
    /// Pack files by what happens to them.
    pub packs: PackCounts,
    /// Blob counts.
    pub blobs: BlobAmounts,
    /// Sizes in bytes.
    pub bytes: BlobAmounts,
    /// Bytes of packs deleted now (marked at least 23 hours ago).
    pub bytes_delete_now: u64,
    /// Bytes of packs still marked, waiting for a later prune.
    pub bytes_marked_waiting: u64,
    /// Bytes of pack files no index references (e.g. left by a crash).
    pub bytes_unreferenced: u64,
    /// Half-written pack files of killed processes, deleted (older than a
    /// day).
    pub tmp_files: u64,
    /// Their bytes.
    pub bytes_tmp_files: u64,
}

/// A half-written pack older than this has no writer any more.
const TMP_PACK_AGE: Duration = Duration::from_secs(24 * 3600);

/// Pack files by what prune does with them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PackCounts {
    /// Kept as they are.
    pub keep: u64,
    /// Partly used: their used blobs are copied into new packs.
    pub repack: u64,
    /// Wholly unused: marked for deletion now.
    pub unused: u64,
    /// Marked before, deleted now.
    pub delete_now: u64,
    /// Marked before, too recently to delete.
    pub marked_waiting: u64,
    /// Marked before but used again: un-marked.
    pub recover: u64,
    /// Present in the repository but in no index; marked for deletion.
    pub unreferenced: u64,
}

/// Amounts of blobs (a count or a size).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlobAmounts {
    /// Still needed by some snapshot.
    pub used: u64,
    /// Needed by no snapshot.
    pub unused: u64,
    /// Unused and removed by this prune (marked or dropped in repacking).
    pub remove: u64,
    /// Used and copied into new packs.
    pub repack: u64,
    /// Unused and left in place (repacking them would cost more).
    pub unused_after: u64,
}

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Damage: missing or unreadable packs, blobs not matching their ids…
    pub errors: Vec<String>,
    /// Oddities that lose nothing (e.g. unreferenced packs after a crash).
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// Whether no error was found (warnings are fine).
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl Repo {
    /// Removes data no snapshot needs (after [`Repo::forget`]); with
    /// `dry_run` only plans. See the module docs for the 23-hour delay.
    ///
    /// # Errors
    ///
    /// `Corrupt` if the index does not match the packs (run `check`).
    pub fn prune(&self, dry_run: bool) -> Result<PruneStats, RepoError> {
        let repo = self.fresh()?;
        let opts = PruneOptions::default();
        let plan = repo.prune_plan(&opts).map_err(|e| RepoError::corrupt_from_rustic(None, &e))?;
        let s = &plan.stats;
        let (blobs, sizes) = (s.blobs_sum(), s.size_sum());
        // rustic_core does not export the type of these sums; a macro
        // reads the same fields from both.
        macro_rules! amounts {
            ($a:expr) => {{
                let a = $a;
                BlobAmounts {
                    used: a.used,
                    unused: a.unused,
                    remove: a.remove + a.repackrm,
                    repack: a.repack - a.repackrm,
                    unused_after: a.unused_after_prune(),
                }
            }};
        }
        let mut stats = PruneStats {
            dry_run,
            packs: PackCounts {
                keep: s.packs.keep,
                repack: s.packs.repack,
                unused: s.packs.unused,
                delete_now: s.packs_to_delete.remove,
                marked_waiting: s.packs_to_delete.keep,
                recover: s.packs_to_delete.recover,
                unreferenced: s.packs_unref,
            },
            blobs: amounts!(blobs),
            bytes: amounts!(sizes),
            bytes_delete_now: s.size_to_delete.remove,
            bytes_marked_waiting: s.size_to_delete.keep,
            bytes_unreferenced: s.size_unref,
            tmp_files: 0,
            bytes_tmp_files: 0,
        };
        if !dry_run {
            repo.prune(&opts, plan).map_err(|e| self.rustic_err(&e))?;
        }
        // rustic's S3 writes are single PUTs and leave no temporary packs.
        if let Some(dir) = &self.dir {
            (stats.tmp_files, stats.bytes_tmp_files) = sweep_tmp_packs(dir, dry_run)?;
        }
        Ok(stats)
    }

    /// Checks the repository's structure: every snapshot's trees and blobs
    /// are indexed and every indexed pack exists with its size; with
    /// `read_data`, also reads every pack and checks each blob's hash.
    ///
    /// # Errors
    ///
    /// `Corrupt` when the check cannot even run (e.g. an unreadable
    /// snapshot or index file); damage it finds is in the report.
    pub fn check(&self, read_data: bool) -> Result<CheckReport, RepoError> {
        let repo = self.fresh()?;
        let results = repo
            .check(CheckOptions::default().read_data(read_data))
            .map_err(|e| RepoError::corrupt_from_rustic(None, &e))?;
        let mut report = CheckReport::default();
        for (level, finding) in results.0 {
            // `CheckErrorLevel` is not exported by rustic_core 0.13, but
            // its Debug names are stable: Warn and Error.
            // Findings embed their cause's multi-line report; shorten it.
            let mut text = finding.to_string();
            if let Some(source) = std::error::Error::source(&finding) {
                text = text.replace(&source.to_string(), &describe(source));
            }
            if format!("{level:?}") == "Warn" {
                report.warnings.push(text);
            } else {
                report.errors.push(text);
            }
        }
        Ok(report)
    }
}

/// Deletes (or, in a dry run, counts) `data/XX/<id>-tmp-` files older than
/// [`TMP_PACK_AGE`].
fn sweep_tmp_packs(repo_dir: &Path, dry_run: bool) -> Result<(u64, u64), RepoError> {
    let data = repo_dir.join("data");
    let (mut count, mut bytes) = (0, 0);
    let now = SystemTime::now();
    for sub in fs::read_dir(&data).map_err(|e| RepoError::io("read", &data, e))? {
        let sub = sub.map_err(|e| RepoError::io("read", &data, e))?.path();
        let Ok(entries) = fs::read_dir(&sub) else {
            continue; // not a folder
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_tmp = path.file_name().is_some_and(|n| n.to_string_lossy().ends_with("-tmp-"));
            let Ok(meta) = entry.metadata() else { continue };
            let old =
                meta.modified().ok().and_then(|m| now.duration_since(m).ok()).is_some_and(|age| age > TMP_PACK_AGE);
            if !(is_tmp && old && meta.is_file()) {
                continue;
            }
            if !dry_run {
                fs::remove_file(&path).map_err(|e| RepoError::io("remove", &path, e))?;
            }
            count += 1;
            bytes += meta.len();
        }
    }
    Ok((count, bytes))
}
