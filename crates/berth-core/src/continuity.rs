//! Continuity: whether the ledger is the one the stores' history was
//! written under.
//!
//! The ledger is not the only record of berth's history. Every volume the
//! controller makes and every stop or scheduled snapshot it takes carries
//! its claim and generation. A ledger that knows none of those claims, or
//! knows one at an older generation than its volumes and snapshots show,
//! has been deleted, emptied or replaced by an older copy. A controller
//! running on it would start those claims again at generation 1 on empty
//! volumes, serve none of their files, and sweep the volumes that hold
//! them. So the controller checks before it acts ([`check`]) and refuses;
//! [`crate::rebuild`] plans the ledger back from the stores.
//!
//! Only what the controller itself made counts: volumes with a generation,
//! and stop and scheduled snapshots. A manual snapshot (`berth snapshot
//! create --claim …`) says what a person typed, not what the ledger wrote.

use std::collections::BTreeMap;
use std::fmt;

use crate::claim::{ClaimName, Generation};
use crate::ledger::ClaimRecord;
use crate::ports::VolumeInfo;
use crate::snapshot::{SnapshotKind, SnapshotRecord};

/// One claim the stores know further than the ledger does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behind {
    pub claim: ClaimName,
    /// Its generation in the ledger (`None`: the ledger lacks the claim).
    pub ledger: Option<Generation>,
    /// The newest generation its volumes and snapshots show.
    pub stores: Generation,
}

/// The ledger is behind the volumes and snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerBehind {
    /// Whether the ledger holds no claim at all (deleted or emptied).
    pub empty: bool,
    pub claims: Vec<Behind>,
}

impl fmt::Display for LedgerBehind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        let list = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            for (i, b) in self.claims.iter().take(SHOWN).enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                match b.ledger {
                    None => write!(f, "{sep}{} at generation {}", b.claim, b.stores)?,
                    Some(g) => write!(f, "{sep}{} at generation {} (the ledger says {g})", b.claim, b.stores)?,
                }
            }
            if self.claims.len() > SHOWN {
                write!(f, " and {} more", self.claims.len() - SHOWN)?;
            }
            Ok(())
        };
        if self.empty {
            write!(f, "the ledger is empty, but the volumes and snapshots hold {} claim(s) (", self.claims.len())?;
            list(f)?;
            write!(f, "): it was deleted or emptied")
        } else {
            write!(f, "the ledger is behind the volumes and snapshots on {} claim(s) (", self.claims.len())?;
            list(f)?;
            write!(f, "): it was replaced by an older copy, or lost claims")
        }
    }
}

impl std::error::Error for LedgerBehind {}

/// The newest generation of each claim that the controller's own volumes
/// and snapshots show.
pub fn stored_generations(volumes: &[VolumeInfo], snapshots: &[SnapshotRecord]) -> BTreeMap<ClaimName, Generation> {
    let mut newest: BTreeMap<ClaimName, Generation> = BTreeMap::new();
    let mut see = |claim: &ClaimName, g: Generation| {
        let e = newest.entry(claim.clone()).or_insert(g);
        *e = (*e).max(g);
    };
    for v in volumes {
        if let Some(g) = v.generation {
            see(&v.claim, g);
        }
    }
    for s in snapshots
        .iter()
        .filter(|s| matches!(s.kind, Some(SnapshotKind::OnStop | SnapshotKind::Scheduled | SnapshotKind::Background)))
    {
        if let (Some(c), Some(g)) = (&s.claim, s.generation) {
            see(c, g);
        }
    }
    newest
}

