//! The controller: carries out the reconciler's decisions through the
//! ports, and the error policy around them.
//!
//! It holds no rule of its own. For one claim it reads the ledger, observes
//! tasks, volumes and snapshots, asks [`reconcile`] for the next step, runs
//! its actions in order and starts over, until the reconciler has nothing
//! left to do or waits for the world. A lost compare-and-swap is not an
//! error: someone else moved the claim, so it reads again. The same code
//! runs under `berth up` and in the Lambda; only the ports differ.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::autoscale::{decide, ScalingDecision, ScalingPolicy, TaskUsage};
use crate::claim::ClaimName;
use crate::deploy::{rollout, ServiceRecord};
use crate::event::TaskStateChange;
use crate::ledger::{ClaimRecord, EventRecord, Expect, GenerationRecord, Ledger, LedgerError, Remembered};
use crate::ports::{PortError, Volumes};
use crate::reconcile::{reconcile, Action, Context, Mark, World};
use crate::scope::Scope;
use crate::service::{scale, ClaimChange, ServiceSpec};
use crate::snapshot::SnapshotRecord;
use crate::sweep::{sweep, Sweep};
use crate::task::{Runtime, TaskArn, TaskDefinition, TaskInfo};

/// Where time comes from (a fake clock in tests).
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A failure while reconciling one claim.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("claim {0} belongs to service {1}, which is not configured")]
    UnknownService(ClaimName, String),
    #[error("claim {0} did not settle after {1} steps; giving up this pass")]
    NoProgress(ClaimName, usize),
    #[error("scaling lost {0} compare-and-swaps in a row to other writers of the claims; try again")]
    ScaleContended(usize),
    #[error(transparent)]
    LedgerBehind(#[from] crate::continuity::LedgerBehind),
}

impl ControllerError {
    /// Whether waiting and trying again can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Ledger(e) => !matches!(e, LedgerError::Corrupt(_)),
            Self::Port(e) => e.retryable,
            Self::UnknownService(..) | Self::LedgerBehind(_) => false,
            Self::NoProgress(..) | Self::ScaleContended(_) => true,
        }
    }
}

/// A reconcile pass cannot take more steps than a full handoff has, plus
/// slack for lost compare-and-swaps; more means a rule is fighting another.
const MAX_STEPS: usize = 64;

/// How long an unreferenced volume or a deleted claim's snapshot is left
/// alone before the sweep removes it.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10 * 60);

/// One controller over one runtime, volume store and ledger.
pub struct Controller<R, V, L> {
    pub runtime: R,
    pub volumes: V,
    pub ledger: L,
    id: String,
    clock: Box<dyn Clock>,
    services: Mutex<Vec<ServiceSpec>>,
    scope: Scope,
    /// Snapshots per claim, refreshed from the store on resync and kept
    /// current by this controller's own snapshots and deletions (listing a
    /// repository on every step would be slow).
    snapshots: Mutex<BTreeMap<ClaimName, Vec<SnapshotRecord>>>,
    grace: Duration,
    /// Called before each action runs: crash-point tests stop the process here.
    before_action: Option<ActionHook>,
}

/// A hook that sees each action before it runs.
pub type ActionHook = Box<dyn Fn(&Action) + Send + Sync>;

/// A short name for an action, for logs and crash-point tests:
/// `write:<step>` (`write:done` when a handoff ends), `mark`, `stop-task`,
/// `snapshot`, `forget`, `create-volume`, `run-task`, `delete-volume`, `log`.
pub fn action_name(action: &Action) -> String {
    match action {
        Action::WriteClaim(c) => match &c.handoff {
            Some(h) => format!("write:{}", h.step.as_str()),
            None => "write:done".into(),
        },
        Action::MarkGeneration { .. } => "mark".into(),
        Action::StopTask { .. } => "stop-task".into(),
        Action::TakeSnapshot { .. } => "snapshot".into(),
        Action::DeleteSnapshots(_) => "forget".into(),
        Action::CreateVolume { .. } => "create-volume".into(),
        Action::RunTask(_) => "run-task".into(),
        Action::DeleteVolume(_) => "delete-volume".into(),
        Action::Log(_) => "log".into(),
    }
}

