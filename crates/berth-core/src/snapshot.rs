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

/// A snapshot's id in its store (a restic snapshot id, an EBS `snap-…`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotId(pub String);

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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
}

impl SnapshotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnStop => "on-stop",
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "on-stop" => Some(Self::OnStop),
            "scheduled" => Some(Self::Scheduled),
            "manual" => Some(Self::Manual),
            _ => None,
        }
    }
}

impl std::str::FromStr for SnapshotKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| format!("'{s}' is not a snapshot kind: use on-stop, scheduled or manual"))
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
}
