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

/// The current task has stopped (or the runtime lost it): claim the handoff.
fn begin_handoff(claim: &ClaimRecord, arn: &TaskArn, task: Option<&TaskInfo>, cx: &Context) -> Decision {
    let order = claim.stop_order.as_ref().filter(|o| &o.task == arn);
    let code = task.and_then(|t| t.stop_code.clone());
    let stop_reason = match task {
        Some(t) => t.stopped_reason.clone(),
        None => Some("task is gone from the runtime (its host or the controller restarted)".into()),
    };
    let stopped_at = task.and_then(|t| t.stopped_at).unwrap_or(cx.now);
    // berth's own order decides only while it agrees with the desired
    // state: a park ordered for a scale-in that was undone before the task
    // stopped is stale, and a parked claim is never replaced.
    let (intent, intent_reason) = match order {
        Some(o) if claim.desired == DesiredState::Running && o.intent == StopIntent::Replace => {
            (o.intent, format!("stopped by berth: {}", o.reason))
        }
        _ => {
            let v = stop_intent(claim.desired, code.as_ref());
            (v.intent, v.reason.to_owned())
        }
    };
    let backoff = if is_crash(code.as_ref(), order) {
        claim.backoff.after_stop_with(claim.healthy_since, stopped_at, cx.healthy_reset)
    } else {
        CrashLoop { failures: claim.backoff.failures, not_before: None }
    };
    let mut next = claim.clone();
    next.backoff = backoff;
    next.healthy_since = None;
    next.stop_order = None;
    next.handoff = Some(Handoff {
        stopped_task: Some(arn.clone()),
        stop_code: code.clone(),
        stop_reason: stop_reason.clone(),
        stopped_at: Some(stopped_at),
        was_healthy: stayed_healthy(claim.healthy_since, stopped_at, cx.healthy_reset),
        intent_from_desired: claim.desired != DesiredState::Running,
        ..Handoff::begin(claim, HandoffStep::Claimed, intent, &intent_reason, cx.now)
    });
    let code_str = code.as_ref().map_or("none", |c| c.as_str()).to_owned();
    let mut event = EventRecord::new(
        cx.now,
        Some(&claim.name),
        "handoff-claimed",
        format!(
            "generation {} stopped ({code_str}: {}); {intent_reason}",
            claim.generation,
            stop_reason.as_deref().unwrap_or("no reason given")
        ),
    );
    event.data = serde_json::json!({
        "generation": claim.generation.0,
        "task": arn.0,
        "stop_code": code_str,
        "intent": intent,
        "crash_loop_failures": backoff.failures,
    });
    Decision::act(vec![
        write(next, cx.now),
        Action::MarkGeneration {
            generation: claim.generation,
            mark: Mark::Stopped { at: stopped_at, code, reason: stop_reason },
        },
        Action::Log(event),
    ])
}

fn lease_until(cx: &Context) -> DateTime<Utc> {
    cx.now + chrono::Duration::from_std(cx.lease).unwrap_or(chrono::Duration::MAX)
}

/// Who may do the side effect of the current step: `Ok(())` if this
/// controller holds a live lease, or the decision to take or wait for it.
fn hold_lease(claim: &ClaimRecord, h: &Handoff, cx: &Context) -> Result<(), Decision> {
    let mine = h.owner.as_deref() == Some(cx.controller);
    let live = h.lease_until.is_some_and(|t| t > cx.now);
    if mine && live {
        return Ok(());
    }
    if !mine && live && h.owner.is_some() {
        let left = (h.lease_until.unwrap_or(cx.now) - cx.now).to_std().unwrap_or(POLL);
        return Err(Decision::wait(left));
    }
    let mut next = claim.clone();
    let handoff = next.handoff.as_mut().expect("hold_lease is called during a handoff");
    let taken_over = handoff.owner.as_deref().is_some_and(|o| o != cx.controller);
    handoff.owner = Some(cx.controller.to_owned());
    handoff.lease_until = Some(lease_until(cx));
    let mut actions = vec![write(next, cx.now)];
    if taken_over {
        actions.push(log(
            cx,
            &claim.name,
            "lease-taken-over",
            format!("the lease of {} on step {} expired", h.owner.as_deref().unwrap_or("?"), h.step.as_str()),
        ));
    }
    Err(Decision::act(actions))
}

fn with_step(claim: &ClaimRecord, step: HandoffStep, edit: impl FnOnce(&mut ClaimRecord)) -> ClaimRecord {
    let mut next = claim.clone();
    if let Some(h) = next.handoff.as_mut() {
        h.step = step;
    }
    edit(&mut next);
    next
}

