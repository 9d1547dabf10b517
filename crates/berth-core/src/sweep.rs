//! The sweep: volumes and snapshots that no claim references any more.
//!
//! A handoff deletes the old volume itself; the sweep catches what a crash
//! or a lost race left behind (a volume created for a generation that lost
//! its compare-and-swap, a volume of a deleted claim) and the snapshots of
//! deleted claims. Nothing younger than the grace period is touched, so a
//! volume being made right now by another controller is safe.
//!
//! The sweep never deletes a volume the ledger has not seen die. A volume
//! goes only if the ledger knows its claim from before the volume was made
//! (a ledger that was lost and started afresh knows nothing of the volumes
//! its predecessor left, whatever their generation numbers say), and its
//! data is either safe in a stop snapshot taken of that very volume or no
//! longer wanted (its claim is deleted). Any other unreferenced volume is
//! kept, and named in [`Sweep::kept`] so an operator can look at it.
//!
//! The sweep plans first ([`sweep`] is pure): every unreferenced volume
//! past the grace period gets a [`VolumeVerdict`] saying why it goes or
//! stays, `berth sweep --dry-run` prints the plan, and the controller
//! deletes exactly what the plan says.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::intent::DesiredState;
use crate::ledger::ClaimRecord;
use crate::ports::{VolumeId, VolumeInfo};
use crate::snapshot::{SnapshotId, SnapshotKind, SnapshotRecord};

/// What the sweep removes, and what it leaves for want of proof.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sweep {
    pub snapshots: Vec<SnapshotId>,
    /// Why each unreferenced volume past the grace period goes or stays.
    pub verdicts: Vec<(VolumeId, VolumeVerdict)>,
}

impl Sweep {
    /// As a plan for the executor: each volume it deletes, with its
    /// verdict, then the snapshots.
    pub fn plan(&self) -> crate::plan::Plan {
        use crate::plan::{Plan, Why};
        use crate::reconcile::Action;
        let mut plan = Plan::default();
        for (v, verdict) in self.verdicts.iter().filter(|(_, verdict)| verdict.deletes()) {
            plan.push(None, Action::DeleteVolume(v.clone()), Why::SweepVolume(verdict.clone()));
        }
        if !self.snapshots.is_empty() {
            plan.push(None, Action::DeleteSnapshots(self.snapshots.clone()), Why::SweepSnapshots);
        }
        plan
    }

    /// The volumes the sweep deletes.
    pub fn volumes(&self) -> Vec<VolumeId> {
        self.with(true)
    }

    /// Unreferenced volumes past the grace period that the ledger has not
    /// seen die: no stop snapshot of them, or a claim it does not know.
    pub fn kept(&self) -> Vec<VolumeId> {
        self.with(false)
    }

    fn with(&self, deletes: bool) -> Vec<VolumeId> {
        self.verdicts.iter().filter(|(_, v)| v.deletes() == deletes).map(|(id, _)| id.clone()).collect()
    }
}

/// The sweep's verdict on one unreferenced volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "snapshot", rename_all = "kebab-case")]
pub enum VolumeVerdict {
    /// Deleted: its data is in this completed stop snapshot of it.
    Saved(SnapshotId),
    /// Deleted: its claim is deleted.
    ClaimDeleted,
    /// Kept: no completed stop snapshot of it holds its data.
    Unsaved,
    /// Kept: the ledger does not know its claim.
    UnknownClaim,
    /// Kept: it is older than its claim's record, so another ledger made it.
    OlderThanClaim,
}

impl VolumeVerdict {
    /// Whether the sweep deletes the volume.
    pub fn deletes(&self) -> bool {
        matches!(self, Self::Saved(_) | Self::ClaimDeleted)
    }

