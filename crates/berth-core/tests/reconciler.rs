//! The reconciler and controller over a fake world: every stop cause,
//! duplicate, reordered and lost events, backoff, pinning, fencing, and a
//! crash at every step of a handoff.

use berth_core::fake;

use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_core::controller::EventOutcome;
use berth_core::event::StopCode;
use berth_core::ledger::{HandoffStep, Ledger};
use berth_core::ports::Volumes;
use berth_core::task::Health;
use berth_core::{DesiredState, Generation};
use fake::World;

async fn up(world: &World, count: u32) -> fake::Ctl {
    let ctl = world.controller("c1", count);
    ctl.scale_services().await.unwrap();
    let failed = ctl.resync().await.failed;
    assert!(failed.is_empty(), "{failed:?}");
    ctl
}

/// Checks the invariants after any sequence: one running task per running
/// claim, of its current generation, and no running task for a parked one.
async fn invariants(world: &World) {
    for claim in world.ledger.claims().await.unwrap() {
        let running: Vec<_> =
            world.runtime.running().into_iter().filter(|t| t.claim.as_ref() == Some(&claim.name)).collect();
        match claim.desired {
            DesiredState::Running => {
                assert_eq!(running.len(), 1, "{}: {running:#?}", claim.name);
                assert_eq!(running[0].generation, Some(claim.generation));
                assert_eq!(claim.task.as_ref(), Some(&running[0].arn));
                assert!(claim.handoff.is_none(), "{}: handoff left {:?}", claim.name, claim.handoff);
            }
            _ => assert!(running.is_empty(), "{} is parked but runs {running:#?}", claim.name),
        }
    }
}

