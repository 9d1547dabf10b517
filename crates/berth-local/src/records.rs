//! Translation between the repository's snapshot descriptions and core's
//! snapshot records: the adapter translates, core decides.

use berth_core::{ClaimName, Generation, SnapshotId, SnapshotKind, SnapshotRecord, VolumeId};
use berth_repo::SnapshotInfo;
use chrono::{DateTime, Utc};

/// Core's view of a repository snapshot. A `claim=` tag that is not a valid
/// claim name (a snapshot made by other tools) counts as no claim.
pub fn to_record(s: &SnapshotInfo) -> SnapshotRecord {
    SnapshotRecord {
        id: SnapshotId(s.id.clone()),
        time: snapshot_time(s),
        claim: s.claim.as_deref().and_then(|c| ClaimName::parse(c).ok()),
        generation: s.generation.map(Generation),
        kind: s.kind.as_deref().and_then(SnapshotKind::parse),
        pinned: s.pinned,
        pending: false,
        lock: s.lock.clone(),
        consistency: s.consistency,
        volume: s.volume.as_ref().map(|v| VolumeId(v.clone())),
    }
}

/// The snapshot's time in UTC.
pub fn snapshot_time(s: &SnapshotInfo) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&s.time).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}