/// Claimed: take the lease to snapshot, or skip the snapshot if there is
/// no volume to take it of.
fn claimed(claim: &ClaimRecord, h: &Handoff, world: &World, cx: &Context) -> Decision {
    let volume_there = h.old_volume.as_ref().is_some_and(|v| world.volume(v).is_some());
    if !volume_there && world.stop_snapshot(h).is_none() {
        let next = with_step(claim, HandoffStep::Snapshotted, |c| {
            let handoff = c.handoff.as_mut().expect("in a handoff");
            handoff.snapshot = claim.head_snapshot.clone();
        });
        let message = match &h.old_volume {
            Some(v) => format!("volume {v} of generation {} is gone: continuing from the head snapshot", h.from),
            None => format!("generation {} had no volume: continuing from the head snapshot", h.from),
        };
        return Decision::act(vec![write(next, cx.now), log(cx, &claim.name, "volume-missing", message)]);
    }
    let next = with_step(claim, HandoffStep::Snapshotting, |c| {
        let handoff = c.handoff.as_mut().expect("in a handoff");
        handoff.owner = Some(cx.controller.to_owned());
        handoff.lease_until = Some(lease_until(cx));
    });
    Decision::act(vec![write(next, cx.now)])
}

/// The snapshots of this claim that retention forgets now: the head and the
/// last-known-good snapshot are pinned whatever their tags say. Scheduled
/// snapshots are left to the backup policy's own retention
/// ([`crate::backup::forgettable_scheduled`]): a service keeping ten stop
/// snapshots must not wipe a month of hourly backups at its next stop.
pub fn forgettable(
    claim: &ClaimRecord,
    snapshots: &[SnapshotRecord],
    policy: &KeepPolicy,
    now: DateTime<Utc>,
) -> Vec<SnapshotId> {
    if policy.is_empty() {
        return Vec::new();
    }
    let marked = protect(Some(claim), snapshots.iter().filter(|s| s.kind != Some(SnapshotKind::Scheduled)));
    retention::forgotten(&marked, policy, now)
}

/// The snapshots with the claim's head and last-known-good snapshots
/// marked pinned, whatever their tags say: retention never takes them.
pub fn protect<'a>(
    claim: Option<&ClaimRecord>,
    snapshots: impl Iterator<Item = &'a SnapshotRecord>,
) -> Vec<SnapshotRecord> {
    let protected: Vec<&SnapshotId> =
        claim.iter().flat_map(|c| c.head_snapshot.iter().chain(c.last_good_snapshot.iter())).collect();
    snapshots
        .map(|s| {
            let mut s = s.clone();
            s.pinned |= protected.contains(&&s.id);
            s
        })
        .collect()
}

/// Snapshotting: record the stop snapshot if it exists, else (holding the
/// lease) clean up by retention and take it.
fn snapshotting(claim: &ClaimRecord, h: &Handoff, world: &World, cx: &Context) -> Decision {
    if let Some(snap) = world.stop_snapshot(h) {
        if snap.pending {
            // Nothing to do but wait, so no lease is needed: whoever looks
            // next finds the same snapshot, completed or not.
            return Decision::wait(pending_wait(snap, cx.now));
        }
        let id = snap.id.clone();
        let next = with_step(claim, HandoffStep::Snapshotted, |c| {
            let handoff = c.handoff.as_mut().expect("in a handoff");
            handoff.snapshot = Some(claim.restore_to.clone().unwrap_or_else(|| id.clone()));
            handoff.owner = None;
            handoff.lease_until = None;
            c.head_snapshot = Some(claim.restore_to.clone().unwrap_or_else(|| id.clone()));
            if h.was_healthy {
                c.last_good_snapshot = Some(id.clone());
            }
        });
        return Decision::act(vec![
            write(next, cx.now),
            Action::MarkGeneration { generation: h.from, mark: Mark::StopSnapshot(id.clone()) },
            log(cx, &claim.name, "snapshot-recorded", format!("stop snapshot {id} of generation {}", h.from)),
        ]);
    }
    if let Err(d) = hold_lease(claim, h, cx) {
        return d;
    }
    let Some(volume) = h.old_volume.clone().filter(|v| world.volume(v).is_some()) else {
        // The volume vanished while the step was under way.
        return claimed(claim, h, world, cx);
    };
    let mut actions = Vec::new();
    let forget = forgettable(claim, &world.snapshots, cx.retention, cx.now)
        .into_iter()
        .filter(|id| Some(id) != claim.restore_to.as_ref() && Some(id) != h.snapshot.as_ref())
        .collect::<Vec<_>>();
    if !forget.is_empty() {
        actions.push(log(
            cx,
            &claim.name,
            "retention",
            format!("forgetting {} snapshot(s) by retention", forget.len()),
        ));
        actions.push(Action::DeleteSnapshots(forget));
    }
    actions.push(Action::TakeSnapshot {
        volume,
        request: SnapshotRequest::new(claim.name.clone(), Some(h.from), SnapshotKind::OnStop),
    });
    Decision::act(actions)
}