#[tokio::test]
async fn first_launch_makes_one_generation_per_claim() {
    let world = World::new();
    let _ctl = up(&world, 2).await;
    invariants(&world).await;
    for name in ["files-0", "files-1"] {
        let c = world.claim(name).await;
        assert_eq!(c.generation, Generation(1));
        assert!(c.healthy_since.is_some());
        let g = world.generations(name).await;
        assert_eq!(g.len(), 1);
        assert!(g[0].healthy_at.is_some());
        assert_eq!(g[0].source_snapshot, None);
    }
    assert_eq!(world.runtime.runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn every_replacing_stop_cause_snapshots_once_and_replaces_once() {
    for code in [
        StopCode::SpotInterruption,
        StopCode::TaskFailedToStart,
        StopCode::EssentialContainerExited,
        StopCode::TerminationNotice,
        StopCode::ServiceSchedulerInitiated,
        StopCode::Other("SomethingNew".into()),
    ] {
        let world = World::new();
        let ctl = up(&world, 1).await;
        let old = world.runtime.current("files-0");
        world.clock.advance(Duration::from_secs(700));
        let event = world.runtime.stop_by_world(&old.arn, code.clone(), "stopped");
        let outcome = ctl.on_event(&event).await.unwrap();
        assert!(matches!(outcome, EventOutcome::Reconciled(..)), "{code:?}: {outcome:?}");
        invariants(&world).await;
        let c = world.claim("files-0").await;
        assert_eq!(c.generation, Generation(2), "{code:?}");
        assert_eq!(world.volumes.snapshots_taken.load(Ordering::SeqCst), 1, "{code:?}");
        assert_eq!(world.volumes.adopts.load(Ordering::SeqCst), 1, "{code:?}: same host adopts");
        let g = world.generations("files-0").await;
        assert_eq!(g[0].stop_code, Some(code.clone()));
        assert_eq!(g[0].stop_snapshot, c.head_snapshot);
        assert_eq!(g[1].source_snapshot, c.head_snapshot);
        assert!(g[1].rto_ms.is_some());
        // The old volume was adopted (renamed), so only one volume remains.
        assert_eq!(world.volumes.volumes.lock().unwrap().len(), 1);
    }
}

/// Issue 20, defect 1: with a new ledger numbering generations from 1
/// again, a Spot stop "found" the old ledger's stop snapshot tagged with
/// the same claim and generation, and the replacement was restored from it
/// without the uploads of the generation that stopped. A stop snapshot
/// counts only if it was taken of the stopped generation's own volume.
#[tokio::test]
async fn a_stop_snapshot_of_another_incarnation_is_not_taken_as_this_generations() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    let old = world.runtime.current("files-0");
    let planted = berth_core::SnapshotRecord {
        id: berth_core::SnapshotId("f".repeat(64)),
        time: berth_core::controller::Clock::now(&world.clock) - chrono::Duration::days(1),
        claim: Some(World::name("files-0")),
        generation: Some(Generation(1)),
        kind: Some(berth_core::SnapshotKind::OnStop),
        pinned: false,
        pending: false,
        lock: None,
        consistency: None,
        volume: Some(berth_core::VolumeId("vol-of-a-lost-ledger".into())),
    };
    world.volumes.snapshots.lock().unwrap().push(planted.clone());
    ctl.refresh_snapshots().await.unwrap();
    let event = world.runtime.stop_by_world(&old.arn, StopCode::SpotInterruption, "spot");
    ctl.on_event(&event).await.unwrap();
    invariants(&world).await;
    assert_eq!(world.volumes.snapshots_taken.load(Ordering::SeqCst), 1, "this generation's own stop snapshot");
    let c = world.claim("files-0").await;
    assert_eq!(c.generation, Generation(2));
    assert_ne!(c.head_snapshot, Some(planted.id.clone()));
    let g = world.generations("files-0").await;
    assert_eq!(g[0].stop_snapshot, c.head_snapshot);
    assert_eq!(g[1].source_snapshot, c.head_snapshot);
}

/// A controller killed between taking a stop snapshot and cataloguing it
/// left it out of the ledger's catalogue for good: the next controller
/// found and recorded it, but `claim history` never listed it (a CI run
/// beside a busy core caught it). Recording a stop snapshot catalogues it.
#[tokio::test]
async fn a_stop_snapshot_taken_before_a_crash_is_catalogued_when_it_is_recorded() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    let claim = world.claim("files-0").await;
    let old = world.runtime.current("files-0");
    let request =
        berth_core::SnapshotRequest::new(claim.name.clone(), Some(Generation(1)), berth_core::SnapshotKind::OnStop);
    // Taken by the controller that then died: in the store, not in the catalogue.
    let taken = world.volumes.snapshot(claim.volume.as_ref().unwrap(), &request).await.unwrap();
    ctl.refresh_snapshots().await.unwrap();
    let event = world.runtime.stop_by_world(&old.arn, StopCode::SpotInterruption, "spot");
    ctl.on_event(&event).await.unwrap();
    invariants(&world).await;
    assert_eq!(world.volumes.snapshots_taken.load(Ordering::SeqCst), 1, "found, not taken again");
    let catalogued = world.ledger.snapshots(Some(&claim.name)).await.unwrap();
    assert!(catalogued.iter().any(|s| s.id == taken.id), "{catalogued:?}");
}

