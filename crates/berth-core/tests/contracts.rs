//! The port contracts against the in-memory fakes: the same checks the
//! local adapters and the AWS adapters on moto run.

use berth_core::fake;

use std::collections::HashMap;
use std::sync::Mutex;

use berth_core::contract::{runtime, volumes};
use berth_core::ports::{VolumeId, VolumeInfo, VolumeSource};
use berth_core::{ClaimName, Generation, LaunchRequest, LaunchVolume, SnapshotId, Volumes};
use fake::World;

#[tokio::test]
async fn the_fake_runtime_keeps_the_runtime_contract() {
    let world = World::new();
    let launches = runtime::Launches {
        request: |claim: &ClaimName, generation: Generation| LaunchRequest {
            service: "files".into(),
            claim: claim.clone(),
            generation,
            volume: LaunchVolume::Attach(world.volumes.make(claim, Some(generation), &VolumeSource::Empty)),
            definition: fake::definition(),
            client_token: LaunchRequest::token_for(claim, generation),
            canary: false,
        },
        pause: || async {},
    };
    runtime::run_all(&*world.runtime, &launches).await;
}

#[tokio::test]
async fn the_fake_volumes_keep_the_volumes_contract() {
    let world = World::new();
    // The fake holds no bytes: a marker follows a volume into its
    // snapshots and from a snapshot into the volumes restored from it.
    let markers: Mutex<HashMap<VolumeId, String>> = Mutex::default();
    let store = &world.volumes;
    let fill = volumes::Fill {
        make: |claim: ClaimName, generation: Generation, source: VolumeSource, marker: Option<String>| {
            let (store, markers) = (store, &markers);
            async move {
                let v = store.create(&claim, Some(generation), &source).await.expect("create");
                if let Some(m) = marker {
                    markers.lock().unwrap().insert(v.id.clone(), m);
                }
                v
            }
        },
        read: |v: VolumeInfo| {
            let (store, markers) = (store, &markers);
            async move {
                let markers = markers.lock().unwrap();
                if let Some(m) = markers.get(&v.id) {
                    return Some(m.clone());
                }
                let from: SnapshotId = v.source_snapshot?;
                let snapshots = store.snapshots.lock().unwrap();
                let copied = snapshots.iter().find(|s| s.id == from)?.volume.clone()?;
                markers.get(&copied).cloned()
            }
        },
    };
    volumes::run_all(&**store, &fill).await;
}
