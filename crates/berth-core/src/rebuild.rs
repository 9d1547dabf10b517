//! Rebuilding a lost ledger from the volumes and snapshots.
//!
//! A *rebuild* writes back the claims a ledger lost (see
//! [`crate::continuity`]) from what the stores still hold: every volume
//! and snapshot names its claim and generation, and every stop snapshot
//! the volume it copies. The plan is pure and made first, so
//! `berth ledger rebuild --dry-run` prints exactly what would be written.
//!
//! A rebuilt claim is parked at the newest generation the stores show,
//! holding the newest copy of its data:
//! - the volume of that generation if it is still there (the newest data
//!   of all: a task may have written it after every snapshot). If no stop
//!   snapshot was taken of that very volume, the plan says to take one
//!   first ([`RebuiltClaim::snapshot_first`]), so the head holds its data
//!   and the next launch can adopt the volume;
//! - otherwise the newest snapshot of the claim.
//!
//! Scaling then resumes the claims within the desired count as after any
//! `berth down`. Pins (the newest pinned snapshot becomes the last known
//! good one) and locks (tags of the snapshots themselves) come back with
//! them; generations come back as history, with their volumes and stop
//! snapshots. What the stores never held is not invented: stop codes,
//! health times and RTOs of the lost generations stay unknown.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::claim::{ClaimName, Generation};
use crate::continuity::LedgerBehind;
use crate::intent::DesiredState;
use crate::ledger::{ClaimRecord, EventRecord, Expect, GenerationRecord, Ledger, LedgerError};
use crate::ports::{PortError, VolumeId, VolumeInfo, Volumes};
use crate::snapshot::{SnapshotKind, SnapshotRecord, SnapshotRequest};

/// A service as the rebuild needs it: its name and the task definition
/// revision its new tasks run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRevision {
    pub name: String,
    pub revision: u32,
}

/// What a rebuild writes for one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuiltClaim {
    /// The claim record to write (parked).
    pub record: ClaimRecord,
    /// A volume whose data no stop snapshot holds: snapshot it (a stop
    /// snapshot of `record.generation`) and make that the head before the
    /// record is written.
    pub snapshot_first: Option<VolumeId>,
    /// The history the stores show, oldest first.
    pub generations: Vec<GenerationRecord>,
    /// The version of the stale record this one replaces; `None` when the
    /// ledger lacks the claim.
    pub replaces: Option<u64>,
}

/// A claim the rebuild leaves out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub claim: ClaimName,
    pub reason: String,
}

/// What a rebuild writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebuildPlan {
    pub claims: Vec<RebuiltClaim>,
    pub skipped: Vec<Skipped>,
}

/// A failure while carrying a plan out. Claims written before it stay
/// written; running the rebuild again plans only what is still missing.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("cannot snapshot volume {volume} of {claim}: {source}")]
    Snapshot {
        claim: ClaimName,
        volume: VolumeId,
        #[source]
        source: PortError,
    },
    #[error("cannot write claim {claim}: {source}")]
    Write {
        claim: ClaimName,
        #[source]
        source: LedgerError,
    },
}