/// The outcome of handling one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// Out of scope: not berth's task.
    OutOfScope,
    /// Older than (or the same as) a version already seen.
    Stale,
    /// Not a task of any claim.
    Unclaimed,
    /// Reconciled this claim.
    Reconciled(ClaimName, Option<Duration>),
}

impl<R: Runtime, V: Volumes, L: Ledger> Controller<R, V, L> {
    pub fn new(
        id: impl Into<String>,
        runtime: R,
        volumes: V,
        ledger: L,
        services: Vec<ServiceSpec>,
        scope: Scope,
        clock: Box<dyn Clock>,
    ) -> Self {
        Self {
            runtime,
            volumes,
            ledger,
            id: id.into(),
            clock,
            services: Mutex::new(services),
            scope,
            snapshots: Mutex::new(BTreeMap::new()),
            grace: DEFAULT_GRACE,
            before_action: None,
        }
    }

    pub fn with_hook(mut self, hook: ActionHook) -> Self {
        self.before_action = Some(hook);
        self
    }

    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn services(&self) -> Vec<ServiceSpec> {
        self.services.lock().expect("services lock").clone()
    }

    /// Replaces a service's spec (a new desired count or task definition).
    pub fn set_service(&self, spec: ServiceSpec) {
        let mut services = self.services.lock().expect("services lock");
        match services.iter_mut().find(|s| s.name == spec.name) {
            Some(s) => *s = spec,
            None => services.push(spec),
        }
    }

    /// Gives the service of a record its active and other revisions (a
    /// deployment's, as the ledger holds them); a service not configured
    /// here is left alone.
    pub fn apply_service_record(&self, record: &ServiceRecord) {
        let Some(mut spec) = self.services().into_iter().find(|s| s.name == record.name) else { return };
        let Some(active) = record.active_definition() else { return };
        spec.definition = active.clone();
        spec.revisions = record.revisions.clone();
        if let Some(count) = record.autoscaled_count {
            spec.desired_count = count;
        }
        self.set_service(spec);
    }

