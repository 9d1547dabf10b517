//! Ports: the small traits through which decisions reach the world.
//!
//! Core decides; adapters act. Each port is keyed by domain ids and reports
//! failures as [`PortError`], which says only whether a retry can help — the
//! policy for retrying lives in core, not in each adapter. Ports are async so
//! one executor serves blocking local adapters and the AWS SDK alike; they
//! use no runtime of their own.

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::claim::{ClaimName, Generation};
use crate::snapshot::{SnapshotId, SnapshotRecord, SnapshotRequest};

/// A volume's id in its store (`vol-…` locally and on EBS).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VolumeId(pub String);

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a new volume's data comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    Empty,
    /// Restored from a snapshot.
    Snapshot(SnapshotId),
    /// The previous generation's volume if it is unchanged since `snapshot`
    /// was taken of it (checked by the adapter), else restored from `snapshot`.
    /// Locally this turns a restore of any size into a rename.
    AdoptOrRestore {
        volume: VolumeId,
        snapshot: SnapshotId,
    },
}

/// A volume as its store reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub id: VolumeId,
    pub claim: ClaimName,
    pub generation: Option<Generation>,
    pub created: DateTime<Utc>,
    /// The snapshot it was restored from, if any.
    pub source_snapshot: Option<SnapshotId>,
    /// Whether it was adopted from the previous generation rather than restored.
    pub adopted_from: Option<VolumeId>,
    /// Where a task mounts it (a folder locally, a device on AWS).
    pub location: String,
}

/// A failure of a port, classified for the error policy.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PortError {
    pub retryable: bool,
    pub message: String,
}

impl PortError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { retryable: true, message: message.into() }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self { retryable: false, message: message.into() }
    }
}

/// Volumes and their snapshots.
pub trait Volumes: Send + Sync {
    /// Whether volumes come into being with their task (EBS on Fargate:
    /// RunTask makes the volume from a snapshot) rather than before it
    /// (folders under `berth up`). Such a store is never asked to
    /// `create`, and cannot adopt a volume: every replacement restores.
    fn made_at_launch(&self) -> bool {
        false
    }

    /// Creates a volume for a generation of `claim`.
    fn create(
        &self,
        claim: &ClaimName,
        generation: Option<Generation>,
        source: &VolumeSource,
    ) -> impl Future<Output = Result<VolumeInfo, PortError>> + Send;

    /// Takes a snapshot of a volume whose task has stopped.
    fn snapshot(
        &self,
        volume: &VolumeId,
        request: &SnapshotRequest,
    ) -> impl Future<Output = Result<SnapshotRecord, PortError>> + Send;

    /// Deletes a volume; deleting one that is gone succeeds.
    fn delete(&self, volume: &VolumeId) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Every volume in the store.
    fn list(&self) -> impl Future<Output = Result<Vec<VolumeInfo>, PortError>> + Send;

    /// Every snapshot in the store.
    fn snapshots(&self) -> impl Future<Output = Result<Vec<SnapshotRecord>, PortError>> + Send;

    /// Deletes snapshots; deleting one that is gone succeeds.
    fn delete_snapshots(&self, ids: &[SnapshotId]) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// A shared store is a store: controllers, the admin API and tests hold
/// ports behind `Arc`.
impl<T: Volumes> Volumes for std::sync::Arc<T> {
    fn made_at_launch(&self) -> bool {
        (**self).made_at_launch()
    }

    fn create(
        &self,
        claim: &ClaimName,
        generation: Option<Generation>,
        source: &VolumeSource,
    ) -> impl Future<Output = Result<VolumeInfo, PortError>> + Send {
        (**self).create(claim, generation, source)
    }

    fn snapshot(
        &self,
        volume: &VolumeId,
        request: &SnapshotRequest,
    ) -> impl Future<Output = Result<SnapshotRecord, PortError>> + Send {
        (**self).snapshot(volume, request)
    }

    fn delete(&self, volume: &VolumeId) -> impl Future<Output = Result<(), PortError>> + Send {
        (**self).delete(volume)
    }

    fn list(&self) -> impl Future<Output = Result<Vec<VolumeInfo>, PortError>> + Send {
        (**self).list()
    }

    fn snapshots(&self) -> impl Future<Output = Result<Vec<SnapshotRecord>, PortError>> + Send {
        (**self).snapshots()
    }

    fn delete_snapshots(&self, ids: &[SnapshotId]) -> impl Future<Output = Result<(), PortError>> + Send {
        (**self).delete_snapshots(ids)
    }
}
