//! The local runtime with container tasks, on a real engine (Podman through
//! the Docker Engine API; see `support/engine.rs`): the runtime contract
//! the process tasks keep, and what only containers have (the engine's
//! statistics, limits, commands run in the container, their labels).

#[path = "support/engine.rs"]
mod engine;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_core::contract::runtime;
use berth_core::{
    ClaimName, ContainerSpec, Generation, Health, HealthCheck, LaunchRequest, LaunchVolume, NetworkMode, Probe,
    Runtime, StopCode, TaskArn, TaskDefinition, TaskInfo, TaskStatus, VolumeId, VolumeInfo,
};
use berth_local::{HostRuntime, LocalRuntime, SupervisorConfig};
use chrono::Utc;
use engine::{busybox_image, engine};

const PATIENCE: Duration = Duration::from_secs(30);

fn runtime(dir: &std::path::Path) -> LocalRuntime {
    let mut config = SupervisorConfig::new("/nonexistent/berth", dir.join("logs"));
    config.engine = Some(engine().docker_host.clone());
    LocalRuntime::new(config)
}

/// A request for `claim` at `generation` running `script` in the busybox
/// image, on a fresh volume folder under `dir`.
fn request(dir: &std::path::Path, claim: &ClaimName, generation: Generation, script: &str) -> LaunchRequest {
    let location = dir.join("volumes").join(format!("{claim}-{generation}"));
    std::fs::create_dir_all(&location).unwrap();
    LaunchRequest {
        service: "web".into(),
        claim: claim.clone(),
        generation,
        volume: LaunchVolume::Attach(VolumeInfo {
            id: VolumeId(format!("vol-{claim}-{generation}")),
            claim: claim.clone(),
            generation: Some(generation),
            created: Utc::now(),
            source_snapshot: None,
            adopted_from: None,
            location: location.display().to_string(),
        }),
        definition: TaskDefinition {
            family: "web".into(),
            revision: 1,
            command: vec!["-c".into(), script.into()],
            env: BTreeMap::from([("GREETING".into(), "hello".into())]),
            port: 8080,
            health_check: None,
            stop_timeout: Duration::from_secs(3),
            secrets: BTreeMap::new(),
            container: Some(ContainerSpec {
                image: busybox_image().to_owned(),
                entry_point: vec!["/bin/sh".into()],
                user: None,
                working_dir: None,
                mount_path: "/data".into(),
                cpu: 256,
                memory: 128,
                network: NetworkMode::Bridge,
            }),
        },
        client_token: LaunchRequest::token_for(claim, generation),
        canary: false,
    }
}

/// A shell that leaves at once on SIGTERM (as pid 1 it gets the signal
/// only because it handles it).
const SERVE: &str = "trap 'exit 0' TERM; while true; do sleep 0.2; done";

