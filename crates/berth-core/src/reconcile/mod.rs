//! The reconciler: from a claim, what is observed of it and a clock reading,
//! the next actions. Pure; the controller carries the actions out.
//!
//! This is a kube-rs style `reconcile`: level-triggered, so it never asks
//! what event woke it, only what the world looks like now. Each pass returns
//! the actions for one step; the controller runs them in order, observes
//! again and calls it once more, until it returns no action. A controller
//! killed between any two actions resumes from the ledger and the observed
//! world, and every step is written so that doing it twice does it once:
//! ledger writes are conditional on the version read (the compare-and-swap
//! of rule 3), snapshots and volumes are found by their (claim, generation)
//! before being made, and launches carry a client token.
//!
//! A handoff walks claimed → snapshotting → snapshotted → launching →
//! launched → done. Steps with a side effect outside the ledger
//! (snapshotting, launching) are taken under a lease, so two controllers
//! never snapshot or launch the same generation at once.

mod handoff;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backoff::CrashLoop;
use crate::claim::{ClaimName, Generation};
use crate::event::StopCode;
use crate::intent::{stop_intent, DesiredState, StopCause, StopIntent};
use crate::ledger::{ClaimRecord, EventRecord, GenerationRecord, Handoff, HandoffStep, StopOrder};
use crate::ports::{VolumeId, VolumeInfo, VolumeSource};
use crate::retention::{self, KeepPolicy};
use crate::snapshot::{SnapshotId, SnapshotKind, SnapshotRecord, SnapshotRequest};
use crate::task::{Health, LaunchRequest, LaunchVolume, TaskArn, TaskDefinition, TaskInfo};

use handoff::{begin_handoff, claimed, launched, launching, short, snapshotted, snapshotting};
pub use handoff::{forgettable, protect};

/// What is observed of one claim.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// The runtime's tasks of this claim, stopped ones included.
    pub tasks: Vec<TaskInfo>,
    /// The store's volumes of this claim.
    pub volumes: Vec<VolumeInfo>,
    /// The store's snapshots of this claim.
    pub snapshots: Vec<SnapshotRecord>,
}

impl World {
    fn task(&self, arn: &TaskArn) -> Option<&TaskInfo> {
        self.tasks.iter().find(|t| &t.arn == arn)
    }

    fn volume(&self, id: &VolumeId) -> Option<&VolumeInfo> {
        self.volumes.iter().find(|v| &v.id == id)
    }

    /// The stop snapshot of the generation a handoff is for: taken of its
    /// very volume. A generation number alone can repeat (a lost ledger
    /// starts again at 1), and taking another incarnation's snapshot as
    /// this one's would launch the replacement without this one's data.
    fn stop_snapshot(&self, h: &Handoff) -> Option<&SnapshotRecord> {
        let volume = h.old_volume.as_ref()?;
        self.snapshots
            .iter()
            .filter(|s| s.generation == Some(h.from) && s.kind == Some(SnapshotKind::OnStop))
            .filter(|s| s.volume.as_ref() == Some(volume))
            .max_by_key(|s| s.time)
    }
}

/// The settings a reconcile pass needs besides the claim.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    /// This controller's identity, for leases.
    pub controller: &'a str,
    pub now: DateTime<Utc>,
    /// The task definition this claim's generations run: its own
    /// revision's (a deployment changes it claim by claim).
    pub definition: &'a TaskDefinition,
    pub retention: &'a KeepPolicy,
    pub lease: Duration,
    /// Whether the same-host adopt path may be used.
    pub adopt: bool,
    /// Whether the runtime makes a task's volume as it starts it (EBS on
    /// Fargate) instead of the store making it first.
    pub volumes_at_launch: bool,
    /// Healthy this long, a generation is good: its crash loop resets and
    /// its stop snapshot becomes the last-known-good one.
    pub healthy_reset: Duration,
}

/// How a generation's history changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mark {
    Launched {
        task: TaskArn,
        volume: VolumeId,
        source: Option<SnapshotId>,
        adopted: bool,
        revision: u32,
        at: DateTime<Utc>,
    },
    Healthy {
        at: DateTime<Utc>,
        rto_ms: Option<u64>,
    },
    Stopped {
        at: DateTime<Utc>,
        code: Option<StopCode>,
        reason: Option<String>,
    },
    StopSnapshot(SnapshotId),
}

