//! The handoff's steps: from the moment a claim's task is seen stopped to
//! its replacement running (claimed → snapshotting → snapshotted →
//! launching → launched → done), each a pure step of [`super::reconcile`],
//! and the retention rules the snapshotting step applies.

use super::*;

/// The current task has stopped (or the runtime lost it): claim the handoff.
pub(super) fn begin_handoff(claim: &ClaimRecord, arn: &TaskArn, task: Option<&TaskInfo>, cx: &Context) -> Decision {
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

pub(super) fn lease_until(cx: &Context) -> DateTime<Utc> {
    cx.now + chrono::Duration::from_std(cx.lease).unwrap_or(chrono::Duration::MAX)
}

/// Who may do the side effect of the current step: `Ok(())` if this
/// controller holds a live lease, or the decision to take or wait for it.
pub(super) fn hold_lease(claim: &ClaimRecord, h: &Handoff, cx: &Context) -> Result<(), Decision> {
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

pub(super) fn with_step(claim: &ClaimRecord, step: HandoffStep, edit: impl FnOnce(&mut ClaimRecord)) -> ClaimRecord {
    let mut next = claim.clone();
    if let Some(h) = next.handoff.as_mut() {
        h.step = step;
    }
    edit(&mut next);
    next
}

/// Claimed: take the lease to snapshot, or skip the snapshot if there is
/// no volume to take it of.
pub(super) fn claimed(claim: &ClaimRecord, h: &Handoff, world: &World, cx: &Context) -> Decision {
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
    let own = |s: &&SnapshotRecord| !matches!(s.kind, Some(SnapshotKind::Scheduled | SnapshotKind::Background));
    let marked = protect(Some(claim), snapshots.iter().filter(own));
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
pub(super) fn snapshotting(claim: &ClaimRecord, h: &Handoff, world: &World, cx: &Context) -> Decision {
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
pub(super) fn pending_wait(snap: &SnapshotRecord, now: DateTime<Utc>) -> Duration {
    let age = (now - snap.time).to_std().unwrap_or_default();
    (age / 4).clamp(Duration::from_secs(2), Duration::from_secs(60))
}

/// Snapshotted: park, wait out the crash-loop backoff, or advance the
/// generation (the compare-and-swap that fences the old one).
pub(super) fn snapshotted(claim: &ClaimRecord, h: &Handoff, _world: &World, cx: &Context) -> Decision {
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

pub(super) fn short(id: &SnapshotId) -> String {
    id.0.chars().take(8).collect()
}

pub(super) fn show(id: &Option<SnapshotId>) -> String {
    id.as_ref().map_or_else(|| "none (empty volume)".to_owned(), short)
}

/// Launching: make the new generation's volume, then its task; each found
/// before it is made.
pub(super) fn launching(claim: &ClaimRecord, h: &Handoff, world: &World, cx: &Context) -> Decision {
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
pub(super) fn launched(claim: &ClaimRecord, h: &Handoff, world: &World, cx: &Context) -> Decision {
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
