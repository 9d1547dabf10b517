//! The reconciler called directly: each row is a claim and what is
//! observed of it, built from plain structs, and the actions it must
//! decide (by their short names, see `controller::action_name`), with a
//! check of what matters in them. No controller, no fake world, no clock:
//! `reconcile` is a pure function, and these rows pin each policy branch.

use std::time::Duration;

use berth_core::controller::action_name;
use berth_core::intent::StopCause;
use berth_core::ledger::{ClaimRecord, Handoff, HandoffStep, StopOrder};
use berth_core::reconcile::{reconcile, Action, Context, Decision, World, POLL};
use berth_core::retention::KeepPolicy;
use berth_core::{
    ClaimName, DesiredState, Generation, Health, SnapshotId, SnapshotKind, SnapshotRecord, StopCode, StopIntent,
    TaskArn, TaskDefinition, TaskInfo, TaskStatus, VolumeId, VolumeInfo, VolumeSource,
};
use chrono::{DateTime, TimeZone, Utc};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
}

fn name() -> ClaimName {
    ClaimName::parse("files-0").unwrap()
}

fn definition() -> TaskDefinition {
    TaskDefinition {
        family: "files".into(),
        revision: 1,
        command: Vec::new(),
        env: Default::default(),
        port: 5000,
        health_check: None,
        stop_timeout: Duration::from_secs(30),
        secrets: Default::default(),
        container: None,
    }
}

/// A claim running generation `g` on task `t{g}` and volume `vol-{g}`.
fn running(g: u64) -> ClaimRecord {
    let mut c = ClaimRecord::new(name(), "files", 0, 1, now() - chrono::Duration::hours(1));
    c.generation = Generation(g);
    c.task = Some(arn(g));
    c.volume = Some(vol(g));
    c.healthy_since = Some(now() - chrono::Duration::minutes(30));
    c
}

fn arn(g: u64) -> TaskArn {
    TaskArn(format!("arn:aws:ecs:local:0:task/berth/t{g}"))
}

fn vol(g: u64) -> VolumeId {
    VolumeId(format!("vol-{g}"))
}

fn task(g: u64, status: TaskStatus, health: Health) -> TaskInfo {
    let is_stopped = status == TaskStatus::Stopped;
    TaskInfo {
        arn: arn(g),
        service: Some("files".into()),
        claim: Some(name()),
        generation: Some(Generation(g)),
        last_status: status.clone(),
        desired_status: if is_stopped { TaskStatus::Stopped } else { TaskStatus::Running },
        health,
        has_health_check: true,
        stop_code: None,
        stopped_reason: None,
        created_at: now() - chrono::Duration::hours(1),
        started_at: Some(now() - chrono::Duration::hours(1)),
        stopped_at: is_stopped.then(now),
        version: 5,
        endpoint: Some("127.0.0.1:40000".into()),
        definition: Some("arn:aws:ecs:local:0:task-definition/files:1".into()),
    }
}

fn stopped(g: u64, code: StopCode) -> TaskInfo {
    TaskInfo { stop_code: Some(code), ..task(g, TaskStatus::Stopped, Health::Unknown) }
}

fn volume(g: u64) -> VolumeInfo {
    VolumeInfo {
        id: vol(g),
        claim: name(),
        generation: Some(Generation(g)),
        created: now() - chrono::Duration::hours(1),
        source_snapshot: None,
        adopted_from: None,
        location: format!("/state/volumes/vol-{g}"),
    }
}

/// The stop snapshot of generation `g`, taken of volume `of`.
fn stop_snapshot(g: u64, of: &VolumeId) -> SnapshotRecord {
    SnapshotRecord {
        id: SnapshotId(format!("snap-{g}-{of}")),
        time: now() - chrono::Duration::seconds(5),
        claim: Some(name()),
        generation: Some(Generation(g)),
        kind: Some(SnapshotKind::OnStop),
        pinned: false,
        pending: false,
        lock: None,
        consistency: None,
        volume: Some(of.clone()),
    }
}