/// How long to wait for a pending snapshot: a quarter of its age so far,
/// between 2 s and a minute (an EBS snapshot of a large volume can take an
/// hour, a small one seconds).
fn pending_wait(snap: &SnapshotRecord, now: DateTime<Utc>) -> Duration {
    let age = (now - snap.time).to_std().unwrap_or_default();
    (age / 4).clamp(Duration::from_secs(2), Duration::from_secs(60))
}

/// Snapshotted: park, wait out the crash-loop backoff, or advance the
/// generation (the compare-and-swap that fences the old one).
fn snapshotted(claim: &ClaimRecord, h: &Handoff, _world: &World, cx: &Context) -> Decision {
    // A park that came from the desired state (scale-in, down) follows it if
    // it changed back to Running meanwhile; a user's stop parks regardless.
    let park = claim.desired != DesiredState::Running || (h.intent == StopIntent::Park && !h.intent_from_desired);
    if park {
        let mut next = claim.clone();
        next.handoff = None;
        next.task = None;
        // The volume stays with the parked claim: resuming adopts it if
        // it is unchanged since the snapshot. A deleted claim lets it go
        // (the sweep removes it, and its snapshots, after the grace period).
        next.volume = if claim.desired == DesiredState::Deleted { None } else { h.old_volume.clone() };
        if next.desired == DesiredState::Running {
            next.desired = DesiredState::Parked;
        }
        let message = format!("parked at generation {} with snapshot {}", claim.generation, show(&h.snapshot));
        return Decision::act(vec![write(next, cx.now), log(cx, &claim.name, "parked", message)]);
    }
    if !claim.backoff.may_launch(cx.now) {
        let until = claim.backoff.not_before.unwrap_or(cx.now);
        return Decision::wait((until - cx.now).to_std().unwrap_or(Duration::from_millis(100)));
    }
    let generation = Generation(claim.generation.0 + 1);
    let next = with_step(claim, HandoffStep::Launching, |c| {
        c.generation = generation;
        c.task = None;
        // The claim's own revision as the controller resolved it (the
        // active one if its own is no longer registered): a deployment
        // moves a claim's revision (see `crate::deploy`), a handoff does not.
        c.revision = cx.definition.revision;
        if let Some(target) = c.restore_to.take() {
            let handoff = c.handoff.as_mut().expect("in a handoff");
            handoff.snapshot = Some(target);
            handoff.restore = true;
        }
        let handoff = c.handoff.as_mut().expect("in a handoff");
        handoff.owner = Some(cx.controller.to_owned());
        handoff.lease_until = Some(lease_until(cx));
    });
    Decision::act(vec![
        write(next, cx.now),
        log(
            cx,
            &claim.name,
            "generation-advanced",
            format!("generation {generation} from snapshot {}", show(&h.snapshot)),
        ),
    ])
}

fn short(id: &SnapshotId) -> String {
    id.0.chars().take(8).collect()
}

fn show(id: &Option<SnapshotId>) -> String {
    id.as_ref().map_or_else(|| "none (empty volume)".to_owned(), short)
}

