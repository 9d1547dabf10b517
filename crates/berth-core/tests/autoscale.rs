//! Auto scaling whose count and cooldowns live in the ledger (the Lambda's
//! way), through the controller over the fake world: a busy service scales
//! out and its new claims are created, the cooldowns hold across
//! controllers (nothing in memory), a quiet one scales in by parking its
//! highest claim, and two controllers deciding on the same readings
//! change the count once.

use berth_core::fake;

use std::time::Duration;

use berth_core::autoscale::{ScalingPolicy, TaskUsage};
use berth_core::intent::DesiredState;
use berth_core::Ledger;
use fake::World;

fn busy(n: usize, cpu: f64) -> Vec<TaskUsage> {
    vec![TaskUsage { cpu_percent_of_reservation: cpu, memory_percent_of_reservation: 10.0 }; n]
}

fn policy() -> ScalingPolicy {
    ScalingPolicy { min_capacity: 2, max_capacity: 6, ..Default::default() }
}

#[tokio::test]
async fn the_count_and_cooldowns_live_in_the_service_record() {
    let world = World::new();
    let ctl = world.controller("c1", 2);
    ctl.scale_services().await.unwrap();
    ctl.resync().await;

    // 2 tasks at 140 % of a 70 % target: 4 tasks.
    let d = ctl.autoscale("files", &policy(), &busy(2, 140.0)).await.unwrap().unwrap();
    assert_eq!(d.desired, 4, "{}", d.reason);
    let record = ctl.ledger.service("files").await.unwrap().unwrap();
    assert_eq!(record.autoscaled_count, Some(4));
    assert!(record.scaling.last_scale_out.is_some());
    ctl.scale_services().await.unwrap();
    let claims = ctl.ledger.claims().await.unwrap();
    assert_eq!(claims.len(), 4, "the two new claims are created");

    // A second controller (a new Lambda instance) reads the count and the
    // scale-out cooldown from the record: still busy, but it holds.
    let other = world.controller("c2", 2);
    other.apply_service_record(&ctl.ledger.service("files").await.unwrap().unwrap());
    assert_eq!(other.services()[0].desired_count, 4, "the record's count overrides the configured 2");
    let d = other.autoscale("files", &policy(), &busy(4, 140.0)).await.unwrap().unwrap();
    assert_eq!(d.desired, 4, "cooldown from the record: {}", d.reason);
    assert!(d.reason.contains("cooldown"), "{}", d.reason);

    // Quiet, past the cooldowns: one step in (10 % of 4, at least one).
    world.clock.advance(Duration::from_secs(301));
    let d = other.autoscale("files", &policy(), &busy(4, 5.0)).await.unwrap().unwrap();
    assert_eq!(d.desired, 3, "{}", d.reason);
    other.scale_services().await.unwrap();
    let parked: Vec<_> = other
        .ledger
        .claims()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.desired == DesiredState::Parked)
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(parked, vec!["files-3".to_owned()], "scale-in parks the highest claim");
    let events = ctl.ledger.events(0, None, 100).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "autoscale").count(), 2, "one event per change");
}

#[tokio::test]
async fn two_controllers_on_the_same_readings_change_the_count_once() {
    let world = World::new();
    let a = world.controller("a", 2);
    let b = world.controller("b", 2);
    a.scale_services().await.unwrap();
    let (p, usage) = (policy(), busy(2, 140.0));
    let (x, y) = tokio::join!(a.autoscale("files", &p, &usage), b.autoscale("files", &p, &usage));
    let decided = [x.unwrap(), y.unwrap()];
    // The second either lost the compare-and-swap (None) or read the
    // first's record and held in its cooldown: one scale-out either way.
    assert_eq!(decided.iter().flatten().filter(|d| d.reason.contains("scale out")).count(), 1, "{decided:?}");
    let events = a.ledger.events(0, None, 100).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "autoscale").count(), 1, "{decided:?}");
    let record = a.ledger.service("files").await.unwrap().unwrap();
    assert_eq!(record.autoscaled_count, Some(4));
    // The loser learns the count from the record at its next look.
    let d = b.autoscale("files", &policy(), &busy(4, 70.0)).await.unwrap().unwrap();
    assert_eq!(d.desired, 4, "{}", d.reason);
}
