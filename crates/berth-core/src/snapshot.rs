//! Snapshots as the domain sees them, whatever stores them.
//!
//! A *snapshot* is an immutable point-in-time copy of a volume: a
//! restic-format snapshot locally, an EBS snapshot on AWS. The record carries
//! what policies need (claim, generation, kind, pin, time), not how the bytes
//! are stored.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::claim::{ClaimName, Generation};
use crate::ports::VolumeId;

/// A snapshot's id in its store (a restic snapshot id, an EBS `snap-…`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotId(pub String);

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names no snapshot of a volume keeps: the file service's temporary
/// files (`berth_files::name::TEMP_PREFIX`), half-written uploads that a
/// restore must not bring back (issue 20, defect 6). Gitignore-style globs.
pub const LEFT_OUT: &[&str] = &[".berth-tmp-*"];

/// Why a snapshot was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    /// Taken when a task stopped, for its replacement (a handoff).
    OnStop,
    /// Taken by a backup schedule.
    Scheduled,
    /// Taken by a person (`berth snapshot create`).
    Manual,
    /// Taken of a running task's volume when it changed, so the stop
    /// snapshot reads only what changed since: crash-consistent, a parent
    /// for the next snapshot, not a backup (only the newest is kept).
    Background,
}

impl SnapshotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnStop => "on-stop",
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
            Self::Background => "background",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "on-stop" => Some(Self::OnStop),
            "scheduled" => Some(Self::Scheduled),
            "manual" => Some(Self::Manual),
            "background" => Some(Self::Background),
            _ => None,
        }
    }
}

impl std::str::FromStr for SnapshotKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
            .ok_or_else(|| format!("'{s}' is not a snapshot kind: use on-stop, scheduled, manual or background"))
    }
}

impl fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to record on a new snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub claim: ClaimName,
    pub generation: Option<Generation>,
    pub kind: SnapshotKind,
    /// Pinned snapshots are never removed by retention (last known good).
    pub pinned: bool,
    /// A retention lock from the moment the snapshot exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<SnapshotLock>,
    /// Set for snapshots of a running volume (scheduled backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
}

impl SnapshotRequest {
    /// A request with no pin, lock or consistency mark.
    pub fn new(claim: ClaimName, generation: Option<Generation>, kind: SnapshotKind) -> Self {
        Self { claim, generation, kind, pinned: false, lock: None, consistency: None }
    }
}

/// A snapshot in a store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: SnapshotId,
    pub time: DateTime<Utc>,
    /// `None` for snapshots berth did not take (no `claim=` tag).
    pub claim: Option<ClaimName>,
    pub generation: Option<Generation>,
    pub kind: Option<SnapshotKind>,
    pub pinned: bool,
    /// Still being taken (EBS snapshots stay `pending` for minutes): it
    /// cannot be restored from yet, and the volume it copies must stay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
    /// A retention lock, as EBS snapshot lock: no command deletes the
    /// snapshot while it holds (governance yields to an explicit bypass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<SnapshotLock>,
    /// For a snapshot of a running volume: whether the task quiesced for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
    /// The volume it copies. Volume ids never repeat, so this is what tells
    /// one incarnation's stop snapshot from another's of the same claim and
    /// generation number (a ledger rebuilt or lost starts numbering again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeId>,
}

/// How consistent a snapshot of a running volume is. A stop snapshot is
/// taken of a volume no process writes to, so it needs no such mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// The workload quiesced for it: no write was in flight.
    Application,
    /// Taken without a working quiesce hook: as consistent as after a crash.
    Crash,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Application => "application",
            Self::Crash => "crash",
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SnapshotRecord {
    /// Whether a lock keeps this snapshot at `now`.
    pub fn locked_at(&self, now: DateTime<Utc>) -> Option<&SnapshotLock> {
        self.lock.as_ref().filter(|l| l.holds_at(now))
    }
}

/// How strongly a lock holds, in EBS snapshot lock's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockMode {
    /// Deletable before its date only with an explicit bypass
    /// (`--bypass-governance`), by someone who means it.
    Governance,
    /// Deletable by no command before its date, `--force` included.
    Compliance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Governance => "governance",
            Self::Compliance => "compliance",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "governance" => Some(Self::Governance),
            "compliance" => Some(Self::Compliance),
            _ => None,
        }
    }
}

impl std::str::FromStr for LockMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| format!("'{s}' is not a lock mode: use governance or compliance"))
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A retention lock on one snapshot: it holds until `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotLock {
    pub mode: LockMode,
    pub until: DateTime<Utc>,
}

impl SnapshotLock {
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        now < self.until
    }

    /// Whether the lock forbids deleting at `now`, given whether the caller
    /// asked to bypass governance locks. The one rule every deletion path
    /// (forget, prune's plan, the sweep, the handoff's retention) obeys.
    pub fn forbids_delete(&self, now: DateTime<Utc>, bypass_governance: bool) -> bool {
        self.holds_at(now) && !(self.mode == LockMode::Governance && bypass_governance)
    }
}