/// Asks `probe` until it answers `Ok`, at most [`PATIENCE`]; its `Err` says
/// what it saw, for the failure message.
async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => assert!(Instant::now() < deadline, "{what}: still {seen}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn until(runtime: &LocalRuntime, arn: &TaskArn, what: &str, done: impl Fn(&TaskInfo) -> bool) -> TaskInfo {
    eventually(what, async || {
        let task = runtime.tasks().await.unwrap().into_iter().find(|t| &t.arn == arn).expect("the task is listed");
        if done(&task) {
            Ok(task)
        } else {
            Err(format!("{task:#?}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_container_runtime_keeps_the_runtime_contract() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let launches = runtime::Launches {
        request: |claim: &ClaimName, generation: Generation| request(dir.path(), claim, generation, SERVE),
        pause: || tokio::time::sleep(Duration::from_millis(50)),
    };
    runtime::run_all(&runtime, &launches).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_writes_its_volume_reads_its_env_and_logs_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let claim = ClaimName::parse("box-0").unwrap();
    let script =
        "echo \"$GREETING from $BERTH_CLAIM on $PORT\" > $STORAGE_PATH/said; id -u; echo to-stderr >&2; exit 3";
    let r = request(dir.path(), &claim, Generation(1), script);
    let task = runtime.run_task(&r).await.unwrap();
    let stopped = until(&runtime, &task.arn, "the container exits", TaskInfo::is_stopped).await;
    assert_eq!(stopped.stop_code, Some(StopCode::EssentialContainerExited), "{stopped:#?}");
    let said = std::fs::read_to_string(dir.path().join("volumes/box-0-1/said")).unwrap();
    assert_eq!(said, "hello from box-0 on 8080\n", "the container's port is the definition's on its own network");
    // STOPPED waits only briefly for the end of the engine's log stream.
    eventually("stdout and stderr are in the log", async || {
        let log = std::fs::read_to_string(runtime.log_path(&task.arn).unwrap()).unwrap_or_default();
        if log.contains("10001") && log.contains("to-stderr") {
            Ok(())
        } else {
            Err(format!("{log:?}"))
        }
    })
    .await;
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir.path().join("volumes/box-0-1")).unwrap());
    assert_eq!(owner, 10001, "the volume is handed to the image's user");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_ignoring_sigterm_is_killed_after_the_stop_timeout_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let claim = ClaimName::parse("stubborn-0").unwrap();
    let r = request(dir.path(), &claim, Generation(1), "trap '' TERM; while true; do sleep 0.2; done");
    let task = runtime.run_task(&r).await.unwrap();
    until(&runtime, &task.arn, "RUNNING", |t| t.last_status == TaskStatus::Running).await;
    let asked = Instant::now();
    runtime.stop_task(&task.arn, StopCode::UserInitiated, "test").await.unwrap();
    let stopped = runtime.wait_stopped(&task.arn).await.unwrap();
    assert!(asked.elapsed() >= Duration::from_secs(3), "SIGKILL comes only after the stop timeout");
    assert_eq!(stopped.stop_code, Some(StopCode::UserInitiated));
    // Removed just after STOPPED is reported.
    eventually("a stopped task's container is removed", async || {
        let left = engine().containers_of(&dir.path().join("logs"));
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_size_is_enforced_and_usage_comes_from_the_engines_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let claim = ClaimName::parse("busy-0").unwrap();
    // Busy on one core.
    let r = request(dir.path(), &claim, Generation(1), "while true; do :; done");
    let task = runtime.run_task(&r).await.unwrap();
    until(&runtime, &task.arn, "RUNNING", |t| t.last_status == TaskStatus::Running).await;
    let name = format!("berth-{}", task.arn.short());
    let limits = engine()
        .podman()
        .args([
            "inspect",
            "--format",
            "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}}",
            &name,
        ])
        .output()
        .unwrap();
    let limits = String::from_utf8_lossy(&limits.stdout);
    assert_eq!(limits.trim(), "134217728 134217728 250000000", "128 MiB, no swap, 256 CPU units = 1/4 core");
    let first = runtime.usage(&task.arn).await.unwrap().expect("a running container has a reading");
    let later = eventually("the busy container's CPU time grows", async || {
        let later = runtime.usage(&task.arn).await.unwrap().expect("a reading");
        if later.cpu_time > first.cpu_time + Duration::from_millis(100) {
            Ok(later)
        } else {
            Err(format!("{first:?} → {later:?}"))
        }
    })
    .await;
    assert!(later.memory_bytes > 0 && later.memory_bytes <= 128 << 20, "memory within the limit: {later:?}");
    runtime.stop_task(&task.arn, StopCode::UserInitiated, "test").await.unwrap();
    runtime.wait_stopped(&task.arn).await.unwrap();
    assert_eq!(runtime.usage(&task.arn).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_health_check_command_runs_in_the_container() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let claim = ClaimName::parse("checked-0").unwrap();
    let mut r = request(dir.path(), &claim, Generation(1), &format!("touch /tmp/ready; {SERVE}"));
    // /tmp/ready exists only inside the container: a check run on the host fails.
    r.definition.health_check = Some(HealthCheck {
        probe: Probe::Command(vec!["CMD-SHELL".into(), "test -e /tmp/ready && test \"$GREETING\" = hello".into()]),
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(5),
        retries: 2,
        start_period: Duration::ZERO,
        start_interval: berth_core::task::HEALTH_START_INTERVAL,
    });
    let task = runtime.run_task(&r).await.unwrap();
    until(&runtime, &task.arn, "HEALTHY", |t| t.health == Health::Healthy).await;
    runtime.stop_task(&task.arn, StopCode::UserInitiated, "test").await.unwrap();
    runtime.wait_stopped(&task.arn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_the_engine_lacks_fails_to_start_and_no_engine_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let claim = ClaimName::parse("missing-0").unwrap();
    let mut r = request(dir.path(), &claim, Generation(1), SERVE);
    r.definition.container.as_mut().unwrap().image = "localhost/no-such-image:1".into();
    let task = runtime.run_task(&r).await.unwrap();
    let stopped = until(&runtime, &task.arn, "STOPPED", TaskInfo::is_stopped).await;
    assert_eq!(stopped.stop_code, Some(StopCode::TaskFailedToStart));
    let reason = stopped.stopped_reason.unwrap();
    assert!(reason.starts_with("CannotPullContainerError") && reason.contains("no-such-image"), "{reason}");

    let err = berth_local::supervisor::engine::Engine::connect(Some("unix:///nonexistent/engine.sock"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unix:///nonexistent/engine.sock") && err.contains("podman system service"), "{err}");
    let mut config = SupervisorConfig::new("/nonexistent/berth", dir.path().join("logs2"));
    config.engine = Some("unix:///nonexistent/engine.sock".into());
    let nowhere = LocalRuntime::new(config);
    let err = nowhere.prepare(std::slice::from_ref(&r.definition)).await.unwrap_err().to_string();
    assert!(err.starts_with("no container engine answered"), "{err}");
    assert_eq!(nowhere.prepare(&[]).await.unwrap(), 0, "without container services no engine is needed");
}