/// Launching: make the new generation's volume, then its task; each found
/// before it is made.
fn launching(claim: &ClaimRecord, h: &Handoff, world: &World, cx: &Context) -> Decision {
    let generation = claim.generation;
    let volume = world.volumes.iter().find(|v| v.generation == Some(generation));
    let task = world.tasks.iter().find(|t| t.generation == Some(generation));
    if let (Some(volume), Some(task)) = (volume, task) {
        let adopted = volume.adopted_from.is_some();
        let next = with_step(claim, HandoffStep::Launched, |c| {
            c.task = Some(task.arn.clone());
            c.volume = Some(volume.id.clone());
            let handoff = c.handoff.as_mut().expect("in a handoff");
            handoff.new_task = Some(task.arn.clone());
            handoff.new_volume = Some(volume.id.clone());
            handoff.owner = None;
            handoff.lease_until = None;
        });
        let how = if adopted {
            "adopted"
        } else if h.snapshot.is_some() {
            "restored"
        } else {
            "empty"
        };
        return Decision::act(vec![
            write(next, cx.now),
            Action::MarkGeneration {
                generation,
                mark: Mark::Launched {
                    task: task.arn.clone(),
                    volume: volume.id.clone(),
                    source: h.snapshot.clone(),
                    adopted,
                    revision: claim.revision,
                    at: cx.now,
                },
            },
            log(
                cx,
                &claim.name,
                "task-launched",
                format!("generation {generation}: task {} on {how} volume {}", task.arn.short(), volume.id),
            ),
        ]);
    }
    if let Err(d) = hold_lease(claim, h, cx) {
        return d;
    }
    let launch = |volume: LaunchVolume| {
        Decision::act(vec![Action::RunTask(Box::new(LaunchRequest {
            service: claim.service.clone(),
            claim: claim.name.clone(),
            generation,
            volume,
            definition: cx.definition.clone(),
            client_token: LaunchRequest::token_for(&claim.name, generation),
            canary: false,
        }))])
    };
    // A restore must not adopt: the old volume holds newer data; nor can a
    // volume made at launch.
    let old =
        h.old_volume.clone().filter(|v| cx.adopt && !cx.volumes_at_launch && !h.restore && world.volume(v).is_some());
    let source = match (old, h.snapshot.clone()) {
        (Some(volume), Some(snapshot)) => VolumeSource::AdoptOrRestore { volume, snapshot },
        (None, Some(snapshot)) => VolumeSource::Snapshot(snapshot),
        (_, None) => VolumeSource::Empty,
    };
    match (volume, task) {
        // The runtime started the task and is making its volume.
        (None, Some(_)) if cx.volumes_at_launch => Decision::wait(POLL),
        // A volume made at launch whose task is gone (it failed to start):
        // start again with a new one; the sweep takes the leftover.
        _ if cx.volumes_at_launch => launch(LaunchVolume::Create(source)),
        (None, _) => Decision::act(vec![Action::CreateVolume { generation, source }]),
        (Some(volume), _) => launch(LaunchVolume::Attach(volume.clone())),
    }
}

/// Launched: wait for the new task to pass its health check, then finish:
/// record the RTO, drop the old volume.
fn launched(claim: &ClaimRecord, h: &Handoff, world: &World, cx: &Context) -> Decision {
    let task = h.new_task.as_ref().and_then(|t| world.task(t));
    let ready = task.is_some_and(TaskInfo::is_ready);
    // Ends without becoming healthy: stopped, failing its health check, or
    // no longer wanted (the steady state then stops it and hands off again).
    let dead = task.is_none_or(|t| t.is_stopped() || t.health == Health::Unhealthy)
        || claim.desired != DesiredState::Running
        || claim.restore_to.is_some()
        || task.and_then(TaskInfo::revision).is_some_and(|r| r != cx.definition.revision);
    if !ready && !dead {
        return Decision::wait(POLL);
    }
    let mut next = claim.clone();
    next.handoff = None;
    let mut actions = Vec::new();
    if ready {
        next.healthy_since = Some(cx.now);
        if h.snapshot.is_some() {
            // The snapshot booted a healthy task: it is known good.
            next.last_good_snapshot = next.last_good_snapshot.or(h.snapshot.clone());
        }
    }
    actions.push(write(next, cx.now));
    let rto_ms = since_ms(h.stopped_at, cx.now);
    if ready {
        actions
            .push(Action::MarkGeneration { generation: claim.generation, mark: Mark::Healthy { at: cx.now, rto_ms } });
    }
    // The old volume goes only once its data is safe in its generation's
    // stop snapshot (a volume that went missing during the handoff and came
    // back was never snapshotted: it stays, and the event log says so).
    if let Some(old) = h.old_volume.as_ref().filter(|v| world.volume(v).is_some() && h.new_volume.as_ref() != Some(*v))
    {
        if world.stop_snapshot(h).is_some_and(|s| !s.pending) {
            actions.push(Action::DeleteVolume(old.clone()));
        } else {
            actions.push(log(cx, &claim.name, "volume-kept", format!("volume {old} has no stop snapshot: kept")));
        }
    }
    let message = match (ready, rto_ms) {
        (true, Some(ms)) => format!("generation {} healthy; RTO {ms} ms", claim.generation),
        (true, None) => format!("generation {} healthy", claim.generation),
        (false, _) => format!("generation {} stopped before it became healthy", claim.generation),
    };
    let mut event = EventRecord::new(cx.now, Some(&claim.name), "handoff-done", message);
    event.data = serde_json::json!({ "generation": claim.generation.0, "healthy": ready, "rto_ms": rto_ms });
    actions.push(Action::Log(event));
    Decision::act(actions)
}