    /// The verdict in words, for the event log and the CLI.
    pub fn reason(&self) -> String {
        match self {
            Self::Saved(s) => format!("its data is in stop snapshot {}", &s.0[..s.0.len().min(8)]),
            Self::ClaimDeleted => "its claim is deleted".into(),
            Self::Unsaved => "kept: no stop snapshot of it holds its data".into(),
            Self::UnknownClaim => "kept: the ledger does not know its claim".into(),
            Self::OlderThanClaim => "kept: older than its claim's record (another ledger's)".into(),
        }
    }
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
    // Its data is in a completed stop snapshot of this very volume.
    let saved = |v: &VolumeInfo| {
        snapshots
            .iter()
            .find(|s| s.volume.as_ref() == Some(&v.id) && s.kind == Some(SnapshotKind::OnStop) && !s.pending)
            .map(|s| s.id.clone())
    };
    let verdict = |v: &VolumeInfo| match claims.iter().find(|c| c.name == v.claim) {
        None => VolumeVerdict::UnknownClaim,
        Some(c) if v.created < c.created_at => VolumeVerdict::OlderThanClaim,
        Some(c) if c.desired == DesiredState::Deleted => VolumeVerdict::ClaimDeleted,
        Some(_) => saved(v).map_or(VolumeVerdict::Unsaved, VolumeVerdict::Saved),
    };
    let verdicts: Vec<(VolumeId, VolumeVerdict)> = volumes
        .iter()
        .filter(|v| v.created < cutoff && !referenced.contains(&v.id) && !in_flight(v))
        .map(|v| (v.id.clone(), verdict(v)))
        .collect();
    let deleted: HashSet<_> = claims.iter().filter(|c| c.desired == DesiredState::Deleted).map(|c| &c.name).collect();
    let snapshots = snapshots
        .iter()
        .filter(|s| s.time < cutoff && !s.pinned && s.claim.as_ref().is_some_and(|c| deleted.contains(c)))
        .filter(|s| s.locked_at(now).is_none())
        .map(|s| s.id.clone())
        .collect();
    Sweep { snapshots, verdicts }
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
            volume: None,
        };
        let locked = SnapshotLock { mode: LockMode::Governance, until: now + chrono::Duration::hours(1) };
        let expired = SnapshotLock { mode: LockMode::Compliance, until: now - chrono::Duration::minutes(1) };
        let snaps = [snap("free", None), snap("locked", Some(locked)), snap("expired", Some(expired))];
        let s = sweep(&[claim], &[], &snaps, now, Duration::from_secs(60));
        assert_eq!(s.snapshots, [SnapshotId("free".into()), SnapshotId("expired".into())]);
    }

    fn volume(id: &str, claim: &str, created: DateTime<Utc>) -> VolumeInfo {
        VolumeInfo {
            id: VolumeId(id.into()),
            claim: ClaimName::parse(claim).unwrap(),
            generation: Some(crate::Generation(1)),
            created,
            source_snapshot: None,
            adopted_from: None,
            location: String::new(),
        }
    }

    fn stop_snapshot_of(volume: &str, time: DateTime<Utc>) -> SnapshotRecord {
        SnapshotRecord {
            id: SnapshotId(format!("snap-of-{volume}")),
            time,
            claim: None,
            generation: Some(crate::Generation(1)),
            kind: Some(SnapshotKind::OnStop),
            pinned: false,
            pending: false,
            lock: None,
            consistency: None,
            volume: Some(VolumeId(volume.into())),
        }
    }

    /// Issue 20, defect 1: after the ledger was deleted, a fresh one
    /// started the claims again and its sweep deleted the volumes that held
    /// the old data. Only a volume the ledger knew from its making, with
    /// its data in a stop snapshot of it or its claim deleted, may go.
    #[test]
    fn the_sweep_never_deletes_a_volume_the_ledger_has_not_seen_die() {
        let now = Utc::now();
        let before_ledger = now - chrono::Duration::hours(3);
        let ledger_born = now - chrono::Duration::hours(2);
        let after = now - chrono::Duration::hours(1);
        let claim = ClaimRecord::new(ClaimName::parse("files-0").unwrap(), "files", 0, 1, ledger_born);
        let mut deleted = ClaimRecord::new(ClaimName::parse("files-1").unwrap(), "files", 1, 1, ledger_born);
        deleted.desired = DesiredState::Deleted;
        let volumes = [
            volume("vol-older-than-the-ledger", "files-0", before_ledger),
            volume("vol-never-snapshotted", "files-0", after),
            volume("vol-saved", "files-0", after),
            volume("vol-of-an-unknown-claim", "files-9", after),
            volume("vol-of-a-deleted-claim", "files-1", after),
        ];
        let snapshots = [stop_snapshot_of("vol-older-than-the-ledger", after), stop_snapshot_of("vol-saved", after)];
        let s = sweep(&[claim, deleted], &volumes, &snapshots, now, Duration::from_secs(60));
        let ids = |v: &[VolumeId]| v.iter().map(|v| v.0.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&s.volumes()), ["vol-saved", "vol-of-a-deleted-claim"]);
        assert_eq!(ids(&s.kept()), ["vol-older-than-the-ledger", "vol-never-snapshotted", "vol-of-an-unknown-claim"]);
    }

    #[test]
    fn a_pending_stop_snapshot_does_not_make_its_volume_deletable() {
        let now = Utc::now();
        let born = now - chrono::Duration::hours(2);
        let claim = ClaimRecord::new(ClaimName::parse("files-0").unwrap(), "files", 0, 1, born);
        let mut snap = stop_snapshot_of("vol-a", born);
        snap.pending = true;
        let s = sweep(&[claim], &[volume("vol-a", "files-0", born)], &[snap], now, Duration::from_secs(60));
        assert!(s.volumes().is_empty(), "{s:?}");
        assert_eq!(s.kept(), [VolumeId("vol-a".into())]);
    }
}
