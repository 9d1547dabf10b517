//! The ledger: durable state of claims, generations, handoffs, idempotency
//! records, the snapshot catalogue and the event log.
//!
//! Every change of a claim is one conditional write of its whole record,
//! checked against the revision the writer read: this is the
//! compare-and-swap that fences generations (rule 3 of DESIGN.md). The
//! handoff in progress lives inside the claim record, so a step of it and
//! the claim change it implies can never be half-written, and the same
//! shape fits one DynamoDB item. Generations and events are append-mostly
//! side tables whose writes are idempotent.
//!
//! [`contract`] is the behaviour every adapter must show; the SQLite and
//! DynamoDB ledgers both run it.

pub mod contract;
pub mod read;

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backoff::CrashLoop;
use crate::claim::{ClaimName, Generation};
use crate::deploy::ServiceRecord;
use crate::event::StopCode;
use crate::intent::{DesiredState, StopCause, StopIntent};
use crate::ports::VolumeId;
use crate::snapshot::{SnapshotId, SnapshotRecord};
use crate::task::TaskArn;

/// The steps of a handoff, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HandoffStep {
    /// A controller won the stopped generation (the compare-and-swap).
    Claimed,
    /// Its stop snapshot is being taken (under the owner's lease).
    Snapshotting,
    /// The stop snapshot is recorded as the claim's head.
    Snapshotted,
    /// The generation advanced; the new volume and task are being started.
    Launching,
    /// The new task exists; waiting for it to become healthy.
    Launched,
    /// Finished (kept only in the event log and generation history).
    Done,
}

impl HandoffStep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Snapshotting => "snapshotting",
            Self::Snapshotted => "snapshotted",
            Self::Launching => "launching",
            Self::Launched => "launched",
            Self::Done => "done",
        }
    }
}

/// Why a controller stopped a task itself, remembered so the handoff that
/// follows uses the controller's intent rather than the runtime's stop code
/// (a task berth stops for failing its health checks must be replaced,
/// though the runtime reports it as a user stop).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopOrder {
    pub task: TaskArn,
    pub intent: StopIntent,
    /// Why, as a type: what the crash loop reads.
    #[serde(default)]
    pub cause: StopCause,
    /// Why, in words: what the event log and the CLI show.
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A handoff in progress: stop → snapshot → record → replace, for one
/// generation of one claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// The generation that stopped (or, for a first launch or a resume, the
    /// claim's generation before the launch).
    pub from: Generation,
    pub step: HandoffStep,
    pub stopped_task: Option<TaskArn>,
    /// The stopped generation's volume, to snapshot and then adopt or delete.
    pub old_volume: Option<VolumeId>,
    pub stop_code: Option<StopCode>,
    pub stop_reason: Option<String>,
    pub stopped_at: Option<DateTime<Utc>>,
    /// The stopped generation had been healthy: its stop snapshot is good.
    pub was_healthy: bool,
    /// Replace or park, decided when the handoff was claimed.
    pub intent: StopIntent,
    /// The intent came from the claim's desired state (scale-in, down)
    /// rather than from how the task stopped.
    #[serde(default)]
    pub intent_from_desired: bool,
    pub intent_reason: String,
    /// The stop snapshot, once recorded (or the head it launches from).
    pub snapshot: Option<SnapshotId>,
    /// A point-in-time restore: launch from `snapshot` by restoring, never adopting.
    #[serde(default)]
    pub restore: bool,
    /// The new generation's volume and task, once they exist.
    pub new_volume: Option<VolumeId>,
    pub new_task: Option<TaskArn>,
    /// Which controller holds the lease for the side effect of this step,
    /// and until when; another controller waits or takes it over after.
    pub owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
}

impl Handoff {
    /// A handoff of `claim`'s current generation and volume at `step`, with
    /// nothing stopped, snapshotted or launched yet.
    pub fn begin(claim: &ClaimRecord, step: HandoffStep, intent: StopIntent, reason: &str, now: DateTime<Utc>) -> Self {
        Self {
            from: claim.generation,
            step,
            stopped_task: None,
            old_volume: claim.volume.clone(),
            stop_code: None,
            stop_reason: None,
            stopped_at: None,
            was_healthy: false,
            intent,
            intent_from_desired: false,
            intent_reason: reason.to_owned(),
            snapshot: None,
            restore: false,
            new_volume: None,
            new_task: None,
            owner: None,
            lease_until: None,
            started_at: now,
        }
    }
}

