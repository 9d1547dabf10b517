//! Scheduled backups through the controller over the fake world: due only
//! for a running claim whose newest snapshot is old enough, backup
//! retention before the snapshot, the policy's lock and the caller's
//! consistency on it, and stop-snapshot retention leaving scheduled
//! snapshots alone.

use berth_core::fake;

use std::time::Duration;

use berth_core::backup::{LockPolicy, Objectives, Policy, Schedule};
use berth_core::{Consistency, KeepPolicy, LockMode, SnapshotKind};
use fake::World;

fn policy(keep_last: u32) -> Policy {
    Policy {
        schedule: Schedule::Every(Duration::from_secs(3600)),
        retention: KeepPolicy { last: Some(keep_last), ..Default::default() },
        lock: Some(LockPolicy { mode: LockMode::Governance, duration: Duration::from_secs(600) }),
        replicas: Vec::new(),
        objectives: Objectives::default(),
        verify_every: None,
        verify_window: None,
    }
}

#[tokio::test]
async fn a_running_claim_is_backed_up_when_due_with_retention_first() {
    let world = World::new();
    let ctl = world.controller("c1", 1);
    ctl.scale_services().await.unwrap();
    ctl.resync().await;
    let name = World::name("files-0");
    let p = policy(2);

    let mut taken = Vec::new();
    for i in 0..4 {
        let volume = ctl.due_backup(&name, &p.schedule).await.unwrap();
        let volume = volume.unwrap_or_else(|| panic!("backup {i} is due"));
        assert_eq!(ctl.due_backup(&name, &p.schedule).await.unwrap(), Some(volume.clone()), "due until taken");
        let snap = ctl.back_up(&name, &volume, &p, Consistency::Application).await.unwrap();
        assert_eq!(snap.kind, Some(SnapshotKind::Scheduled));
        assert_eq!(snap.consistency, Some(Consistency::Application));
        assert_eq!(snap.lock.as_ref().map(|l| l.mode), Some(LockMode::Governance));
        assert_eq!(ctl.due_backup(&name, &p.schedule).await.unwrap(), None, "not due right after one");
        taken.push(snap.id);
        // Past the lock and the interval.
        world.clock.advance(Duration::from_secs(3601));
    }
    // keep_last 2, applied before each new one: the first is gone by the
    // fourth, the second by... the fourth's cleanup kept 2 of 3, then added one.
    let left: Vec<_> = world.volumes.of("files-0").into_iter().map(|s| s.id).collect();
    assert!(!left.contains(&taken[0]), "{left:?}");
    assert_eq!(left.len(), 3, "two kept by retention plus the new one: {left:?}");

    // A stop: the handoff's own retention (keep_last 10 by default in the
    // fake service) leaves the scheduled snapshots to the backup policy.
    let task = world.runtime.current("files-0");
    let event = world.runtime.stop_by_world(&task.arn, berth_core::StopCode::SpotInterruption, "spot");
    ctl.on_event(&event).await.unwrap();
    ctl.resync().await;
    let kinds: Vec<_> = world.volumes.of("files-0").into_iter().map(|s| s.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == Some(SnapshotKind::Scheduled)).count(), 3, "{kinds:?}");
    assert!(kinds.contains(&Some(SnapshotKind::OnStop)), "{kinds:?}");
}

#[tokio::test]
async fn a_parked_claim_is_never_due() {
    let world = World::new();
    let ctl = world.controller("c1", 0);
    ctl.scale_services().await.unwrap();
    ctl.resync().await;
    let due = ctl.due_backup(&World::name("files-0"), &Schedule::Every(Duration::from_secs(1))).await.unwrap();
    assert_eq!(due, None);
}

#[test]
fn scaling_never_parks_or_counts_a_fork() {
    use berth_core::ledger::ClaimRecord;
    use berth_core::service::{scale, ClaimChange};
    let now = chrono::Utc::now();
    let source = ClaimRecord::new(World::name("files-0"), "files", 0, 1, now);
    let fork = ClaimRecord::fork(World::name("files-0-copy"), &source, berth_core::SnapshotId("s".into()), now);
    assert_eq!(fork.head_snapshot, Some(berth_core::SnapshotId("s".into())));
    let claims = vec![source, fork];
    // One wanted: the source stays, the fork is left alone.
    assert!(scale(&fake::service(1), &claims, now).unwrap().is_empty());
    // None wanted: only the source is parked.
    let changes = scale(&fake::service(0), &claims, now).unwrap();
    let touched: Vec<_> = changes
        .iter()
        .map(|c| match c {
            ClaimChange::Create(c) | ClaimChange::Update(c) => c.name.to_string(),
        })
        .collect();
    assert_eq!(touched, ["files-0"]);
}
