//! The sweep: volumes and snapshots that no claim references any more.
//!
//! A handoff deletes the old volume itself; the sweep catches what a crash
//! or a lost race left behind (a volume created for a generation that lost
//! its compare-and-swap, a volume of a deleted claim) and the snapshots of
//! deleted claims. Nothing younger than the grace period is touched, so a
//! volume being made right now by another controller is safe.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::intent::DesiredState;
use crate::ledger::ClaimRecord;
use crate::ports::{VolumeId, VolumeInfo};
use crate::snapshot::{SnapshotId, SnapshotRecord};

/// What the sweep removes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub volumes: Vec<VolumeId>,
    pub snapshots: Vec<SnapshotId>,
}

/// Finds orphans among `volumes` and `snapshots` (of the services berth
/// manages) given every claim.
pub fn sweep(
    claims: &[ClaimRecord],
    volumes: &[VolumeInfo],
    snapshots: &[SnapshotRecord],
    now: DateTime<Utc>,
    grace: Duration,
) -> Sweep {
    let cutoff = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let mut referenced: HashSet<&VolumeId> = HashSet::new();
    for c in claims {
        referenced.extend(c.volume.iter());
        if let Some(h) = &c.handoff {
            referenced.extend(h.old_volume.iter().chain(h.new_volume.iter()));
        }
    }
    let in_flight = |v: &VolumeInfo| {
        // A volume of the generation being launched is about to be referenced.
        claims.iter().any(|c| c.name == v.claim && c.handoff.is_some() && v.generation == Some(c.generation))
    };
    let volumes = volumes
        .iter()
        .filter(|v| v.created < cutoff && !referenced.contains(&v.id) && !in_flight(v))
        .map(|v| v.id.clone())
        .collect();
    let deleted: HashSet<_> = claims.iter().filter(|c| c.desired == DesiredState::Deleted).map(|c| &c.name).collect();
    let snapshots = snapshots
        .iter()
        .filter(|s| s.time < cutoff && !s.pinned && s.claim.as_ref().is_some_and(|c| deleted.contains(c)))
        .filter(|s| s.locked_at(now).is_none())
        .map(|s| s.id.clone())
        .collect();
    Sweep { volumes, snapshots }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::ClaimName;
    use crate::snapshot::{LockMode, SnapshotLock};

    #[test]
    fn a_locked_snapshot_of_a_deleted_claim_outlives_the_sweep() {
        let now = Utc::now();
        let old = now - chrono::Duration::hours(2);
        let name = ClaimName::parse("web-3").unwrap();
        let mut claim = ClaimRecord::new(name.clone(), "web", 3, 1, old);
        claim.desired = DesiredState::Deleted;
        let snap = |id: &str, lock: Option<SnapshotLock>| SnapshotRecord {
            id: SnapshotId(id.into()),
            time: old,
            claim: Some(name.clone()),
            generation: None,
            kind: None,
            pinned: false,
            pending: false,
            lock,
            consistency: None,
        };
        let locked = SnapshotLock { mode: LockMode::Governance, until: now + chrono::Duration::hours(1) };
        let expired = SnapshotLock { mode: LockMode::Compliance, until: now - chrono::Duration::minutes(1) };
        let snaps = [snap("free", None), snap("locked", Some(locked)), snap("expired", Some(expired))];
        let s = sweep(&[claim], &[], &snaps, now, Duration::from_secs(60));
        assert_eq!(s.snapshots, [SnapshotId("free".into()), SnapshotId("expired".into())]);
    }
}