/// Carries a plan out: the snapshots it asks for first, then each claim
/// with a compare-and-swap (so a claim another writer changed meanwhile
/// is refused, not overwritten), its history, and one event. Returns the
/// claims as written.
pub async fn apply<V: Volumes, L: Ledger>(
    plan: &RebuildPlan,
    volumes: &V,
    ledger: &L,
    now: DateTime<Utc>,
) -> Result<Vec<ClaimRecord>, RebuildError> {
    let mut written = Vec::new();
    for c in &plan.claims {
        let name = &c.record.name;
        let mut record = c.record.clone();
        // The stale record's version is what the swap expects; the ledger sets the next.
        let mut generations = c.generations.clone();
        if let Some(volume) = &c.snapshot_first {
            let request = SnapshotRequest::new(name.clone(), Some(record.generation), SnapshotKind::OnStop);
            let snap = volumes.snapshot(volume, &request).await.map_err(|source| RebuildError::Snapshot {
                claim: name.clone(),
                volume: volume.clone(),
                source,
            })?;
            record.head_snapshot = Some(snap.id.clone());
            if let Some(g) = generations.iter_mut().find(|g| g.generation == record.generation) {
                g.stop_snapshot = Some(snap.id.clone());
                g.stopped_at = Some(snap.time);
            }
        }
        let expect = c.replaces.map_or(Expect::Absent, Expect::Version);
        let write_err = |source| RebuildError::Write { claim: name.clone(), source };
        let record = ledger.put_claim(&record, expect).await.map_err(write_err)?;
        for g in &generations {
            ledger.put_generation(g).await.map_err(write_err)?;
        }
        let head = record.head_snapshot.as_ref().map_or("none".to_owned(), |s| s.0.chars().take(8).collect());
        let on = record.volume.as_ref().map_or("no volume".to_owned(), |v| format!("volume {v}"));
        let mut event = EventRecord::new(
            now,
            Some(name),
            "ledger-rebuilt",
            format!(
                "rebuilt from the stores: parked at generation {} on {on}, head snapshot {head}",
                record.generation
            ),
        );
        event.data = serde_json::json!({
            "generation": record.generation.0,
            "volume": record.volume,
            "head_snapshot": record.head_snapshot,
            "snapshot_taken": c.snapshot_first.is_some(),
        });
        ledger.append_event(&event).await.map_err(write_err)?;
        written.push(record);
    }
    Ok(written)
}

/// Plans the claims of `behind` back from the stores. A claim is
/// `<service>-<ordinal>` of one of `services`; one that names no
/// configured service (a fork, a removed service) is skipped, its data
/// left where it is.
pub fn plan(
    behind: &LedgerBehind,
    services: &[ServiceRevision],
    existing: &[ClaimRecord],
    volumes: &[VolumeInfo],
    snapshots: &[SnapshotRecord],
    now: DateTime<Utc>,
) -> RebuildPlan {
    let mut out = RebuildPlan::default();
    for b in &behind.claims {
        let Some((service, ordinal)) = owner(&b.claim, services) else {
            out.skipped.push(Skipped {
                claim: b.claim.clone(),
                reason: "its name is <service>-<ordinal> of no service in berth.toml: its data is left as it is".into(),
            });
            continue;
        };
        let volumes: Vec<&VolumeInfo> = volumes.iter().filter(|v| v.claim == b.claim).collect();
        let snapshots: Vec<&SnapshotRecord> = snapshots.iter().filter(|s| s.claim.as_ref() == Some(&b.claim)).collect();
        let stale = existing.iter().find(|c| c.name == b.claim);
        out.claims.push(rebuild_claim(b.claim.clone(), b.stores, service, ordinal, stale, &volumes, &snapshots, now));
    }
    out
}

/// The service and ordinal a claim name belongs to.
fn owner<'a>(claim: &ClaimName, services: &'a [ServiceRevision]) -> Option<(&'a ServiceRevision, u32)> {
    let (service, ordinal) = claim.as_str().rsplit_once('-')?;
    let ordinal: u32 = ordinal.parse().ok()?;
    // "files-07" is no claim of the platform's: it names them `files-7`.
    (ordinal.to_string() == claim.as_str()[service.len() + 1..]).then_some(())?;
    services.iter().find(|s| s.name == service).map(|s| (s, ordinal))
}

