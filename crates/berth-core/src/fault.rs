//! Fault injection at the ports: [`Faulty`] wraps a `Runtime`, `Volumes` or
//! `Ledger` and calls a hook before each call that changes the world or the
//! ledger, by the name of the controller action that makes it
//! ([`crate::controller::action_name`]: `write:<step>`, `snapshot`,
//! `create-volume`, `run-task`, …). The crash-point tests kill `berth up`
//! from that hook between any two steps of a handoff; the controller itself
//! knows nothing of it (STYLE.md point 7: cross-cutting behaviour is a
//! wrapper over a port). Reads pass through unhooked.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::autoscale::UsageSample;
use crate::claim::{ClaimName, Generation};
use crate::deploy::ServiceRecord;
use crate::event::StopCode;
use crate::ledger::{ClaimRecord, EventRecord, Expect, GenerationRecord, Ledger, LedgerError, Remembered};
use crate::ports::{PortError, VolumeId, VolumeInfo, VolumeSource, Volumes};
use crate::snapshot::{SnapshotId, SnapshotRecord, SnapshotRequest};
use crate::task::{LaunchRequest, Runtime, TaskArn, TaskInfo};

/// Sees the name of each changing call before it is made.
pub type CallHook = Arc<dyn Fn(&str) + Send + Sync>;

/// `inner`, with `hook` (if any) called before each changing call.
pub struct Faulty<P> {
    inner: P,
    hook: Option<CallHook>,
}

impl<P> Faulty<P> {
    pub fn new(inner: P, hook: Option<CallHook>) -> Self {
        Self { inner, hook }
    }

    /// The port itself, for what only its adapter offers (a volume's folder).
    pub fn inner(&self) -> &P {
        &self.inner
    }

    fn before(&self, call: &str) {
        if let Some(hook) = &self.hook {
            hook(call);
        }
    }
}

/// The name of a claim write, as [`crate::controller::action_name`] names
/// the action that makes it.
fn claim_write(record: &ClaimRecord, expect: &Expect) -> String {
    match (expect, &record.handoff) {
        (Expect::Absent, _) => "create-claim".into(),
        (_, Some(h)) => format!("write:{}", h.step.as_str()),
        (_, None) => "write:done".into(),
    }
}

impl<P: Runtime> Runtime for Faulty<P> {
    type Events = P::Events;

    fn subscribe(&self) -> Self::Events {
        self.inner.subscribe()
    }

    fn usage(&self, task: &TaskArn) -> impl Future<Output = Result<Option<UsageSample>, PortError>> + Send {
        self.inner.usage(task)
    }

    fn run_task(&self, request: &LaunchRequest) -> impl Future<Output = Result<TaskInfo, PortError>> + Send {
        self.before("run-task");
        self.inner.run_task(request)
    }

    fn stop_task(
        &self,
        task: &TaskArn,
        code: StopCode,
        reason: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send {
        self.before("stop-task");
        self.inner.stop_task(task, code, reason)
    }

    fn tasks(&self) -> impl Future<Output = Result<Vec<TaskInfo>, PortError>> + Send {
        self.inner.tasks()
    }
}

impl<P: Volumes> Volumes for Faulty<P> {
    fn made_at_launch(&self) -> bool {
        self.inner.made_at_launch()
    }

    async fn create(
        &self,
        claim: &ClaimName,
        generation: Option<Generation>,
        source: &VolumeSource,
    ) -> Result<VolumeInfo, PortError> {
        self.before("create-volume");
        self.inner.create(claim, generation, source).await
    }

    async fn snapshot(&self, volume: &VolumeId, request: &SnapshotRequest) -> Result<SnapshotRecord, PortError> {
        self.before("snapshot");
        self.inner.snapshot(volume, request).await
    }

    async fn delete(&self, volume: &VolumeId) -> Result<(), PortError> {
        self.before("delete-volume");
        self.inner.delete(volume).await
    }

    async fn list(&self) -> Result<Vec<VolumeInfo>, PortError> {
        self.inner.list().await
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotRecord>, PortError> {
        self.inner.snapshots().await
    }

    async fn delete_snapshots(&self, ids: &[SnapshotId]) -> Result<(), PortError> {
        self.before("forget");
        self.inner.delete_snapshots(ids).await
    }
}

impl<P: Ledger> Ledger for Faulty<P> {
    fn claim(&self, name: &ClaimName) -> impl Future<Output = Result<Option<ClaimRecord>, LedgerError>> + Send {
        self.inner.claim(name)
    }