/// A claim: a stable logical volume identity that outlives its tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub name: ClaimName,
    pub service: String,
    pub ordinal: u32,
    pub desired: DesiredState,
    /// The current generation; 0 before the first launch.
    pub generation: Generation,
    pub task: Option<TaskArn>,
    pub volume: Option<VolumeId>,
    /// The newest snapshot the claim's data is in.
    pub head_snapshot: Option<SnapshotId>,
    /// The newest snapshot of a generation that stayed healthy; pinned.
    pub last_good_snapshot: Option<SnapshotId>,
    pub backoff: CrashLoop,
    /// Since when the current task has been passing its health check.
    pub healthy_since: Option<DateTime<Utc>>,
    pub handoff: Option<Handoff>,
    pub stop_order: Option<StopOrder>,
    /// A point-in-time restore asked for: the next generation starts from
    /// this snapshot instead of the stop snapshot (which is still taken).
    #[serde(default)]
    pub restore_to: Option<SnapshotId>,
    /// The task definition revision new tasks of this claim run.
    pub revision: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Optimistic concurrency token: set by the ledger on every write.
    #[serde(default)]
    pub version: u64,
    /// The claim this one was forked from (`berth fork`): a fork stands
    /// outside its service's count, so scaling never parks or resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_of: Option<ClaimName>,
}

/// The ordinal of a forked claim: outside every desired count.
pub const FORK_ORDINAL: u32 = u32::MAX;

impl ClaimRecord {
    /// A fork of `source`: a new claim of the same service, desired
    /// Running, whose first generation restores `snapshot`.
    pub fn fork(name: ClaimName, source: &ClaimRecord, snapshot: SnapshotId, now: DateTime<Utc>) -> Self {
        Self {
            head_snapshot: Some(snapshot),
            fork_of: Some(source.name.clone()),
            ..Self::new(name, &source.service, FORK_ORDINAL, source.revision, now)
        }
    }

    /// Whether `task` is this claim's: its current task, or the stopped or
    /// new task of its handoff in progress.
    pub fn owns_task(&self, task: &TaskArn) -> bool {
        self.task.as_ref() == Some(task)
            || self
                .handoff
                .as_ref()
                .is_some_and(|h| h.stopped_task.as_ref() == Some(task) || h.new_task.as_ref() == Some(task))
    }

    /// A new claim, desired Running, never launched.
    pub fn new(name: ClaimName, service: &str, ordinal: u32, revision: u32, now: DateTime<Utc>) -> Self {
        Self {
            name,
            service: service.to_owned(),
            ordinal,
            desired: DesiredState::Running,
            generation: Generation(0),
            task: None,
            volume: None,
            head_snapshot: None,
            last_good_snapshot: None,
            backoff: CrashLoop::default(),
            healthy_since: None,
            handoff: None,
            stop_order: None,
            restore_to: None,
            revision,
            created_at: now,
            updated_at: now,
            version: 0,
            fork_of: None,
        }
    }
}

/// One incarnation of a claim, as history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub claim: ClaimName,
    pub generation: Generation,
    pub task: Option<TaskArn>,
    pub volume: Option<VolumeId>,
    /// The snapshot its volume came from (None: empty volume).
    pub source_snapshot: Option<SnapshotId>,
    /// Whether its volume was adopted from the previous generation.
    pub adopted: bool,
    pub revision: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub healthy_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub stop_code: Option<StopCode>,
    pub stop_reason: Option<String>,
    pub stop_snapshot: Option<SnapshotId>,
    /// From the previous generation's stop to this one passing its health check.
    pub rto_ms: Option<u64>,
}