#[tokio::test]
async fn duplicate_and_reordered_events_change_nothing() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    let old = world.runtime.current("files-0");
    let early = fake::event_of(&old); // version 4: RUNNING
    let stopped = world.runtime.stop_by_world(&old.arn, StopCode::SpotInterruption, "spot");
    assert!(matches!(ctl.on_event(&stopped).await.unwrap(), EventOutcome::Reconciled(..)));
    assert_eq!(ctl.on_event(&stopped).await.unwrap(), EventOutcome::Stale);
    assert_eq!(ctl.on_event(&early).await.unwrap(), EventOutcome::Stale);
    // A redelivery with the same event id is dropped by its idempotency record.
    let mut redelivered = fake::event_of(&world.runtime.current("files-0"));
    redelivered.id = Some("evt-1".into());
    assert!(matches!(ctl.on_event(&redelivered).await.unwrap(), EventOutcome::Reconciled(..)));
    redelivered.detail.version = Some(redelivered.detail.version.unwrap() + 1);
    assert_eq!(ctl.on_event(&redelivered).await.unwrap(), EventOutcome::Stale);
    // Even a duplicate that got past the version check (a second controller
    // without the ledger's memory) finds nothing to do.
    ctl.reconcile_claim(&World::name("files-0")).await.unwrap();
    invariants(&world).await;
    assert_eq!(world.volumes.snapshots_taken.load(Ordering::SeqCst), 1);
    assert_eq!(world.runtime.runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_lost_event_is_fixed_by_resync() {
    let world = World::new();
    let ctl = up(&world, 2).await;
    let old = world.runtime.current("files-1");
    let _lost = world.runtime.stop_by_world(&old.arn, StopCode::EssentialContainerExited, "exit 1");
    world.clock.advance(Duration::from_secs(30)); // past the first backoff
    ctl.resync().await;
    invariants(&world).await;
    assert_eq!(world.claim("files-1").await.generation, Generation(2));
    assert_eq!(world.claim("files-0").await.generation, Generation(1));
}

#[tokio::test]
async fn out_of_scope_events_are_ignored() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    let old = world.runtime.current("files-0");
    let mut event = world.runtime.stop_by_world(&old.arn, StopCode::SpotInterruption, "spot");
    event.detail.cluster_arn = Some("arn:aws:ecs:us-east-1:1:cluster/someone-else".into());
    assert_eq!(ctl.on_event(&event).await.unwrap(), EventOutcome::OutOfScope);
    assert_eq!(world.claim("files-0").await.generation, Generation(1));
}

#[tokio::test]
async fn a_user_stop_parks_and_scale_to_zero_is_never_resurrected() {
    let world = World::new();
    let ctl = up(&world, 2).await;
    let t0 = world.runtime.current("files-0");
    let e = world.runtime.stop_by_world(&t0.arn, StopCode::UserInitiated, "stopped by a user");
    ctl.on_event(&e).await.unwrap();
    let c0 = world.claim("files-0").await;
    assert_eq!(c0.desired, DesiredState::Parked);
    assert!(c0.head_snapshot.is_some(), "parking snapshots");
    invariants(&world).await;

    // Scale the service to zero: the other claim parks too, with a snapshot.
    ctl.set_service(fake::service(0));
    ctl.scale_services().await.unwrap();
    ctl.resync().await;
    invariants(&world).await;
    assert_eq!(world.claim("files-1").await.desired, DesiredState::Parked);
    assert!(world.runtime.running().is_empty());
    // Nothing brings them back: not resync, not a late event.
    world.clock.advance(Duration::from_secs(3600));
    ctl.resync().await;
    ctl.on_event(&e).await.unwrap();
    assert!(world.runtime.running().is_empty());

    // Scaling out again resumes the same claims from their data.
    ctl.set_service(fake::service(2));
    ctl.scale_services().await.unwrap();
    ctl.resync().await;
    invariants(&world).await;
    let c1 = world.claim("files-1").await;
    assert_eq!(c1.generation, Generation(2));
    let g = world.generations("files-1").await;
    assert_eq!(g[1].source_snapshot, g[0].stop_snapshot);
    assert!(g[1].adopted, "a parked claim keeps its volume for adoption");
}

#[tokio::test]
async fn a_scale_change_that_loses_its_compare_and_swap_is_made_again() {
    let world = World::new();
    let ctl = up(&world, 2).await;
    // The scale-in's park of files-1 races another writer of that claim (a
    // handoff step): nothing else would scale again until the count changes.
    world.faults.clear();
    world.faults.race_write_at.store(1, Ordering::SeqCst);
    ctl.set_service(fake::service(1));
    ctl.scale_services().await.unwrap();
    assert_eq!(world.claim("files-1").await.desired, DesiredState::Parked);
    assert_eq!(world.claim("files-0").await.desired, DesiredState::Running);
    ctl.resync().await;
    invariants(&world).await;
    assert_eq!(world.runtime.running().len(), 1);
}

