//! The reconciler and controller over a fake world that behaves as ECS
//! with EBS does: the runtime makes each task's volume as it starts it
//! (never `Volumes::create`), and snapshots stay pending for a while. The
//! handoff must wait for its snapshot without blocking, restore (never
//! adopt), and delete the old volume only once its snapshot is complete.

use berth_core::fake;

use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_core::controller::EventOutcome;
use berth_core::event::StopCode;
use berth_core::ledger::HandoffStep;
use berth_core::Generation;
use fake::World;

const PENDING: Duration = Duration::from_secs(300);

async fn up(world: &World) -> fake::Ctl {
    let ctl = world.controller("c1", 1);
    ctl.scale_services().await.unwrap();
    let failed = ctl.resync().await.failed;
    assert!(failed.is_empty(), "{failed:?}");
    ctl
}

#[tokio::test]
async fn the_first_launch_makes_the_volume_with_the_task() {
    let world = World::ebs(PENDING);
    let _ctl = up(&world).await;
    let c = world.claim("files-0").await;
    assert_eq!(c.generation, Generation(1));
    assert!(c.healthy_since.is_some());
    let volumes = world.volumes.volumes.lock().unwrap().clone();
    assert_eq!(volumes.len(), 1);
    assert_eq!(c.volume.as_ref(), Some(&volumes[0].id));
    assert_eq!(volumes[0].source_snapshot, None);
}

#[tokio::test]
async fn a_stop_waits_for_its_pending_snapshot_then_restores_and_drops_the_old_volume() {
    for code in [StopCode::SpotInterruption, StopCode::EssentialContainerExited, StopCode::TaskFailedToStart] {
        let world = World::ebs(PENDING);
        let ctl = up(&world).await;
        let old = world.runtime.current("files-0");
        let old_volume = world.claim("files-0").await.volume.unwrap();
        world.clock.advance(Duration::from_secs(700));
        let event = world.runtime.stop_by_world(&old.arn, code.clone(), "stopped");
        let outcome = ctl.on_event(&event).await.unwrap();
        let EventOutcome::Reconciled(_, Some(wait)) = outcome else { panic!("{code:?}: {outcome:?}") };
        assert!(wait >= Duration::from_secs(2) && wait <= Duration::from_secs(60), "{wait:?}");
        let c = world.claim("files-0").await;
        assert_eq!(c.handoff.as_ref().map(|h| h.step), Some(HandoffStep::Snapshotting), "{code:?}");
        assert_eq!(world.volumes.snapshots_taken.load(Ordering::SeqCst), 1);
        assert!(world.runtime.running().is_empty(), "{code:?}: nothing starts from a pending snapshot");

        // Still pending: passes wait and take no second snapshot.
        world.clock.advance(Duration::from_secs(60));
        ctl.resync().await;
        assert_eq!(world.volumes.snapshots_taken.load(Ordering::SeqCst), 1);
        assert!(world.runtime.running().is_empty());

        world.clock.advance(PENDING);
        let failed = ctl.resync().await.failed;
        assert!(failed.is_empty(), "{failed:?}");
        let c = world.claim("files-0").await;
        assert_eq!(c.generation, Generation(2), "{code:?}");
        assert!(c.handoff.is_none());
        assert_eq!(world.runtime.running().len(), 1);
        assert_eq!(world.volumes.snapshots_taken.load(Ordering::SeqCst), 1);
        assert_eq!(world.volumes.adopts.load(Ordering::SeqCst), 0, "EBS never adopts");
        assert_eq!(world.volumes.restores.load(Ordering::SeqCst), 1);
        let volumes = world.volumes.volumes.lock().unwrap().clone();
        assert_eq!(volumes.len(), 1, "{code:?}: the old volume went once its snapshot completed");
        assert_ne!(volumes[0].id, old_volume);
        assert_eq!(volumes[0].source_snapshot, c.head_snapshot);
        let g = world.generations("files-0").await;
        assert_eq!(g[0].stop_code, Some(code.clone()));
        assert_eq!(g[1].source_snapshot, c.head_snapshot);
    }
}

#[tokio::test]
async fn a_controller_crash_at_any_step_finishes_with_one_snapshot_and_one_replacement() {
    let points: Vec<(&str, u32)> = (1..=6).map(|n| ("write", n)).chain([("snapshot", 1), ("run", 1)]).collect();
    for (kind, n) in points {
        let world = World::ebs(Duration::from_secs(1));
        let ctl = up(&world).await;
        let t = world.runtime.current("files-0");
        let e = world.runtime.stop_by_world(&t.arn, StopCode::SpotInterruption, "spot");
        world.faults.clear();
        match kind {
            "write" => world.faults.fail_write_at.store(n, Ordering::SeqCst),
            "snapshot" => world.faults.fail_snapshot_at.store(n, Ordering::SeqCst),
            _ => world.faults.fail_run_at.store(n, Ordering::SeqCst),
        }
        let _ = ctl.on_event(&e).await;
        drop(ctl);
        // A new invocation (the Lambda keeps nothing), seconds later.
        for _ in 0..3 {
            world.clock.advance(Duration::from_secs(5));
            world.controller("c1", 1).resync().await;
        }
        let c = world.claim("files-0").await;
        assert_eq!(c.generation, Generation(2), "{kind} #{n}");
        assert!(c.handoff.is_none(), "{kind} #{n}: {:?}", c.handoff);
        assert_eq!(world.volumes.snapshots_taken.load(Ordering::SeqCst), 1, "{kind} #{n}");
        assert_eq!(world.runtime.runs.load(Ordering::SeqCst), 2, "{kind} #{n}");
        assert_eq!(world.volumes.volumes.lock().unwrap().len(), 1, "{kind} #{n}: no orphaned volume");
    }
}
