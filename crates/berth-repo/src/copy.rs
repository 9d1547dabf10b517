//! Copying snapshots to another repository (replication).
//!
//! `rustic_core` copies the blobs the destination lacks and writes the
//! snapshot files with the same time, tags and paths, and with `original`
//! set to the source snapshot's id. That field, not the time (which is all
//! `rustic_core`'s own "already copied" test compares), tells berth which
//! snapshots the destination already has, so copying twice copies nothing
//! the second time. restic's `copy` sets `original` the same way.

use std::collections::BTreeSet;

use rustic_core::repofile::{SnapshotFile, SnapshotId};

use crate::{
    error::RepoError,
    repo::{load_snapshots, resolve_id, Repo},
    snapshot_meta::SnapshotInfo,
};

/// The id a snapshot descends from: its `original`, or itself.
fn origin(snap: &SnapshotFile) -> SnapshotId {
    snap.original.unwrap_or(snap.id)
}

impl Repo {
    /// Copies the snapshots `ids` (full ids or unique prefixes) that `dest`
    /// does not have yet, and returns the new snapshots as listed in `dest`.
    /// An empty `ids` copies nothing.
    ///
    /// # Errors
    ///
    /// `SnapshotNotFound` / `Ambiguous` for ids of this repository,
    /// `InvalidInput` when `dest` is this repository, `NoSpace` when the
    /// destination fills up.
    pub fn copy_to(&self, dest: &Repo, ids: &[String]) -> Result<Vec<SnapshotInfo>, RepoError> {
        let src = self.fresh()?;
        let resolved = ids.iter().map(|id| resolve_id(&src, self, id)).collect::<Result<BTreeSet<_>, _>>()?;
        if resolved.is_empty() {
            return Ok(Vec::new());
        }
        let dst = dest.fresh()?;
        if src.config().id == dst.config().id {
            return Err(RepoError::invalid(format!("{} and {} are the same repository", self.name, dest.name)));
        }

        let wanted: Vec<_> = resolved.iter().map(|id| id.to_hex().to_string()).collect();
        let snaps = src.get_snapshots(&wanted).map_err(|e| RepoError::corrupt_from_rustic(None, &e))?;
        let present: BTreeSet<_> = load_snapshots(&dst, dest)?.iter().map(origin).collect();
        let todo: Vec<_> = snaps.into_iter().filter(|s| !present.contains(&origin(s))).collect();
        if todo.is_empty() {
            return Ok(Vec::new());
        }

        let src = src.to_indexed().map_err(|e| RepoError::corrupt_from_rustic(None, &e))?;
        let dst = dst.to_indexed_ids().map_err(|e| dest.rustic_err(&e))?;
        src.copy(&dst, todo.iter()).map_err(|e| dest.rustic_err(&e))?;
        dest.sync()?;

        let copied: BTreeSet<_> = todo.iter().map(origin).collect();
        Ok(load_snapshots(&dst, dest)?
            .iter()
            .filter(|s| copied.contains(&origin(s)) && !present.contains(&origin(s)))
            .map(SnapshotInfo::from_file)
            .collect())
    }
}