#[tokio::test]
async fn crash_loop_backs_off_doubling_and_resets_after_healthy() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    let name = World::name("files-0");
    let mut waits = Vec::new();
    // The first crash is replaced at once.
    let t = world.runtime.current("files-0");
    let e = world.runtime.stop_by_world(&t.arn, StopCode::EssentialContainerExited, "exit 1");
    ctl.on_event(&e).await.unwrap();
    invariants(&world).await;
    for _ in 0..4 {
        let t = world.runtime.current("files-0");
        let e = world.runtime.stop_by_world(&t.arn, StopCode::EssentialContainerExited, "exit 1");
        let EventOutcome::Reconciled(_, requeue) = ctl.on_event(&e).await.unwrap() else { panic!() };
        let c = world.claim("files-0").await;
        assert_eq!(c.handoff.as_ref().unwrap().step, HandoffStep::Snapshotted, "waiting out the backoff");
        assert!(world.runtime.running().is_empty());
        waits.push(requeue.unwrap());
        world.clock.advance(requeue.unwrap());
        ctl.reconcile_claim(&name).await.unwrap();
        invariants(&world).await;
    }
    assert_eq!(waits, [10, 20, 40, 80].map(Duration::from_secs));
    // Healthy for 10 minutes resets the count.
    world.clock.advance(Duration::from_secs(601));
    ctl.reconcile_claim(&name).await.unwrap();
    assert_eq!(world.claim("files-0").await.backoff.failures, 0);
    // A Spot interruption is not the task's fault: no backoff.
    let t = world.runtime.current("files-0");
    let e = world.runtime.stop_by_world(&t.arn, StopCode::SpotInterruption, "spot");
    ctl.on_event(&e).await.unwrap();
    invariants(&world).await;
}

#[tokio::test]
async fn the_last_known_good_snapshot_survives_a_crash_loop() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    let name = World::name("files-0");
    // A healthy generation stopped after 11 minutes: its snapshot is good.
    world.clock.advance(Duration::from_secs(660));
    let t = world.runtime.current("files-0");
    let e = world.runtime.stop_by_world(&t.arn, StopCode::SpotInterruption, "spot");
    ctl.on_event(&e).await.unwrap();
    let good = world.claim("files-0").await.last_good_snapshot.expect("pinned");
    // Then many crash-loop generations with keep-last 3.
    for _ in 0..8 {
        let t = world.runtime.current("files-0");
        let e = world.runtime.stop_by_world(&t.arn, StopCode::EssentialContainerExited, "exit 1");
        ctl.on_event(&e).await.unwrap();
        world.clock.advance(Duration::from_secs(301));
        ctl.reconcile_claim(&name).await.unwrap();
    }
    let ids: Vec<_> = world.volumes.of("files-0").into_iter().map(|s| s.id).collect();
    assert!(ids.contains(&good), "last-known-good {good} was forgotten: {ids:?}");
    assert!(ids.len() <= 5, "retention keeps 3 + pinned + the new one: {ids:?}");
    assert_eq!(world.claim("files-0").await.last_good_snapshot, Some(good));
}

#[tokio::test]
async fn an_unhealthy_task_is_replaced_not_parked() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    let t = world.runtime.current("files-0");
    let e = world.runtime.set_health(&t.arn, Health::Unhealthy);
    ctl.on_event(&e).await.unwrap();
    // The stop berth ordered arrives as an event of its own.
    let stopped = fake::event_of(&world.runtime.tasks.lock().unwrap().iter().find(|x| x.arn == t.arn).unwrap().clone());
    ctl.on_event(&stopped).await.unwrap();
    world.clock.advance(Duration::from_secs(11));
    ctl.reconcile_claim(&World::name("files-0")).await.unwrap();
    invariants(&world).await;
    let c = world.claim("files-0").await;
    assert_eq!(c.desired, DesiredState::Running);
    assert_eq!(c.generation, Generation(2));
    let g = world.generations("files-0").await;
    assert_eq!(g[0].stop_reason.as_deref(), Some("Task failed container health checks"));
}