#[allow(clippy::too_many_arguments)]
fn rebuild_claim(
    name: ClaimName,
    generation: Generation,
    service: &ServiceRevision,
    ordinal: u32,
    stale: Option<&ClaimRecord>,
    volumes: &[&VolumeInfo],
    snapshots: &[&SnapshotRecord],
    now: DateTime<Utc>,
) -> RebuiltClaim {
    let stop_snapshot_of = |v: &VolumeId| {
        snapshots
            .iter()
            .filter(|s| s.volume.as_ref() == Some(v) && s.kind == Some(SnapshotKind::OnStop) && !s.pending)
            .max_by_key(|s| s.time)
    };
    let newest_volume = volumes.iter().filter(|v| v.generation == Some(generation)).max_by_key(|v| v.created);
    let newest_snapshot = snapshots.iter().filter(|s| !s.pending).max_by_key(|s| s.time);
    let (volume, head, snapshot_first) = match newest_volume {
        Some(v) => match stop_snapshot_of(&v.id) {
            Some(s) => (Some(v.id.clone()), Some(s.id.clone()), None),
            None => (Some(v.id.clone()), None, Some(v.id.clone())),
        },
        None => (None, newest_snapshot.map(|s| s.id.clone()), None),
    };
    // The claim is as old as the oldest thing it left: the sweep then
    // knows its volumes as the ledger's own (see crate::sweep).
    let born = volumes.iter().map(|v| v.created).chain(snapshots.iter().map(|s| s.time)).min().unwrap_or(now);
    let mut record = ClaimRecord::new(name.clone(), &service.name, ordinal, service.revision, born.min(now));
    record.desired = DesiredState::Parked;
    record.generation = generation;
    record.volume = volume;
    record.head_snapshot = head;
    record.last_good_snapshot =
        snapshots.iter().filter(|s| s.pinned && !s.pending).max_by_key(|s| s.time).map(|s| s.id.clone());
    record.updated_at = now;
    if let Some(old) = stale {
        record.version = old.version;
        record.fork_of = old.fork_of.clone();
        record.ordinal = old.ordinal;
    }
    RebuiltClaim {
        record,
        snapshot_first,
        generations: history(&name, volumes, snapshots),
        replaces: stale.map(|c| c.version),
    }
}