impl GenerationRecord {
    pub fn new(claim: ClaimName, generation: Generation) -> Self {
        Self {
            claim,
            generation,
            task: None,
            volume: None,
            source_snapshot: None,
            adopted: false,
            revision: 0,
            started_at: None,
            healthy_at: None,
            stopped_at: None,
            stop_code: None,
            stop_reason: None,
            stop_snapshot: None,
            rto_ms: None,
        }
    }
}

/// One line of the event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Assigned by the ledger, increasing.
    #[serde(default)]
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub claim: Option<ClaimName>,
    /// A short kebab-case kind: `handoff-claimed`, `snapshot-taken`, `task-launched`, …
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl EventRecord {
    pub fn new(time: DateTime<Utc>, claim: Option<&ClaimName>, kind: &str, message: impl Into<String>) -> Self {
        Self {
            seq: 0,
            time,
            claim: claim.cloned(),
            kind: kind.to_owned(),
            message: message.into(),
            data: serde_json::Value::Null,
        }
    }
}

/// What a conditional claim write expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No record of this claim yet.
    Absent,
    /// The record at exactly this version.
    Version(u64),
}

/// The outcome of remembering an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remembered {
    /// The key was new (or its record had expired): the caller goes ahead.
    New,
    /// The key is known and unexpired: here is what was stored with it.
    Seen(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A conditional write lost: someone else changed the record first.
    #[error("conflict: the record of {0} changed since it was read")]
    Conflict(String),
    /// The store could not be reached or was busy; a retry may succeed.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something berth cannot read.
    #[error("ledger is damaged: {0}")]
    Corrupt(String),
}

impl LedgerError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict(_))
    }
}

impl From<LedgerError> for crate::ports::PortError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Conflict(_) | LedgerError::Unavailable(_) => Self::retryable(e.to_string()),
            LedgerError::Corrupt(_) => Self::permanent(e.to_string()),
        }
    }
}

/// Durable state. All writes are atomic; claim writes are conditional.
pub trait Ledger: Send + Sync {
    fn claim(&self, name: &ClaimName) -> impl Future<Output = Result<Option<ClaimRecord>, LedgerError>> + Send;

    /// Every claim, ordered by name.
    fn claims(&self) -> impl Future<Output = Result<Vec<ClaimRecord>, LedgerError>> + Send;

    /// Writes `record` if the stored one matches `expect`; returns the
    /// record as stored, with its new version: the previous version plus
    /// one, 1 for a new record (the version `record` carries is ignored).
    /// A mismatch, including `Expect::Version` of a missing claim, is
    /// [`LedgerError::Conflict`] and changes nothing.
    fn put_claim(
        &self,
        record: &ClaimRecord,
        expect: Expect,
    ) -> impl Future<Output = Result<ClaimRecord, LedgerError>> + Send;

    /// Inserts or replaces the record of one generation.
    fn put_generation(&self, record: &GenerationRecord) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// A service's record (its task definition revisions and deployment).
    fn service(&self, name: &str) -> impl Future<Output = Result<Option<ServiceRecord>, LedgerError>> + Send;

    /// Writes a service record on the same terms as [`Ledger::put_claim`]:
    /// conditional on `expect`, returned with its new version.
    fn put_service(
        &self,
        record: &ServiceRecord,
        expect: Expect,
    ) -> impl Future<Output = Result<ServiceRecord, LedgerError>> + Send;

    fn generation(
        &self,
        claim: &ClaimName,
        generation: Generation,
    ) -> impl Future<Output = Result<Option<GenerationRecord>, LedgerError>> + Send;

    /// A claim's generations, oldest first.
    fn generations(&self, claim: &ClaimName)
        -> impl Future<Output = Result<Vec<GenerationRecord>, LedgerError>> + Send;

    /// Appends to the event log; returns the event's sequence number.
    fn append_event(&self, event: &EventRecord) -> impl Future<Output = Result<u64, LedgerError>> + Send;