#[tokio::test]
async fn two_controllers_racing_make_one_snapshot_and_one_replacement() {
    let world = World::new();
    let a = up(&world, 1).await;
    let b = world.controller("c2", 1);
    let t = world.runtime.current("files-0");
    let e = world.runtime.stop_by_world(&t.arn, StopCode::SpotInterruption, "spot");
    // Both see the event (b has no memory of versions a saw, so bypass it).
    let name = World::name("files-0");
    let (ra, rb) = tokio::join!(a.on_event(&e), b.reconcile_claim(&name));
    ra.unwrap();
    rb.unwrap();
    a.resync().await;
    b.resync().await;
    invariants(&world).await;
    assert_eq!(world.volumes.snapshots_taken.load(Ordering::SeqCst), 1);
    assert_eq!(world.runtime.runs.load(Ordering::SeqCst), 2);
    assert_eq!(world.claim("files-0").await.generation, Generation(2));
}

#[tokio::test]
async fn a_task_of_an_older_generation_is_stopped() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    let old = world.runtime.current("files-0");
    // The runtime reports the old task stopped, but it comes back running
    // (a partitioned host): the claim has moved on.
    let e = world.runtime.stop_by_world(&old.arn, StopCode::SpotInterruption, "spot");
    ctl.on_event(&e).await.unwrap();
    {
        let mut tasks = world.runtime.tasks.lock().unwrap();
        let t = tasks.iter_mut().find(|t| t.arn == old.arn).unwrap();
        t.last_status = berth_core::TaskStatus::Running;
        t.desired_status = berth_core::TaskStatus::Running;
    }
    ctl.resync().await;
    invariants(&world).await;
    let t = world.runtime.tasks.lock().unwrap().iter().find(|t| t.arn == old.arn).unwrap().clone();
    assert!(t.is_stopped());
    assert!(t.stopped_reason.unwrap().starts_with("fenced"));
}

#[tokio::test]
async fn a_controller_crash_at_any_step_finishes_with_one_snapshot_and_one_replacement() {
    // Crash points: each of the six claim writes of a handoff, the snapshot, the volume
    // and the launch. After each, a fresh controller (same identity, as a
    // restarted `berth up`) resumes.
    let points: Vec<(&str, u32)> =
        (1..=6).map(|n| ("write", n)).chain([("snapshot", 1), ("create", 1), ("run", 1)]).collect();
    let mut crashed = 0;
    for (kind, n) in points {
        let world = World::new();
        let ctl = up(&world, 1).await;
        let t = world.runtime.current("files-0");
        let e = world.runtime.stop_by_world(&t.arn, StopCode::SpotInterruption, "spot");
        world.faults.clear();
        match kind {
            "write" => world.faults.fail_write_at.store(n, Ordering::SeqCst),
            "snapshot" => world.faults.fail_snapshot_at.store(n, Ordering::SeqCst),
            "create" => world.faults.fail_create_at.store(n, Ordering::SeqCst),
            _ => world.faults.fail_run_at.store(n, Ordering::SeqCst),
        }
        let first = ctl.on_event(&e).await;
        crashed += usize::from(first.is_err());
        drop(ctl);
        let restarted = world.controller("c1", 1);
        restarted.resync().await;
        invariants(&world).await;
        let c = world.claim("files-0").await;
        assert_eq!(c.generation, Generation(2), "{kind} #{n}: {first:?}");
        assert_eq!(world.volumes.snapshots_taken.load(Ordering::SeqCst), 1, "{kind} #{n}");
        assert_eq!(world.runtime.runs.load(Ordering::SeqCst), 2, "{kind} #{n}");
        assert_eq!(world.volumes.volumes.lock().unwrap().len(), 1, "{kind} #{n}: no orphaned volume");
    }
    assert_eq!(crashed, 9, "every crash point was reached");
}

