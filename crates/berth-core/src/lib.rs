//! berth-core: the domain of berth, free of I/O.
//!
//! Names follow `DESIGN.md`: a *claim* is a stable logical volume identity,
//! a *generation* one incarnation of it, a *volume* the physical storage of
//! one generation, a *snapshot* an immutable copy of a volume. Rules that
//! decide (retention today; stop intent, backoff and the reconciler later)
//! live here once, as pure functions of their inputs and a clock reading;
//! adapters (`berth-local`, `berth-aws`) carry decisions out through the
//! ports in [`ports`].

pub mod autoscale;
pub mod backoff;
pub mod backup;
pub mod claim;
pub mod continuity;
pub mod contract;
pub mod controller;
pub mod cost;
pub mod defaults;
pub mod deploy;
pub mod dry_run;
pub mod ecs_task;
pub mod event;
#[cfg(feature = "fakes")]
pub mod fake;
pub mod fault;
pub mod intent;
pub mod ledger;
pub mod membership;
pub mod plan;
pub mod ports;
pub mod rebuild;
pub mod reconcile;
pub mod retention;
pub mod scope;
pub mod service;
pub mod snapshot;
pub mod snapshot_cache;
pub mod sweep;
pub mod targets;
pub mod task;

pub mod serde_secs;

pub use claim::{ClaimName, ClaimNameError, Generation};
pub use event::{StopCode, TaskDetail, TaskStateChange, TaskStatus};
pub use intent::{stop_intent, DesiredState, IntentVerdict, StopIntent};
pub use ledger::{ClaimRecord, EventRecord, Expect, GenerationRecord, Handoff, HandoffStep, Ledger, LedgerError};
pub use ports::{PortError, VolumeId, VolumeInfo, VolumeSource, Volumes};
pub use retention::{KeepPolicy, Verdict};
pub use snapshot::{Consistency, LockMode, SnapshotId, SnapshotKind, SnapshotLock, SnapshotRecord, SnapshotRequest};
pub use task::{
    ContainerSpec, Health, HealthCheck, LaunchRequest, LaunchVolume, NetworkMode, NoEvents, Probe, Runtime, TaskArn,
    TaskDefinition, TaskEvents, TaskInfo,
};
