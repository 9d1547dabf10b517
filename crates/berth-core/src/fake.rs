//! A fake world for tests of every crate: an in-memory runtime, volume
//! store and ledger, a clock the test moves, and faults to inject. Real
//! adapters are tested against the real things in their own crates; this
//! world exists so every rule can be driven through every case quickly.
//! Built with the `fakes` feature only (tests enable it), so the product
//! never links it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::controller::{Clock, Controller};
use crate::deploy::ServiceRecord;
use crate::event::{StopCode, TaskDetail, TaskStateChange, TaskStatus};
use crate::ledger::{ClaimRecord, EventRecord, Expect, GenerationRecord, Ledger, LedgerError, Remembered};
use crate::ports::{PortError, VolumeId, VolumeInfo, VolumeSource, Volumes};
use crate::retention::KeepPolicy;
use crate::scope::Scope;
use crate::service::ServiceSpec;
use crate::snapshot::{SnapshotId, SnapshotRecord, SnapshotRequest};
use crate::task::{Health, LaunchRequest, LaunchVolume, Runtime, TaskArn, TaskDefinition, TaskInfo};
use crate::{ClaimName, Generation};
use chrono::{DateTime, TimeZone, Utc};

#[derive(Clone)]
pub struct FakeClock(pub Arc<Mutex<DateTime<Utc>>>);

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeClock {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap())))
    }
    pub fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += chrono::Duration::from_std(d).unwrap();
    }
}