/// `Ok` if the ledger knows every claim of the stores at least as far as
/// they go; otherwise which claims it is behind on.
pub fn check(claims: &[ClaimRecord], volumes: &[VolumeInfo], snapshots: &[SnapshotRecord]) -> Result<(), LedgerBehind> {
    let behind: Vec<Behind> = stored_generations(volumes, snapshots)
        .into_iter()
        .filter_map(|(claim, stores)| {
            let ledger = claims.iter().find(|c| c.name == claim).map(|c| c.generation);
            ledger.is_none_or(|g| g < stores).then_some(Behind { claim, ledger, stores })
        })
        .collect();
    if behind.is_empty() {
        Ok(())
    } else {
        Err(LedgerBehind { empty: claims.is_empty(), claims: behind })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::ports::VolumeId;
    use crate::snapshot::SnapshotId;

    fn name(s: &str) -> ClaimName {
        ClaimName::parse(s).unwrap()
    }

    fn volume(claim: &str, generation: Option<u64>) -> VolumeInfo {
        VolumeInfo {
            id: VolumeId(format!("vol-{claim}-{generation:?}")),
            claim: name(claim),
            generation: generation.map(Generation),
            created: Utc::now(),
            source_snapshot: None,
            adopted_from: None,
            location: String::new(),
        }
    }

    fn snapshot(claim: &str, generation: u64, kind: SnapshotKind) -> SnapshotRecord {
        SnapshotRecord {
            id: SnapshotId(format!("{claim}-{generation}-{kind}")),
            time: Utc::now(),
            claim: Some(name(claim)),
            generation: Some(Generation(generation)),
            kind: Some(kind),
            pinned: false,
            pending: false,
            lock: None,
            consistency: None,
            volume: None,
        }
    }

    fn claim(n: &str, generation: u64) -> ClaimRecord {
        let mut c = ClaimRecord::new(name(n), "files", 0, 1, Utc::now());
        c.generation = Generation(generation);
        c
    }

    /// Issue 20, defect 1: `rm ledger.sqlite` and `berth up` started the
    /// claims afresh on empty volumes. An empty ledger beside volumes and
    /// stop snapshots is lost, not new.
    #[test]
    fn an_empty_ledger_beside_volumes_and_snapshots_is_lost_not_new() {
        let volumes = [volume("files-0", Some(3)), volume("files-1", Some(2))];
        let snapshots = [snapshot("files-0", 2, SnapshotKind::OnStop), snapshot("files-1", 4, SnapshotKind::Scheduled)];
        let err = check(&[], &volumes, &snapshots).unwrap_err();
        assert!(err.empty);
        assert_eq!(
            err.claims,
            [
                Behind { claim: name("files-0"), ledger: None, stores: Generation(3) },
                Behind { claim: name("files-1"), ledger: None, stores: Generation(4) },
            ]
        );
        let line = err.to_string();
        assert!(line.contains("the ledger is empty") && line.contains("files-0 at generation 3"), "{line}");
    }

    #[test]
    fn a_ledger_older_than_its_stores_is_behind() {
        let claims = [claim("files-0", 5), claim("files-1", 1)];
        let volumes = [volume("files-0", Some(5)), volume("files-1", Some(3))];
        let err = check(&claims, &volumes, &[]).unwrap_err();
        assert!(!err.empty);
        assert_eq!(err.claims, [Behind { claim: name("files-1"), ledger: Some(Generation(1)), stores: Generation(3) }]);
        assert!(err.to_string().contains("the ledger says 1"), "{err}");
    }

    #[test]
    fn a_ledger_in_step_with_its_stores_passes() {
        let claims = [claim("files-0", 5)];
        let volumes = [volume("files-0", Some(5)), volume("files-0", Some(4))];
        let snapshots = [snapshot("files-0", 4, SnapshotKind::OnStop)];
        assert_eq!(check(&claims, &volumes, &snapshots), Ok(()));
        assert_eq!(check(&[], &[], &[]), Ok(()), "a new state folder starts");
    }

    #[test]
    fn what_a_person_made_does_not_count_as_the_ledgers_history() {
        let volumes = [volume("scratch-0", None)];
        let snapshots = [snapshot("files-0", 9, SnapshotKind::Manual)];
        assert_eq!(check(&[], &volumes, &snapshots), Ok(()));
    }
}