/// `claim` in a handoff of generation `from` at `step`, leased to this controller.
fn in_handoff(mut claim: ClaimRecord, step: HandoffStep, intent: StopIntent) -> ClaimRecord {
    let mut h = Handoff::begin(&claim, step, intent, "test", now() - chrono::Duration::seconds(10));
    h.stopped_task = claim.task.clone();
    h.stopped_at = Some(now() - chrono::Duration::seconds(10));
    h.owner = Some("me".into());
    h.lease_until = Some(now() + chrono::Duration::minutes(1));
    claim.handoff = Some(h);
    claim
}

fn decide(claim: &ClaimRecord, world: &World) -> Decision {
    let definition = definition();
    let retention = KeepPolicy::default();
    let cx = Context {
        controller: "me",
        now: now(),
        definition: &definition,
        retention: &retention,
        lease: Duration::from_secs(60),
        adopt: true,
        volumes_at_launch: false,
        healthy_reset: Duration::from_secs(600),
    };
    reconcile(claim, world, &cx)
}

fn names(d: &Decision) -> Vec<String> {
    d.actions.iter().map(action_name).collect()
}

fn written(d: &Decision) -> &ClaimRecord {
    d.actions
        .iter()
        .find_map(|a| match a {
            Action::WriteClaim(c) => Some(&**c),
            _ => None,
        })
        .expect("a claim write")
}

struct Row {
    what: &'static str,
    claim: ClaimRecord,
    world: World,
    actions: &'static [&'static str],
    requeue: Option<Duration>,
    check: fn(&Decision),
}

fn world(tasks: Vec<TaskInfo>, volumes: Vec<VolumeInfo>, snapshots: Vec<SnapshotRecord>) -> World {
    World { tasks, volumes, snapshots }
}