    /// Events after `after`, oldest first, at most `limit`, optionally of one claim.
    fn events(
        &self,
        after: u64,
        claim: Option<&ClaimName>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<EventRecord>, LedgerError>> + Send;

    /// Stores `value` under `key` until `expires` unless an unexpired
    /// record of `key` exists, atomically. A record is unexpired while
    /// `now < expires`.
    fn remember(
        &self,
        key: &str,
        value: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> impl Future<Output = Result<Remembered, LedgerError>> + Send;

    /// Records `version` as the newest seen of a task if it is newer than
    /// the stored one; returns whether it was (false: a stale or duplicate
    /// event).
    fn observe_task_version(
        &self,
        task: &TaskArn,
        version: u64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// Adds or replaces snapshots in the catalogue.
    fn catalogue(&self, snapshots: &[SnapshotRecord]) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Removes snapshots from the catalogue.
    fn uncatalogue(&self, ids: &[SnapshotId]) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// The catalogue, optionally of one claim, newest first (equal times:
    /// the greater id first).
    fn snapshots(
        &self,
        claim: Option<&ClaimName>,
    ) -> impl Future<Output = Result<Vec<SnapshotRecord>, LedgerError>> + Send;

    /// Deletes idempotency records that expired (`expires <= now`) and task
    /// versions last updated more than 7 days before `now`; returns how
    /// many records went.
    fn purge(&self, now: DateTime<Utc>) -> impl Future<Output = Result<u64, LedgerError>> + Send;
}

/// A shared ledger is a ledger (the controller and the admin API share one).
impl<T: Ledger> Ledger for std::sync::Arc<T> {
    fn claim(&self, name: &ClaimName) -> impl Future<Output = Result<Option<ClaimRecord>, LedgerError>> + Send {
        (**self).claim(name)
    }

    fn claims(&self) -> impl Future<Output = Result<Vec<ClaimRecord>, LedgerError>> + Send {
        (**self).claims()
    }

    fn put_claim(
        &self,
        record: &ClaimRecord,
        expect: Expect,
    ) -> impl Future<Output = Result<ClaimRecord, LedgerError>> + Send {
        (**self).put_claim(record, expect)
    }

    fn put_generation(&self, record: &GenerationRecord) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).put_generation(record)
    }

    fn service(&self, name: &str) -> impl Future<Output = Result<Option<ServiceRecord>, LedgerError>> + Send {
        (**self).service(name)
    }

    fn put_service(
        &self,
        record: &ServiceRecord,
        expect: Expect,
    ) -> impl Future<Output = Result<ServiceRecord, LedgerError>> + Send {
        (**self).put_service(record, expect)
    }

    fn generation(
        &self,
        claim: &ClaimName,
        generation: Generation,
    ) -> impl Future<Output = Result<Option<GenerationRecord>, LedgerError>> + Send {
        (**self).generation(claim, generation)
    }

    fn generations(
        &self,
        claim: &ClaimName,
    ) -> impl Future<Output = Result<Vec<GenerationRecord>, LedgerError>> + Send {
        (**self).generations(claim)
    }

    fn append_event(&self, event: &EventRecord) -> impl Future<Output = Result<u64, LedgerError>> + Send {
        (**self).append_event(event)
    }

    fn events(
        &self,
        after: u64,
        claim: Option<&ClaimName>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<EventRecord>, LedgerError>> + Send {
        (**self).events(after, claim, limit)
    }

    fn remember(
        &self,
        key: &str,
        value: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> impl Future<Output = Result<Remembered, LedgerError>> + Send {
        (**self).remember(key, value, now, expires)
    }

    fn observe_task_version(
        &self,
        task: &TaskArn,
        version: u64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send {
        (**self).observe_task_version(task, version, now)
    }

    fn catalogue(&self, snapshots: &[SnapshotRecord]) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).catalogue(snapshots)
    }

    fn uncatalogue(&self, ids: &[SnapshotId]) -> impl Future<Output = Result<(), LedgerError>> + Send {
        (**self).uncatalogue(ids)
    }

    fn snapshots(
        &self,
        claim: Option<&ClaimName>,
    ) -> impl Future<Output = Result<Vec<SnapshotRecord>, LedgerError>> + Send {
        (**self).snapshots(claim)
    }

    fn purge(&self, now: DateTime<Utc>) -> impl Future<Output = Result<u64, LedgerError>> + Send {
        (**self).purge(now)
    }
}
