//! berth's snapshot repository: point-in-time copies of volumes in a
//! restic-format repository.
//!
//! A *snapshot* is to a berth volume what an EBS snapshot is to an EBS
//! volume: an immutable, incremental, deduplicated copy of a directory at
//! one point in time. Snapshots are stored with `rustic_core` in an ordinary
//! restic repository (format v2, zstd level 3), so `restic` 0.14 and later
//! can list, check and restore them too. Each snapshot is tagged with its
//! claim (`claim=web-0`), generation, kind and pin (see [`SnapshotMeta`])
//! and stores the volume under [`VOLUME_PATH`].
//!
//! ```no_run
//! use berth_repo::{Progress, Repo, SnapshotKind, SnapshotMeta};
//! # fn main() -> Result<(), berth_repo::RepoError> {
//! let repo = Repo::open_or_init("/var/lib/berth/repo", "secret", Progress::Hidden)?;
//! let snap = repo.snapshot("/var/lib/berth/volumes/web-0.3".as_ref(),
//!                          &SnapshotMeta::new("web-0", SnapshotKind::OnStop))?;
//! repo.restore(&snap.id, "/var/lib/berth/volumes/web-0.4".as_ref())?;
//! # Ok(()) }
//! ```

mod blob_read;
mod copy;
mod direct_write;
mod durable;
mod error;
mod key;
mod location;
mod maintenance;
mod progress;
mod repo;
mod restore;
#[cfg(feature = "s3")]
mod s3;
mod snapshot;
mod snapshot_meta;

pub use error::RepoError;
pub use maintenance::{BlobAmounts, CheckReport, PackCounts, PruneStats};
pub use progress::Progress;
pub use repo::Repo;
pub use restore::RestoreStats;
pub use snapshot::{Restored, VOLUME_PATH};
pub use snapshot_meta::{Consistency, SnapshotInfo, SnapshotKind, SnapshotMeta};

#[cfg(test)]
mod tests {
    #[test]
    fn handles_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<crate::Repo>();
        send_sync::<crate::RepoError>();
    }
}