impl Mark {
    /// Applies the mark to a generation's record.
    pub fn apply(&self, g: &mut GenerationRecord) {
        match self.clone() {
            Mark::Launched { task, volume, source, adopted, revision, at } => {
                g.task = Some(task);
                g.volume = Some(volume);
                g.source_snapshot = source;
                g.adopted = adopted;
                g.revision = revision;
                g.started_at.get_or_insert(at);
            }
            Mark::Healthy { at, rto_ms } => {
                g.healthy_at.get_or_insert(at);
                if g.rto_ms.is_none() {
                    g.rto_ms = rto_ms;
                }
            }
            Mark::Stopped { at, code, reason } => {
                g.stopped_at.get_or_insert(at);
                g.stop_code = g.stop_code.take().or(code);
                g.stop_reason = g.stop_reason.take().or(reason);
            }
            Mark::StopSnapshot(id) => g.stop_snapshot = Some(id),
        }
    }
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Write the claim record if the stored one still has `record.version`.
    WriteClaim(Box<ClaimRecord>),
    MarkGeneration {
        generation: Generation,
        mark: Mark,
    },
    StopTask {
        task: TaskArn,
        code: StopCode,
        reason: String,
    },
    TakeSnapshot {
        volume: VolumeId,
        request: SnapshotRequest,
    },
    DeleteSnapshots(Vec<SnapshotId>),
    CreateVolume {
        generation: Generation,
        source: VolumeSource,
    },
    RunTask(Box<LaunchRequest>),
    DeleteVolume(VolumeId),
    Log(EventRecord),
    /// Create a claim that must not exist yet (scaling out).
    CreateClaim(Box<ClaimRecord>),
    /// Write a service record if the stored one is as `expect` says
    /// (service plans: a deployment's step, auto scaling).
    WriteService {
        record: Box<crate::deploy::ServiceRecord>,
        expect: crate::ledger::Expect,
    },
}

/// The result of a pass: actions to run now, and when to look again if
/// nothing else wakes the claim.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub requeue_after: Option<Duration>,
}

impl Decision {
    fn act(actions: Vec<Action>) -> Self {
        Self { actions, requeue_after: None }
    }

    fn wait(after: Duration) -> Self {
        Self { actions: Vec::new(), requeue_after: Some(after) }
    }

    fn idle() -> Self {
        Self::default()
    }
}

/// How often a claim waiting on its runtime (a task starting, a stop in
/// progress) is looked at when no event arrives.
pub const POLL: Duration = Duration::from_secs(5);

/// Decides the next step for `claim`.
pub fn reconcile(claim: &ClaimRecord, world: &World, cx: &Context) -> Decision {
    let fence = fence(claim, world);
    if !fence.is_empty() {
        return Decision::act(fence);
    }
    match &claim.handoff {
        None => steady(claim, world, cx),
        Some(h) => match h.step {
            HandoffStep::Claimed => claimed(claim, h, world, cx),
            HandoffStep::Snapshotting => snapshotting(claim, h, world, cx),
            HandoffStep::Snapshotted => snapshotted(claim, h, world, cx),
            HandoffStep::Launching => launching(claim, h, world, cx),
            HandoffStep::Launched => launched(claim, h, world, cx),
            HandoffStep::Done => {
                let mut next = claim.clone();
                next.handoff = None;
                Decision::act(vec![write(next, cx.now)])
            }
        },
    }
}

/// Tasks of this claim that must not run: an older generation's, or a
/// second task of the current one. Stopping them first means no two tasks
/// ever write beside each other for long.
fn fence(claim: &ClaimRecord, world: &World) -> Vec<Action> {
    let current = claim.task.as_ref().or(claim.handoff.as_ref().and_then(|h| h.new_task.as_ref()));
    world
        .tasks
        .iter()
        .filter(|t| !t.is_stopped() && t.desired_status != crate::event::TaskStatus::Stopped)
        .filter(|t| match t.generation {
            Some(g) if g < claim.generation => true,
            Some(g) if g == claim.generation => current.is_some_and(|c| c != &t.arn),
            _ => false,
        })
        .map(|t| fence_stop(claim, t))
        .collect()
}

fn fence_stop(claim: &ClaimRecord, t: &TaskInfo) -> Action {
    Action::StopTask {
        task: t.arn.clone(),
        code: StopCode::ServiceSchedulerInitiated,
        reason: format!(
            "fenced: generation {} of {} is superseded by generation {}",
            t.generation.map_or(0, |g| g.0),
            claim.name,
            claim.generation
        ),
    }
}

fn write(mut next: ClaimRecord, now: DateTime<Utc>) -> Action {
    next.updated_at = now;
    Action::WriteClaim(Box::new(next))
}

fn log(cx: &Context, claim: &ClaimName, kind: &str, message: impl Into<String>) -> Action {
    Action::Log(EventRecord::new(cx.now, Some(claim), kind, message))
}

