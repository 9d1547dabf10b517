//! A dry run of the ports: reads go through to the port it wraps, and
//! every call that would change the world (start or stop a task, make,
//! snapshot or delete a volume or snapshot) is refused and remembered.
//!
//! The controller runs unchanged over it: a pass goes as far as its first
//! call to the world and stops there with that call's error, which is
//! what `berth lambda decide` shows ("the handler's steps up to its first
//! AWS call"). Ledger writes are not the wrapper's business: give the
//! controller a copy of the ledger to write.

use std::sync::Mutex;

use crate::autoscale::UsageSample;
use crate::claim::{ClaimName, Generation};
use crate::event::StopCode;
use crate::ports::{PortError, VolumeId, VolumeInfo, VolumeSource, Volumes};
use crate::snapshot::{SnapshotId, SnapshotRecord, SnapshotRequest};
use crate::task::{LaunchRequest, Runtime, TaskArn, TaskInfo};

/// The start of the error of a refused call.
pub const REFUSED: &str = "dry run";

/// `inner`, with every call that would change the world refused.
#[derive(Debug, Default)]
pub struct DryRun<P> {
    inner: P,
    refused: Mutex<Vec<String>>,
}

impl<P> DryRun<P> {
    pub fn new(inner: P) -> Self {
        Self { inner, refused: Mutex::new(Vec::new()) }
    }

    /// The calls refused so far, by name (`run_task`, `snapshot`, …), in order.
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().expect("dry run lock").clone()
    }

    fn refuse(&self, call: &str) -> PortError {
        self.refused.lock().expect("dry run lock").push(call.to_owned());
        PortError::permanent(format!("{REFUSED}: {call} is not carried out"))
    }
}

impl<P: Runtime> Runtime for DryRun<P> {
    type Events = P::Events;

    async fn run_task(&self, _request: &LaunchRequest) -> Result<TaskInfo, PortError> {
        Err(self.refuse("run_task"))
    }

    async fn stop_task(&self, _task: &TaskArn, _code: StopCode, _reason: &str) -> Result<(), PortError> {
        Err(self.refuse("stop_task"))
    }

    async fn tasks(&self) -> Result<Vec<TaskInfo>, PortError> {
        self.inner.tasks().await
    }

    fn subscribe(&self) -> Self::Events {
        self.inner.subscribe()
    }

    async fn usage(&self, task: &TaskArn) -> Result<Option<UsageSample>, PortError> {
        self.inner.usage(task).await
    }
}

impl<P: Volumes> Volumes for DryRun<P> {
    fn made_at_launch(&self) -> bool {
        self.inner.made_at_launch()
    }

    async fn create(
        &self,
        _claim: &ClaimName,
        _generation: Option<Generation>,
        _source: &VolumeSource,
    ) -> Result<VolumeInfo, PortError> {
        Err(self.refuse("create_volume"))
    }

    async fn snapshot(&self, _volume: &VolumeId, _request: &SnapshotRequest) -> Result<SnapshotRecord, PortError> {
        Err(self.refuse("snapshot"))
    }

    async fn delete(&self, _volume: &VolumeId) -> Result<(), PortError> {
        Err(self.refuse("delete_volume"))
    }

    async fn list(&self) -> Result<Vec<VolumeInfo>, PortError> {
        self.inner.list().await
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotRecord>, PortError> {
        self.inner.snapshots().await
    }

    async fn delete_snapshots(&self, _ids: &[SnapshotId]) -> Result<(), PortError> {
        Err(self.refuse("delete_snapshots"))
    }
}
