//! The controller: carries out the reconciler's decisions through the
//! ports, and the error policy around them.
//!
//! It holds no rule of its own. For one claim it reads the ledger, observes
//! tasks, volumes and snapshots, asks [`reconcile`] for the next step, runs
//! its actions in order and starts over, until the reconciler has nothing
//! left to do or waits for the world. A lost compare-and-swap is not an
//! error: someone else moved the claim, so it reads again. The same code
//! runs under `berth up` and in the Lambda; only the ports differ.

mod pass;
mod plan;
mod services;
mod snapshots;
mod sweep;

pub use pass::{Due, Inline, PassReport, Reconciled, Shell};
pub use plan::Carried;

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
use crate::service::{scale_plan, ServiceSpec};
use crate::snapshot::SnapshotRecord;
use crate::snapshot_cache::Cached;
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
    /// The volumes port, behind the snapshot cache.
    volumes: Cached<V>,
    pub ledger: L,
    id: String,
    clock: Box<dyn Clock>,
    services: Mutex<Vec<ServiceSpec>>,
    scope: Scope,
    grace: Duration,
    /// Sees each action before it runs: `berth lambda decide` lists the
    /// steps the handler would take. (Faults are injected at the ports,
    /// by [`crate::fault::Faulty`], not here.)
    observer: Option<ActionObserver>,
}

/// Sees each action before it runs.
pub type ActionObserver = Box<dyn Fn(&Action) + Send + Sync>;

/// A short name for an action, for logs and the crash-point tests (whose
/// hook, [`crate::fault::Faulty`], names the port calls alike):
/// `write:<step>` (`write:done` when a handoff ends), `mark`, `stop-task`,
/// `snapshot`, `forget`, `create-volume`, `run-task`, `delete-volume`, `log`,
/// and for service plans `create-claim` and `write-service`.
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
        Action::CreateClaim(_) => "create-claim".into(),
        Action::WriteService { .. } => "write-service".into(),
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
            volumes: Cached::new(volumes),
            ledger,
            id: id.into(),
            clock,
            services: Mutex::new(services),
            scope,
            grace: DEFAULT_GRACE,
            observer: None,
        }
    }

    pub fn with_observer(mut self, observer: ActionObserver) -> Self {
        self.observer = Some(observer);
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

    async fn observe(&self, claim: &ClaimName, tasks: &[TaskInfo]) -> Result<World, ControllerError> {
        let volumes = self.volumes.list().await?.into_iter().filter(|v| &v.claim == claim).collect();
        // A pending snapshot is asked after again: completing is the one
        // change to a snapshot that the cache would otherwise miss.
        if self.volumes.has_pending(claim) {
            self.refresh_snapshots().await?;
        }
        let snapshots = self.volumes.of(claim);
        let tasks = tasks.iter().filter(|t| t.claim.as_ref() == Some(claim)).cloned().collect();
        Ok(World { tasks, volumes, snapshots })
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
                match self.execute(Some(&claim.name), action).await {
                    Ok(()) => {}
                    Err(ControllerError::Ledger(e)) if e.is_conflict() => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Err(ControllerError::NoProgress(name.clone(), MAX_STEPS))
    }

    /// Carries out one action: of a claim's decision, or a step of a
    /// service plan (`claim` is the claim it is about, if any).
    async fn execute(&self, claim: Option<&ClaimName>, action: Action) -> Result<(), ControllerError> {
        if let Some(observer) = &self.observer {
            observer(&action);
        }
        let claim_of = |what: &str| {
            claim.ok_or_else(|| ControllerError::Port(PortError::permanent(format!("{what} names no claim"))))
        };
        match action {
            Action::WriteClaim(next) => {
                self.ledger.put_claim(&next, Expect::Version(next.version)).await?;
            }
            Action::CreateClaim(new) => {
                self.ledger.put_claim(&new, Expect::Absent).await?;
            }
            Action::WriteService { record, expect } => {
                let stored = self.ledger.put_service(&record, expect).await?;
                self.apply_service_record(&stored);
            }
            Action::MarkGeneration { generation, mark } => {
                let claim = claim_of("a generation mark")?;
                let mut record = self
                    .ledger
                    .generation(claim, generation)
                    .await?
                    .unwrap_or_else(|| GenerationRecord::new(claim.clone(), generation));
                mark.apply(&mut record);
                self.ledger.put_generation(&record).await?;
                if let Mark::StopSnapshot(id) = &mark {
                    // Catalogued when it is recorded too: a controller killed
                    // between taking the snapshot and cataloguing it left it
                    // out of the catalogue for good (a CI run beside a busy
                    // core found `claim history` without it).
                    let found = self.snapshots_of(claim).into_iter().find(|s| &s.id == id);
                    if let Some(snapshot) = found {
                        self.ledger.catalogue(std::slice::from_ref(&snapshot)).await?;
                    }
                }
            }
            Action::StopTask { task, code, reason } => {
                self.runtime.stop_task(&task, code, &reason).await?;
            }
            Action::TakeSnapshot { volume, request } => {
                self.take_snapshot(&volume, &request).await?;
            }
            Action::DeleteSnapshots(ids) => {
                self.volumes.delete_snapshots(&ids).await?;
                self.ledger.uncatalogue(&ids).await?;
            }
            Action::CreateVolume { generation, source } => {
                self.volumes.create(claim_of("a volume")?, Some(generation), &source).await?;
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

    /// Reconciles every claim from observed state (rule 2), at once: the
    /// pass's claims part with the [`Inline`] shell. What lost or
    /// reordered events missed, this finds.
    pub async fn resync(&self) -> PassReport {
        self.pass(&Due { claims: true, ..Default::default() }, &Inline(self)).await
    }

    /// Refuses a ledger that is behind the volumes and snapshots (deleted,
    /// emptied, or an older copy): acting on it would start its claims
    /// again from nothing. Run before anything is launched or swept; the
    /// snapshot cache must have been refreshed.
    pub async fn check_continuity(&self) -> Result<(), ControllerError> {
        let claims = self.ledger.claims().await?;
        let volumes = self.volumes.list().await?;
        crate::continuity::check(&claims, &volumes, &self.volumes.all())?;
        Ok(())
    }
}