#[tokio::test]
async fn a_crashed_controllers_lease_is_taken_over_after_it_expires() {
    let world = World::new();
    let a = up(&world, 1).await;
    let t = world.runtime.current("files-0");
    let e = world.runtime.stop_by_world(&t.arn, StopCode::SpotInterruption, "spot");
    world.faults.fail_snapshot_at.store(1, Ordering::SeqCst);
    assert!(a.on_event(&e).await.is_err());
    drop(a);
    let b = world.controller("c2", 1);
    let requeue = b.resync().await.requeue;
    assert!(requeue.is_some(), "b waits for a's lease");
    assert_eq!(world.claim("files-0").await.handoff.unwrap().step, HandoffStep::Snapshotting);
    world.clock.advance(Duration::from_secs(61));
    b.resync().await;
    invariants(&world).await;
    assert_eq!(world.volumes.snapshots_taken.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_runtime_that_lost_its_tasks_gets_them_back_from_the_head() {
    let world = World::new();
    let ctl = up(&world, 2).await;
    world.runtime.forget_all();
    ctl.resync().await;
    invariants(&world).await;
    for name in ["files-0", "files-1"] {
        let c = world.claim(name).await;
        assert_eq!(c.generation, Generation(2));
        assert!(c.head_snapshot.is_some());
    }
}

#[tokio::test]
async fn the_sweep_removes_orphaned_volumes_after_the_grace_period() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    let name = World::name("files-0");
    // A volume whose stop snapshot was taken, left by a crash before its
    // handoff deleted it: its data is safe, so it goes.
    let saved = world.volumes.create(&name, Some(Generation(1)), &berth_core::VolumeSource::Empty).await.unwrap();
    let request = berth_core::SnapshotRequest::new(name.clone(), Some(Generation(1)), berth_core::SnapshotKind::OnStop);
    world.volumes.snapshot(&saved.id, &request).await.unwrap();
    // A volume left by a controller that lost its race: no stop snapshot
    // holds its data, so the sweep keeps it (issue 20: never delete a
    // volume the ledger has not seen die).
    let unproven = world.volumes.create(&name, Some(Generation(1)), &berth_core::VolumeSource::Empty).await.unwrap();
    ctl.refresh_snapshots().await.unwrap();
    assert_eq!(ctl.sweep().await.unwrap(), (0, 0), "young volumes are left alone");
    world.clock.advance(Duration::from_secs(601));
    assert_eq!(ctl.sweep().await.unwrap(), (1, 0));
    invariants(&world).await;
    let left: Vec<_> = world.volumes.volumes.lock().unwrap().iter().map(|v| v.id.clone()).collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&unproven.id) && !left.contains(&saved.id), "{left:?}");
}

#[tokio::test]
async fn a_point_in_time_restore_relaunches_from_the_chosen_snapshot_and_keeps_the_latest() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    for _ in 0..2 {
        let t = world.runtime.current("files-0");
        let e = world.runtime.stop_by_world(&t.arn, StopCode::SpotInterruption, "spot");
        ctl.on_event(&e).await.unwrap();
    }
    let history = world.generations("files-0").await;
    let target = history[0].stop_snapshot.clone().unwrap();
    let mut claim = world.claim("files-0").await;
    claim.restore_to = Some(target.clone());
    let version = claim.version;
    world.ledger.put_claim(&claim, berth_core::Expect::Version(version)).await.unwrap();
    let restores_before = world.volumes.restores.load(Ordering::SeqCst);
    ctl.reconcile_claim(&World::name("files-0")).await.unwrap();
    let t = world.tasks_stopped_by_berth();
    ctl.on_event(&t).await.unwrap();
    invariants(&world).await;
    let c = world.claim("files-0").await;
    assert_eq!(c.generation, Generation(4));
    assert_eq!(c.restore_to, None);
    let g = world.generations("files-0").await;
    assert_eq!(g[3].source_snapshot.as_ref(), Some(&target));
    assert!(!g[3].adopted, "a restore never adopts the newer volume");
    assert!(g[2].stop_snapshot.is_some(), "the state before the restore is kept as a snapshot");
    assert_eq!(world.volumes.restores.load(Ordering::SeqCst), restores_before + 1);
}