    /// Where the runtime registers revisions itself (ECS), brings the
    /// service's record in line with `configured`, the revision the stack
    /// hands over ([`ServiceRecord::follow`]): the first record keeps its
    /// number, a new revision starts a deployment, and the record (read
    /// once here) gives the controller the service's revisions. Returns
    /// the revision a deployment started to. A lost compare-and-swap or a
    /// deployment still under way leaves it to the next look.
    pub async fn follow_registered(
        &self,
        service: &str,
        configured: &TaskDefinition,
        timeout: Duration,
    ) -> Result<Option<u32>, ControllerError> {
        let (mut record, expect) = ServiceRecord::or_first(self.ledger.service(service).await?, service, configured);
        let before = record.clone();
        let started = match record.follow(configured.clone(), timeout, self.now()) {
            Ok(started) => started,
            Err(e) => {
                tracing::info!(service, error = %e, "a new revision waits for the deployment under way");
                self.apply_service_record(&record);
                return Ok(None);
            }
        };
        if expect != Expect::Absent && record == before {
            // Nothing new: no write.
            self.apply_service_record(&record);
            return Ok(None);
        }
        match self.ledger.put_service(&record, expect).await {
            Ok(stored) => self.apply_service_record(&stored),
            Err(e) if e.is_conflict() => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        if let Some(to) = started {
            let message = format!("{service}: revision {to} registered; deploying it one claim at a time");
            let mut event = EventRecord::new(self.now(), None, "deploy-started", message);
            event.data = serde_json::json!({ "service": service, "to": to });
            self.log(event).await;
        }
        Ok(started)
    }

    /// One target-tracking decision for a service whose desired count and
    /// cooldowns live in its service record (the Lambda, where nothing
    /// stays in memory between decisions): [`crate::autoscale::decide`] on
    /// `usage` from the record's count (the configured one before the
    /// first decision), the new count and activity written back with a
    /// compare-and-swap, then taken by the service's spec, so the next
    /// [`Self::scale_services`] creates, resumes or parks claims to match.
    /// `None` when the service is not configured, or when another
    /// controller wrote the record meanwhile (it decided on the same
    /// readings; the next look decides again).
    pub async fn autoscale(
        &self,
        service: &str,
        policy: &ScalingPolicy,
        usage: &[TaskUsage],
    ) -> Result<Option<ScalingDecision>, ControllerError> {
        let Some(spec) = self.services().into_iter().find(|s| s.name == service) else { return Ok(None) };
        let (mut record, expect) =
            ServiceRecord::or_first(self.ledger.service(service).await?, service, &spec.definition);
        let current = record.autoscaled_count.unwrap_or(spec.desired_count);
        let now = self.now();
        let decision = decide(policy, current, usage, &record.scaling, now);
        if decision.desired == current {
            return Ok(Some(decision));
        }
        record.autoscaled_count = Some(decision.desired);
        record.scaling = record.scaling.record(current, decision.desired, now);
        match self.ledger.put_service(&record, expect).await {
            Ok(stored) => self.apply_service_record(&stored),
            Err(e) if e.is_conflict() => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut event = EventRecord::new(now, None, "autoscale", format!("{service}: {}", decision.reason));
        event.data =
            serde_json::json!({ "service": service, "from": current, "to": decision.desired, "readings": usage });
        self.log(event).await;
        Ok(Some(decision))
    }

    /// Takes one step of a service's deployment, if one is under way (see
    /// [`crate::deploy::rollout`]): writes the service record, then the
    /// claims it moves, and returns those claims, which the caller
    /// reconciles next. A lost compare-and-swap is no error: the next look
    /// plans again.
    pub async fn step_rollout(&self, service: &str) -> Result<Vec<ClaimName>, ControllerError> {
        let Some(record) = self.ledger.service(service).await? else { return Ok(Vec::new()) };
        if !record.in_progress() {
            return Ok(Vec::new());
        }
        let claims = self.ledger.claims().await?;
        let plan = rollout(&record, &claims, self.now());
        // The record first: a crash before the claims are written leaves a
        // step the next look finds and writes again.
        if let Some(next) = &plan.service {
            match self.ledger.put_service(next, Expect::Version(record.version)).await {
                Ok(stored) => self.apply_service_record(&stored),
                Err(e) if e.is_conflict() => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            }
        }
        let mut moved = Vec::new();
        for claim in &plan.claims {
            match self.ledger.put_claim(claim, Expect::Version(claim.version)).await {
                Ok(_) => moved.push(claim.name.clone()),
                // Moved by its reconciler meanwhile: the next look plans again.
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
        for event in plan.events {
            self.log(event).await;
        }
        Ok(moved)
    }

    fn service(&self, claim: &ClaimRecord) -> Result<ServiceSpec, ControllerError> {
        let services = self.services.lock().expect("services lock");
        services
            .iter()
            .find(|s| s.name == claim.service)
            .cloned()
            .ok_or_else(|| ControllerError::UnknownService(claim.name.clone(), claim.service.clone()))
    }

    /// Appends to the event log; a failure here is logged, not fatal.
    pub async fn log(&self, event: EventRecord) {
        if let Err(e) = self.ledger.append_event(&event).await {
            tracing::warn!(error = %e, kind = %event.kind, "could not append to the event log");
        }
    }

    /// The snapshots of one claim as this controller knows them.
    pub fn snapshots_of(&self, claim: &ClaimName) -> Vec<SnapshotRecord> {
        self.snapshots.lock().expect("snapshot cache lock").get(claim).cloned().unwrap_or_default()
    }

    /// Takes a snapshot outside a handoff (a scheduled backup of a running
    /// claim's volume) and catalogues it as a handoff's own would be.
    pub async fn take_snapshot(
        &self,
        volume: &crate::ports::VolumeId,
        request: &crate::snapshot::SnapshotRequest,
    ) -> Result<SnapshotRecord, ControllerError> {
        let record = self.volumes.snapshot(volume, request).await?;
        self.snapshots
            .lock()
            .expect("snapshot cache lock")
            .entry(request.claim.clone())
            .or_default()
            .push(record.clone());
        if let Err(e) = self.ledger.catalogue(std::slice::from_ref(&record)).await {
            tracing::warn!(error = %e, snapshot = %record.id, "could not catalogue a snapshot; the next resync does");
        }
        Ok(record)
    }

    /// The volume of a claim that is due a scheduled snapshot now: a claim
    /// running its own task, with no handoff open, whose newest snapshot of
    /// any kind is older than the schedule allows. The caller quiesces the
    /// task, calls [`Controller::back_up`], and resumes it.
    pub async fn due_backup(
        &self,
        name: &ClaimName,
        schedule: &crate::backup::Schedule,
    ) -> Result<Option<crate::ports::VolumeId>, ControllerError> {
        let Some(claim) = self.ledger.claim(name).await? else { return Ok(None) };
        if claim.handoff.is_some() || claim.desired != crate::intent::DesiredState::Running {
            return Ok(None);
        }
        let Some(task) = claim.task.as_ref() else { return Ok(None) };
        let tasks = self.runtime.tasks().await?;
        let running = tasks.iter().any(|t| {
            &t.arn == task
                && t.last_status == crate::event::TaskStatus::Running
                && t.desired_status == crate::event::TaskStatus::Running
        });
        if !running || !crate::backup::due(schedule, &self.snapshots_of(name), self.now()) {
            return Ok(None);
        }
        Ok(claim.volume.clone())
    }

    /// Takes a scheduled snapshot of a running claim's volume: backup
    /// retention first (cleanup before create, so a full store is relieved
    /// before it is written to), then the snapshot with the policy's lock
    /// and the consistency the caller's quiesce hook achieved.
    pub async fn back_up(
        &self,
        name: &ClaimName,
        volume: &crate::ports::VolumeId,
        policy: &crate::backup::Policy,
        consistency: crate::snapshot::Consistency,
    ) -> Result<SnapshotRecord, ControllerError> {
        let claim = self.ledger.claim(name).await?;
        let now = self.now();
        let doomed =
            crate::backup::forgettable_scheduled(claim.as_ref(), &self.snapshots_of(name), &policy.retention, now);
        if !doomed.is_empty() {
            self.forget_snapshots(name, &doomed).await?;
            let message = format!("forgot {} scheduled snapshot(s) by backup retention", doomed.len());
            self.log(EventRecord::new(now, Some(name), "retention", message)).await;
        }
        let generation = claim.map(|c| c.generation);
        let request = crate::snapshot::SnapshotRequest {
            lock: policy.lock.map(|l| l.lock_from(now)),
            consistency: Some(consistency),
            ..crate::snapshot::SnapshotRequest::new(name.clone(), generation, crate::snapshot::SnapshotKind::Scheduled)
        };
        self.take_snapshot(volume, &request).await
    }

    /// Deletes snapshots of one claim outside a handoff (backup retention).
    pub async fn forget_snapshots(
        &self,
        claim: &ClaimName,
        ids: &[crate::snapshot::SnapshotId],
    ) -> Result<(), ControllerError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.volumes.delete_snapshots(ids).await?;
        self.ledger.uncatalogue(ids).await?;
        if let Some(list) = self.snapshots.lock().expect("snapshot cache lock").get_mut(claim) {
            list.retain(|s| !ids.contains(&s.id));
        }
        Ok(())
    }

    /// Reads every snapshot from the store into the cache.
    pub async fn refresh_snapshots(&self) -> Result<(), ControllerError> {
        let all = self.volumes.snapshots().await?;
        let mut by_claim: BTreeMap<ClaimName, Vec<SnapshotRecord>> = BTreeMap::new();
        for s in all {
            if let Some(c) = s.claim.clone() {
                by_claim.entry(c).or_default().push(s);
            }
        }
        *self.snapshots.lock().expect("snapshot cache lock") = by_claim;
        Ok(())
    }

    async fn observe(&self, claim: &ClaimName, tasks: &[TaskInfo]) -> Result<World, ControllerError> {
        let volumes = self.volumes.list().await?.into_iter().filter(|v| &v.claim == claim).collect();
        let cached = |c: &ClaimName| self.snapshots.lock().expect("snapshot cache lock").get(c).cloned();
        // A pending snapshot is asked after again: completing is the one
        // change to a snapshot that the cache would otherwise miss.
        if cached(claim).is_some_and(|list| list.iter().any(|s| s.pending)) {
            self.refresh_snapshots().await?;
        }
        let snapshots = cached(claim).unwrap_or_default();
        let tasks = tasks.iter().filter(|t| t.claim.as_ref() == Some(claim)).cloned().collect();
        Ok(World { tasks, volumes, snapshots })
    }

    /// Brings each service's claims in line with its desired count. Called
    /// at start and when a count changes, not on every resync: a claim a
    /// user parked by stopping its task stays parked until then. So a change
    /// that loses its compare-and-swap (a handoff wrote the claim meanwhile)
    /// is decided again at once from what the ledger now holds: no later
    /// pass would make it, and the service would run above or below its count.
    pub async fn scale_services(&self) -> Result<(), ControllerError> {
        for _ in 0..MAX_STEPS {
            if !self.scale_pass().await? {
                return Ok(());
            }
        }
        Err(ControllerError::ScaleContended(MAX_STEPS))
    }

    /// One pass of [`Self::scale_services`]; returns whether a change lost
    /// its compare-and-swap.
    async fn scale_pass(&self) -> Result<bool, ControllerError> {
        let claims = self.ledger.claims().await?;
        let mut lost = false;
        for service in self.services() {
            let now = self.now();
            let changes = scale(&service, &claims, now).map_err(|e| PortError::permanent(e.to_string()))?;
            for change in changes {
                let (record, expect, what) = match change {
                    ClaimChange::Create(c) => (c, Expect::Absent, "created"),
                    ClaimChange::Update(c) => {
                        let what = match c.desired {
                            crate::intent::DesiredState::Running => "resumed",
                            crate::intent::DesiredState::Parked => "parked",
                            crate::intent::DesiredState::Deleted => "deleted",
                        };
                        let v = c.version;
                        (c, Expect::Version(v), what)
                    }
                };
                match self.ledger.put_claim(&record, expect).await {
                    Ok(_) => {
                        let message =
                            format!("claim {what} (service {} wants {})", service.name, service.desired_count);
                        self.log(EventRecord::new(now, Some(&record.name), "claim-scaled", message)).await;
                    }
                    Err(e) if e.is_conflict() => lost = true,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(lost)
    }

    /// Reconciles one claim until it settles; returns when to look again.
    pub async fn reconcile_claim(&self, name: &ClaimName) -> Result<Option<Duration>, ControllerError> {
        for _ in 0..MAX_STEPS {
            let Some(claim) = self.ledger.claim(name).await? else { return Ok(None) };
            let service = self.service(&claim)?;
            let tasks = self.runtime.tasks().await?;
            let world = self.observe(name, &tasks).await?;
            let cx = Context {
                controller: &self.id,
                now: self.now(),
                definition: service.definition_for(claim.revision),
                retention: &service.retention,
                lease: service.lease,
                adopt: service.adopt,
                volumes_at_launch: self.volumes.made_at_launch(),
                healthy_reset: service.healthy_reset,
            };
            let decision = reconcile(&claim, &world, &cx);
            if decision.actions.is_empty() {
                return Ok(decision.requeue_after);
            }
            // Generation marks go first: they only fill empty fields, so a
            // mark written by a pass that then loses its compare-and-swap is
            // harmless, and a crash after the claim write loses no history.
            let (marks, rest): (Vec<Action>, Vec<Action>) =
                decision.actions.into_iter().partition(|a| matches!(a, Action::MarkGeneration { .. }));
            for action in marks.into_iter().chain(rest) {
                match self.execute(&claim, action).await {
                    Ok(()) => {}
                    Err(ControllerError::Ledger(e)) if e.is_conflict() => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Err(ControllerError::NoProgress(name.clone(), MAX_STEPS))
    }

    async fn execute(&self, claim: &ClaimRecord, action: Action) -> Result<(), ControllerError> {
        if let Some(hook) = &self.before_action {
            hook(&action);
        }
        match action {
            Action::WriteClaim(next) => {
                self.ledger.put_claim(&next, Expect::Version(next.version)).await?;
            }
            Action::MarkGeneration { generation, mark } => {
                let mut record = self
                    .ledger
                    .generation(&claim.name, generation)
                    .await?
                    .unwrap_or_else(|| GenerationRecord::new(claim.name.clone(), generation));
                mark.apply(&mut record);
                self.ledger.put_generation(&record).await?;
                if let Mark::StopSnapshot(id) = &mark {
                    // Catalogued when it is recorded too: a controller killed
                    // between taking the snapshot and cataloguing it left it
                    // out of the catalogue for good (a CI run beside a busy
                    // core found `claim history` without it).
                    let found = self.snapshots_of(&claim.name).into_iter().find(|s| &s.id == id);
                    if let Some(snapshot) = found {
                        self.ledger.catalogue(std::slice::from_ref(&snapshot)).await?;
                    }
                }
            }
            Action::StopTask { task, code, reason } => {
                self.runtime.stop_task(&task, code, &reason).await?;
            }
            Action::TakeSnapshot { volume, request } => {
                let record = self.volumes.snapshot(&volume, &request).await?;
                // The cache first: it is what the next pass finds the snapshot
                // by; a failed catalogue write must not cause a second snapshot.
                self.snapshots
                    .lock()
                    .expect("snapshot cache lock")
                    .entry(claim.name.clone())
                    .or_default()
                    .push(record.clone());
                if let Err(e) = self.ledger.catalogue(std::slice::from_ref(&record)).await {
                    tracing::warn!(error = %e, snapshot = %record.id, "could not catalogue a snapshot; recording it does");
                }
            }
            Action::DeleteSnapshots(ids) => {
                self.volumes.delete_snapshots(&ids).await?;
                self.ledger.uncatalogue(&ids).await?;
                if let Some(list) = self.snapshots.lock().expect("snapshot cache lock").get_mut(&claim.name) {
                    list.retain(|s| !ids.contains(&s.id));
                }
            }
            Action::CreateVolume { generation, source } => {
                self.volumes.create(&claim.name, Some(generation), &source).await?;
            }
            Action::RunTask(request) => {
                self.runtime.run_task(&request).await?;
            }
            Action::DeleteVolume(volume) => {
                self.volumes.delete(&volume).await?;
            }
            Action::Log(event) => self.log(event).await,
        }
        Ok(())
    }

    /// Which claim an event's task belongs to: the runtime's word first,
    /// then the ledger's (a task the runtime forgot).
    async fn claim_of(&self, task: &TaskArn) -> Result<Option<ClaimName>, ControllerError> {
        if let Some(t) = self.runtime.tasks().await?.into_iter().find(|t| &t.arn == task) {
            if t.claim.is_some() {
                return Ok(t.claim);
            }
        }
        let claims = self.ledger.claims().await?;
        Ok(claims.into_iter().find(|c| c.owns_task(task)).map(|c| c.name))
    }

    /// Which claim a task state change wakes, if any: out-of-scope, stale
    /// (by `detail.version`) and unclaimed events wake none.
    pub async fn route(&self, event: &TaskStateChange) -> Result<Result<ClaimName, EventOutcome>, ControllerError> {
        let detail = &event.detail;
        if !self.scope.admits(detail) {
            return Ok(Err(EventOutcome::OutOfScope));
        }
        let arn = TaskArn(detail.task_arn.clone());
        // EventBridge delivers at least once: a redelivered event (same id)
        // is dropped by an idempotency record, as the blog's DynamoDB table does.
        if let Some(id) = &event.id {
            let now = self.now();
            let key = format!("event/{id}");
            let expires = now + chrono::Duration::hours(24);
            if let Remembered::Seen(_) = self.ledger.remember(&key, &detail.task_arn, now, expires).await? {
                return Ok(Err(EventOutcome::Stale));
            }
        }
        if let Some(version) = detail.version {
            if !self.ledger.observe_task_version(&arn, version, self.now()).await? {
                return Ok(Err(EventOutcome::Stale));
            }
        }
        Ok(self.claim_of(&arn).await?.ok_or(EventOutcome::Unclaimed))
    }

    /// Handles one task state change: finds its claim and reconciles it.
    pub async fn on_event(&self, event: &TaskStateChange) -> Result<EventOutcome, ControllerError> {
        let claim = match self.route(event).await? {
            Ok(claim) => claim,
            Err(outcome) => return Ok(outcome),
        };
        let requeue = self.reconcile_claim(&claim).await?;
        Ok(EventOutcome::Reconciled(claim, requeue))
    }

    /// Reconciles every claim from observed state (rule 2): what lost or
    /// reordered events missed, this finds. Returns the soonest requeue and
    /// the claims that failed.
    pub async fn resync(&self) -> Result<(Option<Duration>, Vec<(ClaimName, ControllerError)>), ControllerError> {
        self.refresh_snapshots().await?;
        let mut soonest: Option<Duration> = None;
        let mut failed = Vec::new();
        for claim in self.ledger.claims().await? {
            match self.reconcile_claim(&claim.name).await {
                Ok(Some(d)) => soonest = Some(soonest.map_or(d, |s| s.min(d))),
                Ok(None) => {}
                Err(e) => failed.push((claim.name, e)),
            }
        }
        Ok((soonest, failed))
    }

    /// Refuses a ledger that is behind the volumes and snapshots (deleted,
    /// emptied, or an older copy): acting on it would start its claims
    /// again from nothing. Run before anything is launched or swept; the
    /// snapshot cache must have been refreshed.
    pub async fn check_continuity(&self) -> Result<(), ControllerError> {
        let claims = self.ledger.claims().await?;
        let volumes = self.volumes.list().await?;
        let snapshots: Vec<SnapshotRecord> =
            self.snapshots.lock().expect("snapshot cache lock").values().flatten().cloned().collect();
        crate::continuity::check(&claims, &volumes, &snapshots)?;
        Ok(())
    }

    /// Removes volumes the ledger saw die and snapshots of deleted claims,
    /// older than the grace period (see [`sweep`]); returns how many went.
    /// Removes nothing while the ledger is behind the stores: what it does
    /// not know it cannot judge.
    pub async fn sweep(&self) -> Result<(usize, usize), ControllerError> {
        let plan = self.sweep_plan().await?;
        self.carry_out_sweep(&plan).await
    }

    /// What the sweep would delete now, and why ([`sweep`]); nothing is
    /// deleted. Refused while the ledger is behind the stores.
    pub async fn sweep_plan(&self) -> Result<Sweep, ControllerError> {
        let claims = self.ledger.claims().await?;
        let volumes = self.volumes.list().await?;
        let snapshots: Vec<SnapshotRecord> =
            self.snapshots.lock().expect("snapshot cache lock").values().flatten().cloned().collect();
        crate::continuity::check(&claims, &volumes, &snapshots)?;
        Ok(sweep(&claims, &volumes, &snapshots, self.now(), self.grace))
    }

    /// Deletes exactly what `found` plans; returns how many volumes and
    /// snapshots went.
    pub async fn carry_out_sweep(&self, found: &Sweep) -> Result<(usize, usize), ControllerError> {
        for (v, verdict) in found.verdicts.iter().filter(|(_, verdict)| verdict.deletes()) {
            self.volumes.delete(v).await?;
            let message = format!("deleted orphaned volume {v}: {}", verdict.reason());
            self.log(EventRecord::new(self.now(), None, "sweep", message)).await;
        }
        if !found.snapshots.is_empty() {
            self.volumes.delete_snapshots(&found.snapshots).await?;
            self.ledger.uncatalogue(&found.snapshots).await?;
            let mut cache = self.snapshots.lock().expect("snapshot cache lock");
            for list in cache.values_mut() {
                list.retain(|s| !found.snapshots.contains(&s.id));
            }
        }
        Ok((found.volumes().len(), found.snapshots.len()))
    }
}