/// One generation record per generation a volume or snapshot names.
fn history(name: &ClaimName, volumes: &[&VolumeInfo], snapshots: &[&SnapshotRecord]) -> Vec<GenerationRecord> {
    let mut gens: BTreeMap<Generation, GenerationRecord> = BTreeMap::new();
    for v in volumes {
        let Some(g) = v.generation else { continue };
        let r = gens.entry(g).or_insert_with(|| GenerationRecord::new(name.clone(), g));
        if r.started_at.is_none_or(|t| v.created > t) {
            r.volume = Some(v.id.clone());
            r.source_snapshot = v.source_snapshot.clone();
            r.adopted = v.adopted_from.is_some();
            r.started_at = Some(v.created);
        }
    }
    for s in snapshots.iter().filter(|s| s.kind == Some(SnapshotKind::OnStop) && !s.pending) {
        let Some(g) = s.generation else { continue };
        let r = gens.entry(g).or_insert_with(|| GenerationRecord::new(name.clone(), g));
        if r.stopped_at.is_none_or(|t| s.time > t) {
            r.stop_snapshot = Some(s.id.clone());
            r.stopped_at = Some(s.time);
            r.volume = r.volume.clone().or(s.volume.clone());
        }
    }
    gens.into_values().collect()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::continuity::check;
    use crate::snapshot::SnapshotId;

    fn name(s: &str) -> ClaimName {
        ClaimName::parse(s).unwrap()
    }

    fn volume(id: &str, claim: &str, generation: u64, created: DateTime<Utc>) -> VolumeInfo {
        VolumeInfo {
            id: VolumeId(id.into()),
            claim: name(claim),
            generation: Some(Generation(generation)),
            created,
            source_snapshot: None,
            adopted_from: None,
            location: String::new(),
        }
    }

    fn snap(id: &str, claim: &str, generation: u64, volume: &str, time: DateTime<Utc>) -> SnapshotRecord {
        SnapshotRecord {
            id: SnapshotId(id.into()),
            time,
            claim: Some(name(claim)),
            generation: Some(Generation(generation)),
            kind: Some(SnapshotKind::OnStop),
            pinned: false,
            pending: false,
            lock: None,
            consistency: None,
            volume: Some(VolumeId(volume.into())),
        }
    }

    fn services() -> Vec<ServiceRevision> {
        vec![ServiceRevision { name: "files".into(), revision: 3 }]
    }

    #[test]
    fn a_parked_claim_comes_back_on_its_volume_and_its_stop_snapshot() {
        let t = Utc::now() - Duration::hours(1);
        let volumes = [volume("vol-b", "files-0", 2, t + Duration::minutes(5))];
        let mut pinned = snap("s1", "files-0", 1, "vol-a", t + Duration::minutes(4));
        pinned.pinned = true;
        let snapshots = [pinned, snap("s2", "files-0", 2, "vol-b", t + Duration::minutes(9))];
        let behind = check(&[], &volumes, &snapshots).unwrap_err();
        let plan = plan(&behind, &services(), &[], &volumes, &snapshots, Utc::now());
        assert!(plan.skipped.is_empty());
        let c = &plan.claims[0];
        assert_eq!(c.record.name, name("files-0"));
        assert_eq!((c.record.service.as_str(), c.record.ordinal, c.record.revision), ("files", 0, 3));
        assert_eq!(c.record.desired, DesiredState::Parked);
        assert_eq!(c.record.generation, Generation(2));
        assert_eq!(c.record.volume, Some(VolumeId("vol-b".into())));
        assert_eq!(c.record.head_snapshot, Some(SnapshotId("s2".into())));
        assert_eq!(c.record.last_good_snapshot, Some(SnapshotId("s1".into())));
        assert_eq!(c.snapshot_first, None);
        assert_eq!(c.replaces, None);
        assert_eq!(c.record.created_at, t + Duration::minutes(4), "as old as the oldest thing it left");
        let gens: Vec<_> = c.generations.iter().map(|g| (g.generation.0, g.stop_snapshot.clone())).collect();
        assert_eq!(gens, [(1, Some(SnapshotId("s1".into()))), (2, Some(SnapshotId("s2".into())))]);
    }

    /// A killed `berth up` leaves its newest data on a volume no snapshot
    /// holds; an older stop snapshot must not become the head in its place.
    #[test]
    fn a_volume_newer_than_every_snapshot_is_snapshotted_first() {
        let t = Utc::now() - Duration::hours(1);
        let volumes = [volume("vol-a", "files-1", 1, t), volume("vol-b", "files-1", 2, t + Duration::minutes(1))];
        let snapshots = [snap("s1", "files-1", 1, "vol-a", t + Duration::minutes(1))];
        let behind = check(&[], &volumes, &snapshots).unwrap_err();
        let plan = plan(&behind, &services(), &[], &volumes, &snapshots, Utc::now());
        let c = &plan.claims[0];
        assert_eq!(c.record.generation, Generation(2));
        assert_eq!(c.record.volume, Some(VolumeId("vol-b".into())));
        assert_eq!(c.snapshot_first, Some(VolumeId("vol-b".into())));
        assert_eq!(c.record.head_snapshot, None, "the head is the snapshot taken first");
    }

    #[test]
    fn with_its_volumes_gone_a_claim_comes_back_on_its_newest_snapshot() {
        let t = Utc::now() - Duration::hours(1);
        let snapshots =
            [snap("s3", "files-0", 3, "vol-c", t + Duration::minutes(2)), snap("s2", "files-0", 2, "vol-b", t)];
        let behind = check(&[], &[], &snapshots).unwrap_err();
        let plan = plan(&behind, &services(), &[], &[], &snapshots, Utc::now());
        let c = &plan.claims[0];
        assert_eq!((c.record.generation, c.record.volume.clone()), (Generation(3), None));
        assert_eq!(c.record.head_snapshot, Some(SnapshotId("s3".into())));
    }

    #[test]
    fn a_stale_record_is_replaced_at_its_version() {
        let t = Utc::now() - Duration::hours(1);
        let mut stale = ClaimRecord::new(name("files-0"), "files", 0, 1, t);
        stale.version = 17;
        let volumes = [volume("vol-c", "files-0", 4, t)];
        let snapshots = [snap("s", "files-0", 4, "vol-c", t)];
        let behind = check(std::slice::from_ref(&stale), &volumes, &snapshots).unwrap_err();
        let plan = plan(&behind, &services(), &[stale], &volumes, &snapshots, Utc::now());
        assert_eq!(plan.claims[0].replaces, Some(17));
        assert_eq!(plan.claims[0].record.version, 17);
        assert_eq!(plan.claims[0].record.generation, Generation(4));
    }

    #[test]
    fn a_claim_of_no_configured_service_is_skipped_not_guessed() {
        let t = Utc::now();
        let volumes = [volume("vol-x", "mydb-0", 1, t), volume("vol-y", "files-01", 1, t)];
        let behind = check(&[], &volumes, &[]).unwrap_err();
        let plan = plan(&behind, &services(), &[], &volumes, &[], t);
        assert!(plan.claims.is_empty(), "{plan:?}");
        let skipped: Vec<_> = plan.skipped.iter().map(|s| s.claim.to_string()).collect();
        assert_eq!(skipped, ["files-01", "mydb-0"]);
    }
}