#[tokio::test]
async fn a_scale_in_undone_before_the_task_stopped_replaces_instead_of_parking() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    let name = World::name("files-0");
    world.runtime.deferred_stop.store(true, Ordering::SeqCst);
    ctl.set_service(fake::service(0));
    ctl.scale_services().await.unwrap();
    ctl.reconcile_claim(&name).await.unwrap();
    assert!(world.claim("files-0").await.stop_order.is_some(), "a park was ordered");
    // Scaled back out while the task is still shutting down.
    ctl.set_service(fake::service(1));
    ctl.scale_services().await.unwrap();
    world.runtime.deferred_stop.store(false, Ordering::SeqCst);
    let t = world.runtime.current("files-0");
    let e = world.runtime.stop_by_world(&t.arn, StopCode::ServiceSchedulerInitiated, "Scaling activity");
    ctl.on_event(&e).await.unwrap();
    invariants(&world).await;
    let c = world.claim("files-0").await;
    assert_eq!(c.desired, DesiredState::Running);
    assert_eq!(c.generation, Generation(2));
}

#[tokio::test]
async fn a_stop_order_that_never_reached_the_runtime_is_sent_again() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    let t = world.runtime.current("files-0");
    // The order is in the ledger, the stop never happened (a crash between).
    let mut c = world.claim("files-0").await;
    c.stop_order = Some(berth_core::ledger::StopOrder {
        task: t.arn.clone(),
        intent: berth_core::StopIntent::Replace,
        cause: berth_core::intent::StopCause::FailedHealthChecks,
        reason: "failed container health checks".into(),
        at: world.clock.now_for_tests(),
    });
    let v = c.version;
    world.ledger.put_claim(&c, berth_core::Expect::Version(v)).await.unwrap();
    ctl.reconcile_claim(&World::name("files-0")).await.unwrap();
    let stopped = world.tasks_stopped_by_berth();
    assert_eq!(stopped.detail.task_arn, t.arn.0);
    ctl.on_event(&stopped).await.unwrap();
    invariants(&world).await;
    assert_eq!(world.claim("files-0").await.generation, Generation(2));
}

#[tokio::test]
async fn a_generation_unhealthy_from_the_start_is_replaced_with_backoff_not_left_waiting() {
    let world = World::new();
    *world.runtime.start_health.lock().unwrap() = Health::Unhealthy;
    let ctl = world.controller("c1", 1);
    ctl.scale_services().await.unwrap();
    ctl.resync().await;
    let name = World::name("files-0");
    for _ in 0..3 {
        let stopped = world.tasks_stopped_by_berth();
        ctl.on_event(&stopped).await.unwrap();
        world.clock.advance(Duration::from_secs(301));
        ctl.reconcile_claim(&name).await.unwrap();
    }
    let c = world.claim("files-0").await;
    assert!(c.generation.0 >= 3, "unhealthy generations are replaced: {c:#?}");
    assert!(c.backoff.failures >= 2, "and count as a crash loop: {:?}", c.backoff);
    // Fixed: the next generation is healthy and stays.
    *world.runtime.start_health.lock().unwrap() = Health::Healthy;
    for _ in 0..3 {
        let stopped = world.runtime.tasks.lock().unwrap().iter().rev().find(|t| t.is_stopped()).map(fake::event_of);
        if let Some(stopped) = stopped {
            let _ = ctl.on_event(&stopped).await;
        }
        world.clock.advance(Duration::from_secs(301));
        ctl.resync().await;
    }
    invariants(&world).await;
}

#[tokio::test]
async fn retention_never_forgets_a_requested_restore_target() {
    let world = World::new();
    let ctl = up(&world, 1).await;
    for _ in 0..6 {
        let t = world.runtime.current("files-0");
        let e = world.runtime.stop_by_world(&t.arn, StopCode::SpotInterruption, "spot");
        ctl.on_event(&e).await.unwrap();
    }
    let oldest = world.volumes.of("files-0").into_iter().min_by_key(|s| s.generation).unwrap().id;
    let mut c = world.claim("files-0").await;
    c.restore_to = Some(oldest.clone());
    let v = c.version;
    world.ledger.put_claim(&c, berth_core::Expect::Version(v)).await.unwrap();
    ctl.reconcile_claim(&World::name("files-0")).await.unwrap();
    ctl.on_event(&world.tasks_stopped_by_berth()).await.unwrap();
    invariants(&world).await;
    let g = world.generations("files-0").await;
    assert_eq!(g.last().unwrap().source_snapshot.as_ref(), Some(&oldest));
}

