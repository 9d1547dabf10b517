//! The port contracts against the local adapters: the process supervisor
//! with real processes, and directory volumes on a real restic-format
//! repository. The same checks run against the fakes and the AWS adapters.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use berth_core::contract::{runtime, volumes};
use berth_core::ports::{VolumeInfo, VolumeSource};
use berth_core::{ClaimName, Generation, LaunchRequest, LaunchVolume, TaskDefinition, Volumes};
use berth_local::{LocalRuntime, LocalVolumes, StateDir, SupervisorConfig};
use berth_repo::{Progress, Repo};

#[tokio::test(flavor = "multi_thread")]
async fn the_process_supervisor_keeps_the_runtime_contract() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = LocalRuntime::new(SupervisorConfig::new("/nonexistent/berth", dir.path().join("logs")));
    let launches = runtime::Launches {
        request: |claim: &ClaimName, generation: Generation| {
            let location = dir.path().join("volumes").join(format!("{claim}-{generation}"));
            std::fs::create_dir_all(&location).unwrap();
            LaunchRequest {
                service: "web".into(),
                claim: claim.clone(),
                generation,
                volume: LaunchVolume::Attach(VolumeInfo {
                    id: berth_core::VolumeId(format!("vol-{claim}-{generation}")),
                    claim: claim.clone(),
                    generation: Some(generation),
                    created: chrono::Utc::now(),
                    source_snapshot: None,
                    adopted_from: None,
                    location: location.display().to_string(),
                }),
                definition: TaskDefinition {
                    family: "web".into(),
                    revision: 1,
                    command: vec!["sleep".into(), "60".into()],
                    env: BTreeMap::new(),
                    port: 5000,
                    health_check: None,
                    stop_timeout: Duration::from_secs(5),
                    secrets: BTreeMap::new(),
                    container: None,
                },
                client_token: LaunchRequest::token_for(claim, generation),
                canary: false,
            }
        },
        pause: || tokio::time::sleep(Duration::from_millis(25)),
    };
    runtime::run_all(&supervisor, &launches).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_volumes_keep_the_volumes_contract() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("state"));
    let repo = Repo::open_or_init(state.repository().to_str().unwrap(), "test-password", Progress::Hidden).unwrap();
    let store = LocalVolumes::with_repo(&state, repo).unwrap();
    let fill = volumes::Fill {
        make: |claim: ClaimName, generation: Generation, source: VolumeSource, marker: Option<String>| {
            let store = &store;
            async move {
                let v = store.create(&claim, Some(generation), &source).await.expect("create a volume");
                if let Some(m) = marker {
                    std::fs::write(Path::new(&v.location).join("marker"), m).unwrap();
                }
                v
            }
        },
        read: |v: VolumeInfo| async move { std::fs::read_to_string(Path::new(&v.location).join("marker")).ok() },
    };
    volumes::run_all(&store, &fill).await;
}