fn rows() -> Vec<Row> {
    let new_claim = ClaimRecord::new(name(), "files", 0, 1, now());
    let mut parked = running(3);
    parked.task = None;
    parked.desired = DesiredState::Parked;
    let mut to_park = running(3);
    to_park.desired = DesiredState::Parked;
    // Healthy for less than the reset: a stop now is a crash if it is the task's own failure.
    let mut just_started = running(3);
    just_started.healthy_since = Some(now() - chrono::Duration::seconds(30));
    let mut not_yet_healthy = running(3);
    not_yet_healthy.healthy_since = None;
    let mut ordered_for_health = running(3);
    ordered_for_health.stop_order = Some(StopOrder {
        task: arn(3),
        intent: StopIntent::Replace,
        cause: StopCause::FailedHealthChecks,
        reason: "failed container health checks".into(),
        at: now() - chrono::Duration::seconds(20),
    });
    ordered_for_health.healthy_since = Some(now() - chrono::Duration::seconds(30));
    let mut ordered_for_deploy = ordered_for_health.clone();
    if let Some(o) = ordered_for_deploy.stop_order.as_mut() {
        o.cause = StopCause::Deployment;
        o.reason = "deployment: revision 1 → 2".into();
    }
    let snapshotting = in_handoff(running(3), HandoffStep::Snapshotting, StopIntent::Replace);
    let mut leased_elsewhere = snapshotting.clone();
    if let Some(h) = leased_elsewhere.handoff.as_mut() {
        h.owner = Some("another".into());
    }
    let mut launched = in_handoff(running(3), HandoffStep::Launched, StopIntent::Replace);
    launched.generation = Generation(4);
    launched.task = None;
    if let Some(h) = launched.handoff.as_mut() {
        h.snapshot = Some(stop_snapshot(3, &vol(3)).id);
        h.new_volume = Some(vol(4));
        h.new_task = Some(arn(4));
    }
    let mut launching = launched.clone();
    if let Some(h) = launching.handoff.as_mut() {
        h.step = HandoffStep::Launching;
        h.new_volume = None;
        h.new_task = None;
    }
    vec![
        Row {
            what: "a new claim desired running starts its first launch",
            claim: new_claim,
            world: World::default(),
            actions: &["write:snapshotted", "log"],
            requeue: None,
            check: |d| assert_eq!(written(d).handoff.as_ref().unwrap().snapshot, None),
        },
        Row {
            what: "a parked claim with no task rests",
            claim: parked,
            world: World::default(),
            actions: &[],
            requeue: None,
            check: |_| {},
        },
        Row {
            what: "a healthy task is left alone",
            claim: running(3),
            world: world(vec![task(3, TaskStatus::Running, Health::Healthy)], vec![volume(3)], vec![]),
            actions: &[],
            requeue: None,
            check: |_| {},
        },
        Row {
            what: "a task that is not healthy yet is looked at again",
            claim: not_yet_healthy,
            world: world(vec![task(3, TaskStatus::Running, Health::Unknown)], vec![volume(3)], vec![]),
            actions: &[],
            requeue: Some(POLL),
            check: |_| {},
        },
        Row {
            what: "a task failing its health checks is stopped to be replaced, as a crash",
            claim: running(3),
            world: world(vec![task(3, TaskStatus::Running, Health::Unhealthy)], vec![volume(3)], vec![]),
            actions: &["write:done", "stop-task", "log"],
            requeue: None,
            check: |d| {
                let o = written(d).stop_order.clone().unwrap();
                assert_eq!((o.intent, o.cause), (StopIntent::Replace, StopCause::FailedHealthChecks));
            },
        },
        Row {
            what: "a claim no longer desired running has its task stopped to park",
            claim: to_park,
            world: world(vec![task(3, TaskStatus::Running, Health::Healthy)], vec![volume(3)], vec![]),
            actions: &["write:done", "stop-task", "log"],
            requeue: None,
            check: |d| {
                let o = written(d).stop_order.clone().unwrap();
                assert_eq!((o.intent, o.cause), (StopIntent::Park, StopCause::Parked));
            },
        },
        Row {
            what: "a Spot interruption claims a handoff that replaces",
            claim: just_started.clone(),
            world: world(vec![stopped(3, StopCode::SpotInterruption)], vec![volume(3)], vec![]),
            actions: &["write:claimed", "mark", "log"],
            requeue: None,
            check: |d| {
                let c = written(d);
                let h = c.handoff.as_ref().unwrap();
                assert_eq!(
                    (h.intent, h.from, h.old_volume.clone()),
                    (StopIntent::Replace, Generation(3), Some(vol(3)))
                );
                assert_eq!(c.backoff.failures, 0, "a Spot stop is no crash");
            },
        },
        Row {
            what: "a user's stop claims a handoff that parks",
            claim: running(3),
            world: world(vec![stopped(3, StopCode::UserInitiated)], vec![volume(3)], vec![]),
            actions: &["write:claimed", "mark", "log"],
            requeue: None,
            check: |d| assert_eq!(written(d).handoff.as_ref().unwrap().intent, StopIntent::Park),
        },
        Row {
            what: "an essential container's exit counts against the crash loop",
            claim: just_started.clone(),
            world: world(vec![stopped(3, StopCode::EssentialContainerExited)], vec![volume(3)], vec![]),
            actions: &["write:claimed", "mark", "log"],
            requeue: None,
            check: |d| assert_eq!(written(d).backoff.failures, 1),
        },
        Row {
            what: "a stop berth ordered for failed health checks counts as a crash, whatever its words",
            claim: ordered_for_health,
            world: world(vec![stopped(3, StopCode::ServiceSchedulerInitiated)], vec![volume(3)], vec![]),
            actions: &["write:claimed", "mark", "log"],
            requeue: None,
            check: |d| {
                let c = written(d);
                assert_eq!(c.backoff.failures, 1);
                assert_eq!(c.handoff.as_ref().unwrap().intent, StopIntent::Replace);
            },
        },
        Row {
            what: "a stop berth ordered for a deployment is no crash",
            claim: ordered_for_deploy,
            world: world(vec![stopped(3, StopCode::ServiceSchedulerInitiated)], vec![volume(3)], vec![]),
            actions: &["write:claimed", "mark", "log"],
            requeue: None,
            check: |d| assert_eq!(written(d).backoff.failures, 0),
        },
        Row {
            what: "a task the runtime lost is handed off as stopped",
            claim: running(3),
            world: world(vec![], vec![volume(3)], vec![]),
            actions: &["write:claimed", "mark", "log"],
            requeue: None,
            check: |d| {
                let h = written(d).handoff.clone().unwrap();
                assert!(h.stop_reason.unwrap().contains("gone from the runtime"));
            },
        },
        Row {
            what: "an older generation's task still running is fenced first",
            claim: running(4),
            world: world(
                vec![task(3, TaskStatus::Running, Health::Healthy), task(4, TaskStatus::Running, Health::Healthy)],
                vec![volume(4)],
                vec![],
            ),
            actions: &["stop-task"],
            requeue: None,
            check: |d| assert!(matches!(&d.actions[0], Action::StopTask { task, .. } if *task == arn(3))),
        },
        Row {
            what: "snapshotting under its own lease takes the stop snapshot of the old volume",
            claim: snapshotting.clone(),
            world: world(vec![stopped(3, StopCode::SpotInterruption)], vec![volume(3)], vec![]),
            actions: &["snapshot"],
            requeue: None,
            check: |d| {
                let Action::TakeSnapshot { volume, request } = &d.actions[0] else { panic!("{d:?}") };
                assert_eq!(
                    (volume, request.generation, request.kind),
                    (&vol(3), Some(Generation(3)), SnapshotKind::OnStop)
                );
            },
        },
        Row {
            what: "a stop snapshot of this very volume is recorded, not taken again",
            claim: snapshotting.clone(),
            world: world(
                vec![stopped(3, StopCode::SpotInterruption)],
                vec![volume(3)],
                vec![stop_snapshot(3, &vol(3))],
            ),
            actions: &["write:snapshotted", "mark", "log"],
            requeue: None,
            check: |d| assert_eq!(written(d).head_snapshot, Some(stop_snapshot(3, &vol(3)).id)),
        },
        Row {
            what: "a stop snapshot of the same number but another volume is not this generation's (issue 20)",
            claim: snapshotting,
            world: world(
                vec![stopped(3, StopCode::SpotInterruption)],
                vec![volume(3)],
                vec![stop_snapshot(3, &VolumeId("vol-of-a-lost-ledger".into()))],
            ),
            actions: &["snapshot"],
            requeue: None,
            check: |_| {},
        },
        Row {
            what: "another controller's live lease is waited out",
            claim: leased_elsewhere,
            world: world(vec![stopped(3, StopCode::SpotInterruption)], vec![volume(3)], vec![]),
            actions: &[],
            requeue: Some(Duration::from_secs(60)),
            check: |_| {},
        },
        Row {
            what: "launching makes the new generation's volume, adopting the old one",
            claim: launching,
            world: world(
                vec![stopped(3, StopCode::SpotInterruption)],
                vec![volume(3)],
                vec![stop_snapshot(3, &vol(3))],
            ),
            actions: &["create-volume"],
            requeue: None,
            check: |d| {
                let Action::CreateVolume { generation, source } = &d.actions[0] else { panic!("{d:?}") };
                assert_eq!(*generation, Generation(4));
                assert!(matches!(source, VolumeSource::AdoptOrRestore { volume, .. } if *volume == vol(3)));
            },
        },
        Row {
            what: "a healthy replacement ends the handoff and drops the old volume its stop snapshot holds",
            claim: launched.clone(),
            world: world(
                vec![stopped(3, StopCode::SpotInterruption), task(4, TaskStatus::Running, Health::Healthy)],
                vec![volume(3), volume(4)],
                vec![stop_snapshot(3, &vol(3))],
            ),
            actions: &["write:done", "mark", "delete-volume", "log"],
            requeue: None,
            check: |d| assert!(d.actions.iter().any(|a| *a == Action::DeleteVolume(vol(3)))),
        },
        Row {
            what: "an old volume no stop snapshot of it holds is kept",
            claim: launched,
            world: world(
                vec![stopped(3, StopCode::SpotInterruption), task(4, TaskStatus::Running, Health::Healthy)],
                vec![volume(3), volume(4)],
                vec![stop_snapshot(3, &VolumeId("vol-elsewhere".into()))],
            ),
            actions: &["write:done", "mark", "log", "log"],
            requeue: None,
            check: |d| assert!(!d.actions.iter().any(|a| matches!(a, Action::DeleteVolume(_)))),
        },
    ]
}

#[test]
fn each_branch_of_reconcile_decides_as_its_row_says() {
    for row in rows() {
        let d = decide(&row.claim, &row.world);
        assert_eq!(names(&d), row.actions, "{}: {d:#?}", row.what);
        assert_eq!(d.requeue_after, row.requeue, "{}: {d:#?}", row.what);
        (row.check)(&d);
    }
}