fn since_ms(from: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<u64> {
    from.and_then(|f| (now - f).num_milliseconds().try_into().ok())
}

/// No handoff in progress: watch the current task, or start one.
fn steady(claim: &ClaimRecord, world: &World, cx: &Context) -> Decision {
    let Some(arn) = &claim.task else {
        if claim.desired != DesiredState::Running {
            return Decision::idle();
        }
        // A new claim, a resumed parked one, or one whose task never
        // started: a handoff with nothing to snapshot.
        let mut next = claim.clone();
        next.handoff = Some(Handoff {
            snapshot: claim.head_snapshot.clone(),
            ..Handoff::begin(
                claim,
                HandoffStep::Snapshotted,
                StopIntent::Replace,
                "claim is desired running and has no task",
                cx.now,
            )
        });
        let what = if claim.head_snapshot.is_some() { "resuming from its head snapshot" } else { "first launch" };
        return Decision::act(vec![write(next, cx.now), log(cx, &claim.name, "launch-requested", what)]);
    };

    match world.task(arn) {
        Some(task) if !task.is_stopped() => watch(claim, task, cx),
        task => begin_handoff(claim, arn, task, cx),
    }
}

/// The current task is alive: stop it if the claim no longer wants it or
/// it fails its health check, note when it becomes healthy, and reset the
/// crash loop once it has stayed healthy.
fn watch(claim: &ClaimRecord, task: &TaskInfo, cx: &Context) -> Decision {
    if let Some(o) = claim.stop_order.as_ref().filter(|o| o.task == task.arn) {
        if task.desired_status == crate::event::TaskStatus::Stopped {
            // Stop under way; the runtime's stop event (or a poll) follows.
            return Decision::wait(POLL);
        }
        // The order was written but the stop did not reach the runtime (a
        // crash or a failed call between the two): send it again.
        return Decision::act(vec![Action::StopTask {
            task: task.arn.clone(),
            code: StopCode::ServiceSchedulerInitiated,
            reason: format!("berth: {}", o.reason),
        }]);
    }
    let order = |intent, cause, reason: &str, code: StopCode, why: &str| {
        let mut next = claim.clone();
        next.stop_order = Some(StopOrder { task: task.arn.clone(), intent, cause, reason: reason.into(), at: cx.now });
        Decision::act(vec![
            write(next, cx.now),
            Action::StopTask { task: task.arn.clone(), code, reason: why.into() },
            log(cx, &claim.name, "task-stop-ordered", format!("{}: {reason}", task.arn.short())),
        ])
    };
    if claim.desired != DesiredState::Running {
        return order(
            StopIntent::Park,
            StopCause::Parked,
            "claim parked (scale-in or service stopped)",
            StopCode::ServiceSchedulerInitiated,
            "Scaling activity initiated by berth",
        );
    }
    if let Some(target) = &claim.restore_to {
        let reason = format!("restore to snapshot {}", short(target));
        return order(
            StopIntent::Replace,
            StopCause::Restore,
            &reason,
            StopCode::ServiceSchedulerInitiated,
            "Point-in-time restore by berth",
        );
    }
    if let Some(running) = task.revision().filter(|r| *r != cx.definition.revision) {
        let reason = format!("deployment: revision {running} → {}", cx.definition.revision);
        return order(
            StopIntent::Replace,
            StopCause::Deployment,
            &reason,
            StopCode::ServiceSchedulerInitiated,
            "Deployment by berth",
        );
    }
    if task.health == Health::Unhealthy {
        return order(
            StopIntent::Replace,
            StopCause::FailedHealthChecks,
            "failed container health checks",
            StopCode::ServiceSchedulerInitiated,
            "Task failed container health checks",
        );
    }
    if task.is_ready() && claim.healthy_since.is_none() {
        let mut next = claim.clone();
        next.healthy_since = Some(cx.now);
        return Decision::act(vec![
            write(next, cx.now),
            Action::MarkGeneration { generation: claim.generation, mark: Mark::Healthy { at: cx.now, rto_ms: None } },
        ]);
    }
    if let Some(since) = claim.healthy_since {
        if claim.backoff != CrashLoop::default() {
            let reset_at = since + chrono::Duration::from_std(cx.healthy_reset).unwrap_or(chrono::Duration::MAX);
            if cx.now >= reset_at {
                let mut next = claim.clone();
                next.backoff = CrashLoop::default();
                return Decision::act(vec![
                    write(next, cx.now),
                    log(
                        cx,
                        &claim.name,
                        "backoff-reset",
                        format!("healthy for {}: crash-loop count reset", span(cx.healthy_reset)),
                    ),
                ]);
            }
            return Decision::wait((reset_at - cx.now).to_std().unwrap_or(POLL));
        }
    }
    if !task.is_ready() {
        return Decision::wait(POLL);
    }
    Decision::idle()
}

/// A duration as people say it: `10 minutes`, `90 s`.
fn span(d: Duration) -> String {
    match d.as_secs() {
        60 => "1 minute".into(),
        s if s >= 60 && s % 60 == 0 => format!("{} minutes", s / 60),
        _ => format!("{:.0} s", d.as_secs_f64()),
    }
}

/// Whether a stop counts against the claim's crash loop: the task's own
/// failure, not a stop the platform or a person made.
fn is_crash(code: Option<&StopCode>, order: Option<&StopOrder>) -> bool {
    if let Some(o) = order {
        return o.cause.is_crash();
    }
    matches!(code, Some(StopCode::EssentialContainerExited | StopCode::TaskFailedToStart))
}

/// Whether a generation healthy since `since` and stopped at `stopped`
/// counts as good: healthy as long as it takes to reset the crash loop.
fn stayed_healthy(since: Option<DateTime<Utc>>, stopped: DateTime<Utc>, reset: Duration) -> bool {
    since.is_some_and(|h| (stopped - h).to_std().is_ok_and(|ran| ran >= reset))
}