    fn claims(&self) -> impl Future<Output = Result<Vec<ClaimRecord>, LedgerError>> + Send {
        self.inner.claims()
    }

    fn put_claim(
        &self,
        record: &ClaimRecord,
        expect: Expect,
    ) -> impl Future<Output = Result<ClaimRecord, LedgerError>> + Send {
        self.before(&claim_write(record, &expect));
        self.inner.put_claim(record, expect)
    }

    fn put_generation(&self, record: &GenerationRecord) -> impl Future<Output = Result<(), LedgerError>> + Send {
        self.before("mark");
        self.inner.put_generation(record)
    }

    fn service(&self, name: &str) -> impl Future<Output = Result<Option<ServiceRecord>, LedgerError>> + Send {
        self.inner.service(name)
    }

    fn put_service(
        &self,
        record: &ServiceRecord,
        expect: Expect,
    ) -> impl Future<Output = Result<ServiceRecord, LedgerError>> + Send {
        self.before("write-service");
        self.inner.put_service(record, expect)
    }

    fn generation(
        &self,
        claim: &ClaimName,
        generation: Generation,
    ) -> impl Future<Output = Result<Option<GenerationRecord>, LedgerError>> + Send {
        self.inner.generation(claim, generation)
    }

    fn generations(
        &self,
        claim: &ClaimName,
    ) -> impl Future<Output = Result<Vec<GenerationRecord>, LedgerError>> + Send {
        self.inner.generations(claim)
    }

    fn append_event(&self, event: &EventRecord) -> impl Future<Output = Result<u64, LedgerError>> + Send {
        self.before("log");
        self.inner.append_event(event)
    }

    fn events(
        &self,
        after: u64,
        claim: Option<&ClaimName>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<EventRecord>, LedgerError>> + Send {
        self.inner.events(after, claim, limit)
    }

    fn remember(
        &self,
        key: &str,
        value: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> impl Future<Output = Result<Remembered, LedgerError>> + Send {
        self.inner.remember(key, value, now, expires)
    }

    fn observe_task_version(
        &self,
        task: &TaskArn,
        version: u64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send {
        self.inner.observe_task_version(task, version, now)
    }

    fn catalogue(&self, snapshots: &[SnapshotRecord]) -> impl Future<Output = Result<(), LedgerError>> + Send {
        self.inner.catalogue(snapshots)
    }

    fn uncatalogue(&self, ids: &[SnapshotId]) -> impl Future<Output = Result<(), LedgerError>> + Send {
        self.inner.uncatalogue(ids)
    }

    fn snapshots(
        &self,
        claim: Option<&ClaimName>,
    ) -> impl Future<Output = Result<Vec<SnapshotRecord>, LedgerError>> + Send {
        self.inner.snapshots(claim)
    }

    fn purge(&self, now: DateTime<Utc>) -> impl Future<Output = Result<u64, LedgerError>> + Send {
        self.inner.purge(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeClock, FakeLedger, FakeVolumes};
    use std::sync::Mutex;

    fn recorder() -> (CallHook, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        (Arc::new(move |call: &str| kept.lock().unwrap().push(call.to_owned())), seen)
    }

    #[tokio::test]
    async fn changing_calls_are_named_as_the_actions_that_make_them_and_reads_are_not_hooked() {
        let (hook, seen) = recorder();
        let ledger = Faulty::new(FakeLedger::default(), Some(Arc::clone(&hook)));
        let name = ClaimName::parse("files-0").unwrap();
        let record = ClaimRecord::new(name.clone(), "files", 0, 1, Utc::now());
        let stored = ledger.put_claim(&record, Expect::Absent).await.unwrap();
        ledger.put_claim(&stored, Expect::Version(stored.version)).await.unwrap();
        ledger.claims().await.unwrap();
        let volumes = Faulty::new(FakeVolumes::new(FakeClock::default(), Arc::default()), Some(hook));
        let v = volumes.create(&name, Some(Generation(1)), &VolumeSource::Empty).await.unwrap();
        volumes.list().await.unwrap();
        volumes.delete(&v.id).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), ["create-claim", "write:done", "create-volume", "delete-volume"]);
    }
}