#[tokio::test]
async fn a_claim_moved_to_a_new_revision_is_handed_off_onto_it_with_its_snapshot() {
    let world = World::new();
    let ctl = up(&world, 2).await;
    let mut spec = fake::service(2);
    let old = spec.definition.clone();
    spec.definition.revision = 2;
    spec.definition.env.insert("APP_VERSION".into(), "2".into());
    spec.revisions = vec![old];
    ctl.set_service(spec);
    // Registering a revision alone moves no claim.
    let failed = ctl.resync().await.failed;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(world.claim("files-0").await.generation, Generation(1));
    assert_eq!(world.runtime.current("files-0").revision(), Some(1));

    // The rollout moves files-0: the reconciler replaces its task.
    let mut c = world.claim("files-0").await;
    c.revision = 2;
    world.ledger.put_claim(&c, berth_core::Expect::Version(c.version)).await.unwrap();
    ctl.reconcile_claim(&c.name).await.unwrap();
    let stopped = world.tasks_stopped_by_berth();
    ctl.on_event(&stopped).await.unwrap();
    invariants(&world).await;
    let c0 = world.claim("files-0").await;
    assert_eq!((c0.generation, c0.revision), (Generation(2), 2));
    let t0 = world.runtime.current("files-0");
    assert_eq!(t0.revision(), Some(2), "{t0:?}");
    let g = world.generations("files-0").await;
    assert_eq!(g[0].revision, 1);
    assert_eq!(g[1].revision, 2);
    assert_eq!(g[1].source_snapshot, g[0].stop_snapshot, "the new revision starts from the stop snapshot");
    assert!(g[0].stop_snapshot.is_some());
    assert_eq!(c0.backoff.failures, 0, "a deployment stop is no crash");
    // files-1 still runs revision 1, and a crash of it is replaced on revision 1.
    let t1 = world.runtime.current("files-1");
    assert_eq!(t1.revision(), Some(1));
    let event = world.runtime.stop_by_world(&t1.arn, StopCode::EssentialContainerExited, "crash");
    ctl.on_event(&event).await.unwrap();
    assert_eq!(world.runtime.current("files-1").revision(), Some(1));
    invariants(&world).await;
}

#[tokio::test]
async fn with_when_scaled_delete_scale_in_deletes_the_data_and_scale_out_starts_empty() {
    let world = World::new();
    let ctl = up(&world, 2).await;
    let delete = |count| berth_core::service::ServiceSpec {
        when_scaled: berth_core::service::WhenScaled::Delete,
        ..fake::service(count)
    };
    ctl.set_service(delete(1));
    ctl.scale_services().await.unwrap();
    ctl.resync().await;
    invariants(&world).await;
    let c1 = world.claim("files-1").await;
    assert_eq!(c1.desired, DesiredState::Deleted);
    assert!(c1.task.is_none() && c1.volume.is_none(), "{c1:?}");
    let g = world.generations("files-1").await;
    assert!(g[0].stop_snapshot.is_some(), "the stop snapshot is still taken");
    // The sweep takes its volume and snapshots once the grace has passed.
    world.clock.advance(Duration::from_secs(3600));
    ctl.refresh_snapshots().await.unwrap();
    let (volumes, snapshots) = ctl.sweep().await.unwrap();
    assert_eq!((volumes, snapshots), (1, 1));
    assert!(world.volumes.of("files-1").is_empty());
    assert_eq!(world.claim("files-0").await.desired, DesiredState::Running, "files-0 is untouched");

    // Scaling out again starts files-1 empty, at the next generation.
    ctl.set_service(delete(2));
    ctl.scale_services().await.unwrap();
    ctl.resync().await;
    invariants(&world).await;
    let c1 = world.claim("files-1").await;
    assert_eq!(c1.generation, Generation(2));
    let g = world.generations("files-1").await;
    assert_eq!(g[1].source_snapshot, None, "a deleted claim comes back empty");
}