impl FakeClock {
    pub fn now_for_tests(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Fails the `n`-th call (1-based) of a kind of side effect: a crash point.
#[derive(Default)]
pub struct Faults {
    pub fail_snapshot_at: AtomicU32,
    pub fail_create_at: AtomicU32,
    pub fail_run_at: AtomicU32,
    pub fail_write_at: AtomicU32,
    /// The `n`-th claim write finds the claim written by someone else just
    /// before it (its version moved on), so its compare-and-swap is lost.
    pub race_write_at: AtomicU32,
    calls: Mutex<BTreeMap<&'static str, u32>>,
}

impl Faults {
    fn hit(&self, kind: &'static str, at: &AtomicU32) -> Result<(), PortError> {
        let mut calls = self.calls.lock().unwrap();
        let n = calls.entry(kind).or_default();
        *n += 1;
        if at.load(Ordering::SeqCst) == *n {
            return Err(PortError::retryable(format!("injected crash at {kind} #{n}")));
        }
        Ok(())
    }
    pub fn clear(&self) {
        for a in
            [&self.fail_snapshot_at, &self.fail_create_at, &self.fail_run_at, &self.fail_write_at, &self.race_write_at]
        {
            a.store(0, Ordering::SeqCst);
        }
        self.calls.lock().unwrap().clear();
    }
}

pub struct FakeRuntime {
    pub tasks: Mutex<Vec<TaskInfo>>,
    tokens: Mutex<BTreeMap<String, TaskArn>>,
    pub clock: FakeClock,
    pub faults: Arc<Faults>,
    /// Health new tasks report once running.
    pub start_health: Mutex<Health>,
    next: AtomicU32,
    pub runs: AtomicU32,
    /// When set, `stop_task` only marks the task desired STOPPED; the test
    /// finishes the stop (a slow container shutdown).
    pub deferred_stop: std::sync::atomic::AtomicBool,
    /// The store a task's volume is made in when it starts (EBS mode).
    pub launch_store: Mutex<Option<Arc<FakeVolumes>>>,
}

impl FakeRuntime {
    pub fn new(clock: FakeClock, faults: Arc<Faults>) -> Self {
        Self {
            tasks: Mutex::new(Vec::new()),
            tokens: Mutex::new(BTreeMap::new()),
            clock,
            faults,
            start_health: Mutex::new(Health::Healthy),
            next: AtomicU32::new(1),
            runs: AtomicU32::new(0),
            deferred_stop: Default::default(),
            launch_store: Mutex::new(None),
        }
    }

    fn edit(&self, arn: &TaskArn, f: impl FnOnce(&mut TaskInfo)) -> TaskInfo {
        let mut tasks = self.tasks.lock().unwrap();
        let t = tasks.iter_mut().find(|t| &t.arn == arn).expect("known task");
        f(t);
        t.version += 1;
        t.clone()
    }

    /// The task stops by itself (crash, Spot, …) and its event.
    pub fn stop_by_world(&self, arn: &TaskArn, code: StopCode, reason: &str) -> TaskStateChange {
        let now = self.clock.now();
        let t = self.edit(arn, |t| {
            t.last_status = TaskStatus::Stopped;
            t.desired_status = TaskStatus::Stopped;
            t.stop_code = Some(code);
            t.stopped_reason = Some(reason.into());
            t.stopped_at = Some(now);
        });
        event_of(&t)
    }

    pub fn set_health(&self, arn: &TaskArn, health: Health) -> TaskStateChange {
        event_of(&self.edit(arn, |t| t.health = health))
    }

    /// Forgets every task (the runtime restarted and lost them).
    pub fn forget_all(&self) {
        self.tasks.lock().unwrap().clear();
        self.tokens.lock().unwrap().clear();
    }

    pub fn running(&self) -> Vec<TaskInfo> {
        self.tasks.lock().unwrap().iter().filter(|t| !t.is_stopped()).cloned().collect()
    }

    pub fn current(&self, claim: &str) -> TaskInfo {
        let running: Vec<_> =
            self.running().into_iter().filter(|t| t.claim.as_ref().map(|c| c.as_str()) == Some(claim)).collect();
        assert_eq!(running.len(), 1, "exactly one running task of {claim}: {running:#?}");
        running.into_iter().next().unwrap()
    }
}

pub fn event_of(t: &TaskInfo) -> TaskStateChange {
    let json = serde_json::json!({
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "detail": {
            "taskArn": t.arn.0,
            "clusterArn": "arn:aws:ecs:local:000000000000:cluster/berth",
            "group": format!("service:{}", t.service.clone().unwrap_or_default()),
            "lastStatus": t.last_status.as_str(),
            "desiredStatus": t.desired_status.as_str(),
            "stopCode": t.stop_code.as_ref().map(|c| c.as_str()),
            "stoppedReason": t.stopped_reason,
            "version": t.version,
        }
    });
    TaskStateChange::parse(&json.to_string()).unwrap()
}

impl Runtime for FakeRuntime {
    // The fake world's events are handed to the controller by each test.
    type Events = crate::NoEvents;

    fn subscribe(&self) -> Self::Events {
        crate::NoEvents
    }

    async fn usage(&self, _task: &TaskArn) -> Result<Option<crate::autoscale::UsageSample>, PortError> {
        Ok(None)
    }

    async fn run_task(&self, r: &LaunchRequest) -> Result<TaskInfo, PortError> {
        if let Some(arn) = self.tokens.lock().unwrap().get(&r.client_token) {
            return Ok(self.tasks.lock().unwrap().iter().find(|t| &t.arn == arn).unwrap().clone());
        }
        self.faults.hit("run", &self.faults.fail_run_at)?;
        if let LaunchVolume::Create(source) = &r.volume {
            // As ECS does: the volume comes with the task.
            let store = self.launch_store.lock().unwrap().clone().expect("a runtime that makes volumes");
            store.make(&r.claim, Some(r.generation), source);
        }
        self.runs.fetch_add(1, Ordering::SeqCst);
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let now = self.clock.now();
        let health = *self.start_health.lock().unwrap();
        let t = TaskInfo {
            arn: TaskArn(format!("arn:aws:ecs:local:000000000000:task/berth/{n:032x}")),
            service: Some(r.service.clone()),
            claim: Some(r.claim.clone()),
            generation: Some(r.generation),
            last_status: TaskStatus::Running,
            desired_status: TaskStatus::Running,
            health,
            has_health_check: true,
            stop_code: None,
            stopped_reason: None,
            created_at: now,
            started_at: Some(now),
            stopped_at: None,
            version: 4,
            endpoint: None,
            definition: Some(format!(
                "arn:aws:ecs:local:000000000000:task-definition/{}:{}",
                r.definition.family, r.definition.revision
            )),
        };
        self.tokens.lock().unwrap().insert(r.client_token.clone(), t.arn.clone());
        self.tasks.lock().unwrap().push(t.clone());
        Ok(t)
    }

    async fn stop_task(&self, task: &TaskArn, code: StopCode, reason: &str) -> Result<(), PortError> {
        let known = self.tasks.lock().unwrap().iter().any(|t| &t.arn == task && !t.is_stopped());
        if known && self.deferred_stop.load(Ordering::SeqCst) {
            self.edit(task, |t| t.desired_status = TaskStatus::Stopped);
        } else if known {
            self.stop_by_world(task, code, reason);
        }
        Ok(())
    }

    async fn tasks(&self) -> Result<Vec<TaskInfo>, PortError> {
        Ok(self.tasks.lock().unwrap().clone())
    }
}

pub struct FakeVolumes {
    pub volumes: Mutex<Vec<VolumeInfo>>,
    pub snapshots: Mutex<Vec<SnapshotRecord>>,
    pub clock: FakeClock,
    pub faults: Arc<Faults>,
    next: AtomicU32,
    pub snapshots_taken: AtomicU32,
    pub restores: AtomicU32,
    pub adopts: AtomicU32,
    /// EBS mode: volumes are made by the runtime as it starts a task.
    pub at_launch: std::sync::atomic::AtomicBool,
    /// EBS mode: a snapshot is pending for this long after it is taken.
    pub pending_for: Mutex<Option<Duration>>,
}

impl FakeVolumes {
    pub fn new(clock: FakeClock, faults: Arc<Faults>) -> Self {
        Self {
            volumes: Mutex::new(Vec::new()),
            snapshots: Mutex::new(Vec::new()),
            clock,
            faults,
            next: AtomicU32::new(1),
            snapshots_taken: AtomicU32::new(0),
            restores: AtomicU32::new(0),
            adopts: AtomicU32::new(0),
            at_launch: Default::default(),
            pending_for: Mutex::new(None),
        }
    }

    /// Snapshots as the store reports them now: pending until `pending_for`
    /// has passed.
    fn reported(&self) -> Vec<SnapshotRecord> {
        let now = self.clock.now();
        let pending_for = *self.pending_for.lock().unwrap();
        let mut list = self.snapshots.lock().unwrap().clone();
        for s in &mut list {
            s.pending = pending_for.is_some_and(|d| now < s.time + chrono::Duration::from_std(d).unwrap());
        }
        list
    }

    /// Makes a volume (by `create`, or by the runtime in EBS mode).
    pub fn make(&self, claim: &ClaimName, generation: Option<Generation>, source: &VolumeSource) -> VolumeInfo {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let mut info = VolumeInfo {
            id: VolumeId(format!("vol-{n:08}")),
            claim: claim.clone(),
            generation,
            created: self.clock.now(),
            source_snapshot: None,
            adopted_from: None,
            location: format!("/volumes/{n}"),
        };
        let mut volumes = self.volumes.lock().unwrap();
        match source {
            VolumeSource::Empty => {}
            VolumeSource::Snapshot(s) => {
                let snapshots = self.reported();
                let snap = snapshots.iter().find(|x| &x.id == s).expect("restore from a known snapshot");
                assert!(!snap.pending, "restore from a pending snapshot");
                self.restores.fetch_add(1, Ordering::SeqCst);
                info.source_snapshot = Some(s.clone());
            }
            VolumeSource::AdoptOrRestore { volume, snapshot } => {
                info.source_snapshot = Some(snapshot.clone());
                if let Some(i) = volumes.iter().position(|v| &v.id == volume) {
                    volumes.remove(i);
                    info.adopted_from = Some(volume.clone());
                    self.adopts.fetch_add(1, Ordering::SeqCst);
                } else {
                    self.restores.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        volumes.push(info.clone());
        info
    }

    pub fn of(&self, claim: &str) -> Vec<SnapshotRecord> {
        self.snapshots.lock().unwrap().iter().filter(|s| s.claim.as_ref().unwrap().as_str() == claim).cloned().collect()
    }
}

impl Volumes for FakeVolumes {
    fn made_at_launch(&self) -> bool {
        self.at_launch.load(Ordering::SeqCst)
    }

    async fn create(
        &self,
        claim: &ClaimName,
        generation: Option<Generation>,
        source: &VolumeSource,
    ) -> Result<VolumeInfo, PortError> {
        self.faults.hit("create", &self.faults.fail_create_at)?;
        assert!(!self.at_launch.load(Ordering::SeqCst), "create asked of a store that makes volumes at launch");
        Ok(self.make(claim, generation, source))
    }

    async fn snapshot(&self, volume: &VolumeId, r: &SnapshotRequest) -> Result<SnapshotRecord, PortError> {
        self.faults.hit("snapshot", &self.faults.fail_snapshot_at)?;
        assert!(self.volumes.lock().unwrap().iter().any(|v| &v.id == volume), "snapshot of a missing volume");
        let n = self.snapshots_taken.fetch_add(1, Ordering::SeqCst) + 1;
        let s = SnapshotRecord {
            id: SnapshotId(format!("{n:08x}{}", "0".repeat(56))),
            time: self.clock.now(),
            claim: Some(r.claim.clone()),
            generation: r.generation,
            kind: Some(r.kind),
            pinned: r.pinned,
            pending: self.pending_for.lock().unwrap().is_some(),
            lock: r.lock.clone(),
            consistency: r.consistency,
            volume: Some(volume.clone()),
        };
        self.snapshots.lock().unwrap().push(s.clone());
        Ok(s)
    }

    async fn delete(&self, volume: &VolumeId) -> Result<(), PortError> {
        assert!(!self.reported().iter().any(|s| s.pending), "a volume deleted while a snapshot is pending");
        self.volumes.lock().unwrap().retain(|v| &v.id != volume);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<VolumeInfo>, PortError> {
        Ok(self.volumes.lock().unwrap().clone())
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotRecord>, PortError> {
        Ok(self.reported())
    }

    async fn delete_snapshots(&self, ids: &[SnapshotId]) -> Result<(), PortError> {
        let now = self.clock.now();
        let locked: Vec<_> = self
            .snapshots
            .lock()
            .unwrap()
            .iter()
            .filter(|s| ids.contains(&s.id) && s.locked_at(now).is_some())
            .cloned()
            .collect();
        // As a real store refuses: no rule may ever ask to delete a locked snapshot.
        assert!(locked.is_empty(), "asked to delete locked snapshots {locked:?}");
        self.snapshots.lock().unwrap().retain(|s| !ids.contains(&s.id));
        Ok(())
    }
}

#[derive(Default)]
struct LedgerState {
    claims: BTreeMap<ClaimName, ClaimRecord>,
    generations: BTreeMap<(ClaimName, Generation), GenerationRecord>,
    events: Vec<EventRecord>,
    keys: BTreeMap<String, (String, DateTime<Utc>)>,
    versions: BTreeMap<TaskArn, u64>,
    catalogue: BTreeMap<SnapshotId, SnapshotRecord>,
    services: BTreeMap<String, ServiceRecord>,
}

/// The contract's conditional write of one record of `map`.
fn compare_and_swap<K: Ord + ToString, V: Clone>(
    map: &mut BTreeMap<K, V>,
    key: K,
    record: &V,
    expect: Expect,
    version: impl Fn(&V) -> u64,
    set_version: impl Fn(&mut V, u64),
) -> Result<V, LedgerError> {
    let stored = map.get(&key).map(&version);
    let ok = match expect {
        Expect::Absent => stored.is_none(),
        Expect::Version(v) => stored == Some(v),
    };
    if !ok {
        return Err(LedgerError::Conflict(key.to_string()));
    }
    let mut r = record.clone();
    set_version(&mut r, stored.unwrap_or(0) + 1);
    map.insert(key, r.clone());
    Ok(r)
}

/// An in-memory ledger with the contract's semantics.
#[derive(Default)]
pub struct FakeLedger {
    state: Mutex<LedgerState>,
    pub faults: Arc<Faults>,
}

impl FakeLedger {
    pub fn with_faults(faults: Arc<Faults>) -> Self {
        Self { state: Mutex::default(), faults }
    }
}

impl Ledger for FakeLedger {
    async fn claim(&self, name: &ClaimName) -> Result<Option<ClaimRecord>, LedgerError> {
        Ok(self.state.lock().unwrap().claims.get(name).cloned())
    }
    async fn claims(&self) -> Result<Vec<ClaimRecord>, LedgerError> {
        Ok(self.state.lock().unwrap().claims.values().cloned().collect())
    }
    async fn put_claim(&self, record: &ClaimRecord, expect: Expect) -> Result<ClaimRecord, LedgerError> {
        self.faults.hit("write", &self.faults.fail_write_at).map_err(|e| LedgerError::Unavailable(e.message))?;
        let mut s = self.state.lock().unwrap();
        if self.faults.hit("claim write", &self.faults.race_write_at).is_err() {
            if let Some(stored) = s.claims.get_mut(&record.name) {
                stored.version += 1;
            }
        }
        compare_and_swap(&mut s.claims, record.name.clone(), record, expect, |r| r.version, |r, v| r.version = v)
    }
    async fn service(&self, name: &str) -> Result<Option<ServiceRecord>, LedgerError> {
        Ok(self.state.lock().unwrap().services.get(name).cloned())
    }
    async fn put_service(&self, record: &ServiceRecord, expect: Expect) -> Result<ServiceRecord, LedgerError> {
        let mut s = self.state.lock().unwrap();
        compare_and_swap(&mut s.services, record.name.clone(), record, expect, |r| r.version, |r, v| r.version = v)
    }
    async fn put_generation(&self, record: &GenerationRecord) -> Result<(), LedgerError> {
        let key = (record.claim.clone(), record.generation);
        self.state.lock().unwrap().generations.insert(key, record.clone());
        Ok(())
    }
    async fn generation(&self, claim: &ClaimName, g: Generation) -> Result<Option<GenerationRecord>, LedgerError> {
        Ok(self.state.lock().unwrap().generations.get(&(claim.clone(), g)).cloned())
    }
    async fn generations(&self, claim: &ClaimName) -> Result<Vec<GenerationRecord>, LedgerError> {
        let s = self.state.lock().unwrap();
        Ok(s.generations.values().filter(|g| &g.claim == claim).cloned().collect())
    }
    async fn append_event(&self, event: &EventRecord) -> Result<u64, LedgerError> {
        let mut s = self.state.lock().unwrap();
        let mut e = event.clone();
        e.seq = s.events.len() as u64 + 1;
        s.events.push(e);
        Ok(s.events.len() as u64)
    }
    async fn events(
        &self,
        after: u64,
        claim: Option<&ClaimName>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, LedgerError> {
        let s = self.state.lock().unwrap();
        Ok(s.events
            .iter()
            .filter(|e| e.seq > after && claim.is_none_or(|c| e.claim.as_ref() == Some(c)))
            .take(limit)
            .cloned()
            .collect())
    }
    async fn remember(
        &self,
        key: &str,
        value: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<Remembered, LedgerError> {
        let mut s = self.state.lock().unwrap();
        if let Some((v, exp)) = s.keys.get(key) {
            if *exp > now {
                return Ok(Remembered::Seen(v.clone()));
            }
        }
        s.keys.insert(key.to_owned(), (value.to_owned(), expires));
        Ok(Remembered::New)
    }
    async fn observe_task_version(
        &self,
        task: &TaskArn,
        version: u64,
        _now: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let mut s = self.state.lock().unwrap();
        let newer = s.versions.get(task).is_none_or(|v| version > *v);
        if newer {
            s.versions.insert(task.clone(), version);
        }
        Ok(newer)
    }
    async fn catalogue(&self, snapshots: &[SnapshotRecord]) -> Result<(), LedgerError> {
        let mut s = self.state.lock().unwrap();
        for snap in snapshots {
            s.catalogue.insert(snap.id.clone(), snap.clone());
        }
        Ok(())
    }
    async fn uncatalogue(&self, ids: &[SnapshotId]) -> Result<(), LedgerError> {
        let mut s = self.state.lock().unwrap();
        for id in ids {
            s.catalogue.remove(id);
        }
        Ok(())
    }
    async fn snapshots(&self, claim: Option<&ClaimName>) -> Result<Vec<SnapshotRecord>, LedgerError> {
        let s = self.state.lock().unwrap();
        let mut v: Vec<_> =
            s.catalogue.values().filter(|x| claim.is_none_or(|c| x.claim.as_ref() == Some(c))).cloned().collect();
        v.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        Ok(v)
    }
    async fn purge(&self, now: DateTime<Utc>) -> Result<u64, LedgerError> {
        let mut s = self.state.lock().unwrap();
        let before = s.keys.len();
        s.keys.retain(|_, (_, exp)| *exp > now);
        Ok((before - s.keys.len()) as u64)
    }
}

pub fn definition() -> TaskDefinition {
    TaskDefinition {
        family: "files".into(),
        revision: 1,
        command: vec![],
        env: Default::default(),
        port: 5000,
        health_check: None,
        stop_timeout: Duration::from_secs(30),
        secrets: Default::default(),
        container: None,
    }
}

pub fn service(count: u32) -> ServiceSpec {
    ServiceSpec {
        name: "files".into(),
        desired_count: count,
        definition: definition(),
        revisions: Vec::new(),
        retention: KeepPolicy { last: Some(3), ..Default::default() },
        lease: Duration::from_secs(60),
        adopt: true,
        healthy_reset: crate::backoff::HEALTHY_RESET,
        when_scaled: Default::default(),
    }
}

pub type Ctl = Controller<Arc<FakeRuntime>, Arc<FakeVolumes>, Arc<FakeLedger>>;

/// One shared world; controllers over it are made with [`World::controller`].
pub struct World {
    pub clock: FakeClock,
    pub faults: Arc<Faults>,
    pub runtime: Arc<FakeRuntime>,
    pub volumes: Arc<FakeVolumes>,
    pub ledger: Arc<FakeLedger>,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> Self {
        let clock = FakeClock::new();
        let faults = Arc::new(Faults::default());
        Self {
            runtime: Arc::new(FakeRuntime::new(clock.clone(), faults.clone())),
            volumes: Arc::new(FakeVolumes::new(clock.clone(), faults.clone())),
            ledger: Arc::new(FakeLedger::with_faults(faults.clone())),
            clock,
            faults,
        }
    }

    /// A world as on ECS with EBS: the runtime makes each task's volume,
    /// and snapshots stay pending for `pending` after they are taken.
    pub fn ebs(pending: Duration) -> Self {
        let world = Self::new();
        world.volumes.at_launch.store(true, Ordering::SeqCst);
        *world.volumes.pending_for.lock().unwrap() = Some(pending);
        *world.runtime.launch_store.lock().unwrap() = Some(world.volumes.clone());
        world
    }

    pub fn controller(&self, id: &str, count: u32) -> Ctl {
        Controller::new(
            id,
            self.runtime.clone(),
            self.volumes.clone(),
            self.ledger.clone(),
            vec![service(count)],
            Scope { clusters: vec!["berth".into()], ..Default::default() },
            Box::new(self.clock.clone()),
        )
    }

    pub fn name(s: &str) -> ClaimName {
        ClaimName::parse(s).unwrap()
    }

    pub async fn claim(&self, s: &str) -> ClaimRecord {
        self.ledger.claim(&Self::name(s)).await.unwrap().unwrap()
    }

    /// The event of the last task the controller stopped.
    pub fn tasks_stopped_by_berth(&self) -> TaskStateChange {
        let tasks = self.runtime.tasks.lock().unwrap();
        let t = tasks.iter().filter(|t| t.is_stopped()).max_by_key(|t| t.stopped_at).expect("a stopped task");
        event_of(t)
    }

    pub async fn generations(&self, s: &str) -> Vec<GenerationRecord> {
        self.ledger.generations(&Self::name(s)).await.unwrap()
    }
}

pub fn detail(e: &TaskStateChange) -> &TaskDetail {
    &e.detail
}
