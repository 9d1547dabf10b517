//! The local supervisor with real processes: lifecycle, events, stops,
//! crashes, health checks and logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_core::{
    ClaimName, Generation, Health, HealthCheck, LaunchRequest, LaunchVolume, Probe, Runtime, StopCode, TaskArn,
    TaskDefinition, TaskEvents, TaskInfo, TaskStateChange, TaskStatus, VolumeId, VolumeInfo,
};
use berth_local::{HostRuntime, LocalRuntime, SupervisorConfig};
use chrono::Utc;
use tempfile::TempDir;

/// Generous bound for anything the tests wait for.
const PATIENCE: Duration = Duration::from_secs(20);

/// A supervisor logging to a temporary folder, subscribed from the start.
struct Setup {
    dir: TempDir,
    runtime: LocalRuntime,
    events: berth_local::supervisor::Events,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let runtime = LocalRuntime::new(SupervisorConfig::new("/nonexistent/berth", dir.path().join("logs")));
    let events = runtime.subscribe();
    Setup { dir, runtime, events }
}

impl Setup {
    /// A launch request for generation 1 of `claim`, running `command` on a
    /// fresh volume folder.
    fn request(&self, claim: &str, command: &[&str]) -> LaunchRequest {
        let claim = ClaimName::parse(claim).unwrap();
        let location = self.dir.path().join("volumes").join(claim.as_str());
        std::fs::create_dir_all(&location).unwrap();
        LaunchRequest {
            service: "web".into(),
            claim: claim.clone(),
            generation: Generation(1),
            volume: LaunchVolume::Attach(VolumeInfo {
                id: VolumeId(format!("vol-{claim}")),
                claim: claim.clone(),
                generation: Some(Generation(1)),
                created: Utc::now(),
                source_snapshot: None,
                adopted_from: None,
                location: location.to_string_lossy().into_owned(),
            }),
            definition: TaskDefinition {
                family: "web".into(),
                revision: 3,
                command: command.iter().map(|s| s.to_string()).collect(),
                env: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
                port: 5000,
                health_check: None,
                stop_timeout: Duration::from_secs(10),
                secrets: Default::default(),
                container: None,
            },
            client_token: LaunchRequest::token_for(&claim, Generation(1)),
            canary: false,
        }
    }

    /// The events of `arn` up to the first one `done` accepts, each checked
    /// to survive a round trip through JSON and `TaskStateChange::parse`.
    async fn events_until(&mut self, arn: &TaskArn, done: impl Fn(&TaskStateChange) -> bool) -> Vec<TaskStateChange> {
        let mut seen = Vec::new();
        let collect = async {
            loop {
                let event = self.events.next().await.expect("the event stream closed").expect("the event stream lags");
                let event = TaskStateChange::parse(&serde_json::to_string(&event).unwrap()).unwrap();
                if event.detail.task_arn == arn.0 {
                    let finished = done(&event);
                    seen.push(event);
                    if finished {
                        return;
                    }
                }
            }
        };
        if tokio::time::timeout(PATIENCE, collect).await.is_err() {
            panic!("timed out waiting for an event of {arn}; saw {:?}", statuses(&seen));
        }
        seen
    }

    async fn until_stopped(&mut self, arn: &TaskArn) -> Vec<TaskStateChange> {
        self.events_until(arn, |e| e.detail.is_stopped()).await
    }

    async fn task(&self, arn: &TaskArn) -> TaskInfo {
        self.runtime.tasks().await.unwrap().into_iter().find(|t| &t.arn == arn).expect("task is listed")
    }
}

fn statuses(events: &[TaskStateChange]) -> Vec<String> {
    events.iter().map(|e| e.detail.last_status.as_ref().map_or("-", |s| s.as_str()).to_owned()).collect()
}

fn versions(events: &[TaskStateChange]) -> Vec<u64> {
    events.iter().map(|e| e.detail.version.unwrap()).collect()
}

fn exit_code(event: &TaskStateChange) -> Option<i64> {
    event.detail.containers.first().and_then(|c| c.exit_code)
}

/// The folder of a request's volume.
fn location(r: &LaunchRequest) -> &str {
    &r.volume.attached().expect("made beforehand").location
}

async fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn health_check(probe: Probe, retries: u32) -> Option<HealthCheck> {
    Some(HealthCheck {
        probe,
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(2),
        retries,
        start_period: Duration::ZERO,
        start_interval: berth_core::task::HEALTH_START_INTERVAL,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_walks_to_running_with_one_event_per_state() {
    let mut s = setup();
    let task = s.runtime.run_task(&s.request("web-0", &["sleep", "30"])).await.unwrap();
    assert_eq!(task.last_status, TaskStatus::Running);
    assert_eq!(task.desired_status, TaskStatus::Running);
    assert_eq!(task.version, 4);
    assert!(s.runtime.pid(&task.arn).is_some() && task.started_at.is_some());
    let id = task.arn.short();
    assert_eq!(task.arn.0, format!("arn:aws:ecs:local:000000000000:task/berth/{id}"));
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
    assert!(task.endpoint.as_deref().unwrap().starts_with("127.0.0.1:"));

    let events = s.events_until(&task.arn, |e| e.detail.last_status == Some(TaskStatus::Running)).await;
    assert_eq!(statuses(&events), ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING"]);
    assert_eq!(versions(&events), [1, 2, 3, 4]);
    let running = &events[3];
    assert_eq!(running.detail_type.as_deref(), Some("ECS Task State Change"));
    assert_eq!(running.resources, std::slice::from_ref(&task.arn.0));
    let d = &running.detail;
    assert_eq!(d.desired_status, Some(TaskStatus::Running));
    assert_eq!(d.group.as_deref(), Some("service:web"));
    assert_eq!(d.started_by.as_deref(), Some("berth/web-0"));
    assert_eq!(d.cluster_arn.as_deref(), Some("arn:aws:ecs:local:000000000000:cluster/berth"));
    assert_eq!(d.task_definition_arn.as_deref(), Some("arn:aws:ecs:local:000000000000:task-definition/web:3"));
    assert_eq!(d.ebs_volume_id(), Some("vol-web-0"));
    assert!(d.created_at.is_some() && d.started_at.is_some() && d.stopped_at.is_none());
    assert_eq!(d.containers[0].last_status.as_deref(), Some("RUNNING"));
    assert!(events.iter().all(|e| e.detail.desired_status == Some(TaskStatus::Running)));

    assert_eq!(s.task(&task.arn).await.last_status, TaskStatus::Running);
    s.runtime.stop_task(&task.arn, StopCode::UserInitiated, "test over").await.unwrap();
    s.until_stopped(&task.arn).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_environment_reaches_the_process() {
    let s = setup();
    let script = r#"echo "$STORAGE_PATH $PORT $BERTH_CLAIM $BERTH_GENERATION $BERTH_TASK_ARN $GREETING" > "$STORAGE_PATH/env"; sleep 30"#;
    let request = s.request("web-0", &["sh", "-c", script]);
    let task = s.runtime.run_task(&request).await.unwrap();
    let text = wait_for_file(&Path::new(location(&request)).join("env")).await;
    let port = task.endpoint.as_deref().unwrap().rsplit(':').next().unwrap();
    let expected = format!("{} {port} web-0 1 {} hello\n", location(&request), task.arn);
    assert_eq!(text, expected);
    s.runtime.stop_task(&task.arn, StopCode::UserInitiated, "test over").await.unwrap();
}

/// Issue 20, defect 2: a token given in a service's `env` was stored in
/// the ledger in clear. A secret is given by where it is and read as the
/// task starts; one that cannot be read fails the start, naming where.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_read_at_launch_and_an_unreadable_one_fails_the_start() {
    let mut s = setup();
    let secret_file = s.dir.path().join("token");
    std::fs::write(&secret_file, "from-a-file\n").unwrap();
    let script = r#"echo "$FROM_FILE $FROM_ENV" > "$STORAGE_PATH/secrets"; sleep 30"#;
    let mut request = s.request("web-0", &["sh", "-c", script]);
    request.definition.secrets = BTreeMap::from([
        ("FROM_FILE".to_string(), format!("file:{}", secret_file.display())),
        // A variable every test process has, standing in for one berth up is given.
        ("FROM_ENV".to_string(), "env:PATH".to_string()),
    ]);
    let task = s.runtime.run_task(&request).await.unwrap();
    let text = wait_for_file(&Path::new(location(&request)).join("secrets")).await;
    assert_eq!(text, format!("from-a-file {}\n", std::env::var("PATH").unwrap()));
    s.runtime.stop_task(&task.arn, StopCode::UserInitiated, "test over").await.unwrap();
    s.until_stopped(&task.arn).await;

    let mut missing = s.request("web-1", &["sleep", "30"]);
    missing.definition.secrets = BTreeMap::from([("TOKEN".to_string(), "env:BERTH_TEST_NO_SUCH_VARIABLE".to_string())]);
    let task = s.runtime.run_task(&missing).await.unwrap();
    assert_eq!(task.last_status, TaskStatus::Stopped);
    assert_eq!(task.stop_code, Some(StopCode::TaskFailedToStart));
    let reason = task.stopped_reason.unwrap();
    assert!(reason.contains("secret TOKEN") && reason.contains("BERTH_TEST_NO_SUCH_VARIABLE"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_client_token_starts_one_task() {
    let s = setup();
    let request = s.request("web-0", &["sleep", "30"]);
    let (a, b) = tokio::join!(s.runtime.run_task(&request), s.runtime.run_task(&request));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.arn, b.arn);
    let c = s.runtime.run_task(&request).await.unwrap();
    assert_eq!(c.arn, a.arn);
    assert_eq!(s.runtime.tasks().await.unwrap().len(), 1);

    let mut other = s.request("web-1", &["sleep", "30"]);
    other.client_token = "another".into();
    let d = s.runtime.run_task(&other).await.unwrap();
    assert_ne!(d.arn, a.arn);
    assert_ne!(d.endpoint, a.endpoint, "each task has its own port");
    for t in [&a, &d] {
        s.runtime.stop_task(&t.arn, StopCode::UserInitiated, "test over").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_task_sends_sigterm_and_reports_the_stop_code() {
    let mut s = setup();
    let script = r#"trap 'echo terminated > "$STORAGE_PATH/term"; exit 0' TERM; echo > "$STORAGE_PATH/ready"; while true; do sleep 0.1; done"#;
    let request = s.request("web-0", &["sh", "-c", script]);
    let task = s.runtime.run_task(&request).await.unwrap();
    s.events_until(&task.arn, |e| e.detail.last_status == Some(TaskStatus::Running)).await;
    wait_for_file(&Path::new(location(&request)).join("ready")).await;

    // Concurrent and repeated stops are one stop; the first code wins.
    let (a, b) = tokio::join!(
        s.runtime.stop_task(&task.arn, StopCode::SpotInterruption, "spot says bye"),
        s.runtime.stop_task(&task.arn, StopCode::SpotInterruption, "spot says bye"),
    );
    a.unwrap();
    b.unwrap();
    let events = s.until_stopped(&task.arn).await;
    assert_eq!(statuses(&events), ["DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"]);
    assert_eq!(versions(&events), [5, 6, 7, 8]);
    assert!(events.iter().all(|e| e.detail.desired_status == Some(TaskStatus::Stopped)));
    let stopped = &events[3].detail;
    assert_eq!(stopped.stop_code, Some(StopCode::SpotInterruption));
    assert_eq!(stopped.stopped_reason.as_deref(), Some("spot says bye"));
    assert!(stopped.stopping_at.is_some() && stopped.stopped_at.is_some());
    assert_eq!(exit_code(&events[3]), Some(0), "the trap ran and exited 0");
    assert_eq!(std::fs::read_to_string(Path::new(location(&request)).join("term")).unwrap(), "terminated\n");

    let info = s.task(&task.arn).await;
    assert!(info.is_stopped());
    assert_eq!(info.stop_code, Some(StopCode::SpotInterruption));
    assert_eq!(info.version, 8);

    // Stopping it again, or a task nobody knows, succeeds and changes nothing.
    s.runtime.stop_task(&task.arn, StopCode::UserInitiated, "again").await.unwrap();
    let unknown = TaskArn("arn:aws:ecs:local:000000000000:task/berth/0123456789abcdef0123456789abcdef".into());
    s.runtime.stop_task(&unknown, StopCode::UserInitiated, "who").await.unwrap();
    assert_eq!(s.task(&task.arn).await.stop_code, Some(StopCode::SpotInterruption));
    assert_eq!(s.runtime.wait_stopped(&task.arn).await.unwrap().version, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_ignoring_sigterm_is_killed_after_the_stop_timeout() {
    let mut s = setup();
    let script = r#"trap '' TERM; echo > "$STORAGE_PATH/ready"; while true; do sleep 0.1; done"#;
    let mut request = s.request("web-0", &["sh", "-c", script]);
    request.definition.stop_timeout = Duration::from_millis(300);
    let task = s.runtime.run_task(&request).await.unwrap();
    wait_for_file(&Path::new(location(&request)).join("ready")).await;
    let asked = Instant::now();
    s.runtime.stop_task(&task.arn, StopCode::ServiceSchedulerInitiated, "scale in").await.unwrap();
    let events = s.until_stopped(&task.arn).await;
    assert!(asked.elapsed() < PATIENCE);
    let stopped = events.last().unwrap();
    assert_eq!(stopped.detail.stop_code, Some(StopCode::ServiceSchedulerInitiated));
    assert_eq!(exit_code(stopped), Some(137), "SIGKILL is 128 + 9");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_exiting_on_its_own_is_an_essential_container_exit() {
    let mut s = setup();
    let task = s.runtime.run_task(&s.request("web-0", &["sh", "-c", "sleep 0.2; exit 3"])).await.unwrap();
    let events = s.until_stopped(&task.arn).await;
    assert_eq!(
        statuses(&events),
        ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "STOPPING", "DEPROVISIONING", "STOPPED"]
    );
    assert_eq!(versions(&events), [1, 2, 3, 4, 5, 6, 7]);
    let stopped = events.last().unwrap();
    assert_eq!(stopped.detail.stop_code, Some(StopCode::EssentialContainerExited));
    assert_eq!(stopped.detail.stopped_reason.as_deref(), Some("Essential container in task exited"));
    assert_eq!(stopped.detail.desired_status, Some(TaskStatus::Stopped));
    assert_eq!(exit_code(stopped), Some(3));
    assert_eq!(stopped.detail.containers[0].last_status.as_deref(), Some("STOPPED"));
    assert!(stopped.detail.execution_stopped_at.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_from_outside_is_exit_code_137() {
    let mut s = setup();
    let task = s.runtime.run_task(&s.request("web-0", &["sleep", "30"])).await.unwrap();
    let pid = s.runtime.pid(&task.arn).unwrap();
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    let stopped = s.until_stopped(&task.arn).await.pop().unwrap();
    assert_eq!(stopped.detail.stop_code, Some(StopCode::EssentialContainerExited));
    assert_eq!(exit_code(&stopped), Some(137));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_that_does_not_exist_fails_to_start() {
    let mut s = setup();
    let task = s.runtime.run_task(&s.request("web-0", &["/nonexistent/program", "serve"])).await.unwrap();
    assert_eq!(task.last_status, TaskStatus::Stopped);
    assert_eq!(task.stop_code, Some(StopCode::TaskFailedToStart));
    let reason = task.stopped_reason.as_deref().unwrap();
    assert!(reason.contains("/nonexistent/program") && reason.contains("No such file"), "{reason}");
    let events = s.until_stopped(&task.arn).await;
    assert_eq!(statuses(&events), ["PROVISIONING", "PENDING", "ACTIVATING", "STOPPED"]);
    assert_eq!(versions(&events), [1, 2, 3, 4]);
    assert_eq!(events[3].detail.stop_code, Some(StopCode::TaskFailedToStart));

    // The default program (`<berth> serve`) fails the same way when missing.
    let mut request = s.request("web-1", &[]);
    request.client_token = "default-program".into();
    let task = s.runtime.run_task(&request).await.unwrap();
    assert_eq!(task.stop_code, Some(StopCode::TaskFailedToStart));
    assert!(task.stopped_reason.as_deref().unwrap().contains("/nonexistent/berth"));
}

fn http_server(s: &Setup, claim: &str, path: &str, retries: u32) -> LaunchRequest {
    // exec: the server is the task's process, not a shell around it.
    let mut request = s.request(
        claim,
        &["sh", "-c", r#"exec python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$STORAGE_PATH""#],
    );
    request.definition.health_check = health_check(Probe::Http { path: path.into() }, retries);
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_health_check_makes_a_serving_task_healthy() {
    let mut s = setup();
    let mut request = http_server(&s, "web-0", "/", 3);
    // Failures while python starts fall in the start period.
    request.definition.health_check.as_mut().unwrap().start_period = Duration::from_secs(10);
    let task = s.runtime.run_task(&request).await.unwrap();
    assert!(task.has_health_check && !task.is_ready());
    let events = s.events_until(&task.arn, |e| e.detail.health_status.as_deref().is_some_and(|h| h != "UNKNOWN")).await;
    let healthy = events.last().unwrap();
    assert_eq!(healthy.detail.health_status.as_deref(), Some("HEALTHY"));
    assert_eq!(healthy.detail.containers[0].health_status.as_deref(), Some("HEALTHY"));
    assert_eq!(healthy.detail.last_status, Some(TaskStatus::Running));
    assert_eq!(healthy.detail.version, Some(5), "a health change is a change of the task");
    let info = s.task(&task.arn).await;
    assert_eq!(info.health, Health::Healthy);
    assert!(info.is_ready());
    s.runtime.stop_task(&task.arn, StopCode::UserInitiated, "test over").await.unwrap();
    s.until_stopped(&task.arn).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_health_check_on_a_missing_path_makes_the_task_unhealthy() {
    let mut s = setup();
    let task = s.runtime.run_task(&http_server(&s, "web-0", "/nope", 3)).await.unwrap();
    let events = s.events_until(&task.arn, |e| e.detail.health_status.as_deref() == Some("UNHEALTHY")).await;
    assert!(events.iter().all(|e| e.detail.health_status.as_deref() != Some("HEALTHY")));
    let info = s.task(&task.arn).await;
    assert_eq!(info.health, Health::Unhealthy);
    assert_eq!(info.last_status, TaskStatus::Running, "the supervisor reports, it does not stop");
    assert!(!info.is_ready());
    s.runtime.stop_task(&task.arn, StopCode::UserInitiated, "test over").await.unwrap();
    s.until_stopped(&task.arn).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_health_check_turns_unhealthy_after_its_retries() {
    let mut s = setup();
    let mut request = s.request("web-0", &["sleep", "30"]);
    // The probe runs without a shell, in the task's environment.
    let probe = Probe::Command(vec!["sh".into(), "-c".into(), r#"test ! -e "$STORAGE_PATH/sick""#.into()]);
    request.definition.health_check = health_check(probe, 3);
    let task = s.runtime.run_task(&request).await.unwrap();
    let events = s.events_until(&task.arn, |e| e.detail.health_status.as_deref() == Some("HEALTHY")).await;
    assert_eq!(events.last().unwrap().detail.version, Some(5));

    std::fs::write(PathBuf::from(location(&request)).join("sick"), "").unwrap();
    let events = s.events_until(&task.arn, |e| e.detail.health_status.as_deref() != Some("HEALTHY")).await;
    let unhealthy = events.last().unwrap();
    assert_eq!(unhealthy.detail.health_status.as_deref(), Some("UNHEALTHY"));
    assert_eq!(unhealthy.detail.version, Some(6), "no event for the failures before the last retry");
    assert_eq!(s.task(&task.arn).await.last_status, TaskStatus::Running);
    s.runtime.stop_task(&task.arn, StopCode::UserInitiated, "test over").await.unwrap();
    s.until_stopped(&task.arn).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_file_has_the_task_output() {
    let mut s = setup();
    let request = s.request("web-0", &["sh", "-c", "echo to-stdout; echo to-stderr >&2; sleep 30"]);
    let task = s.runtime.run_task(&request).await.unwrap();
    let log = s.runtime.log_path(&task.arn).unwrap();
    assert_eq!(log, s.dir.path().join("logs").join(format!("{}.log", task.arn.short())));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("to-stdout\n") && text.contains("to-stderr\n") {
            break;
        }
        assert!(Instant::now() < deadline, "log so far: {text:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.runtime.stop_task(&task.arn, StopCode::UserInitiated, "test over").await.unwrap();
    s.until_stopped(&task.arn).await;
}

/// Issue 23: with the blog's 30 s interval a task was healthy only 30 s
/// after it served. While it starts it is probed at its start interval.
#[tokio::test(flavor = "multi_thread")]
async fn a_starting_task_is_probed_at_its_start_interval_not_its_interval() {
    let mut s = setup();
    let mut request = http_server(&s, "web-0", "/", 3);
    let check = request.definition.health_check.as_mut().unwrap();
    check.interval = Duration::from_secs(30);
    check.start_period = Duration::from_secs(60);
    check.start_interval = Duration::from_millis(100);
    let task = s.runtime.run_task(&request).await.unwrap();
    // PATIENCE (20 s) is shorter than one interval: only the start interval gets here.
    let events = s.events_until(&task.arn, |e| e.detail.health_status.as_deref() == Some("HEALTHY")).await;
    assert_eq!(events.last().unwrap().detail.last_status, Some(TaskStatus::Running));
    s.runtime.stop_task(&task.arn, StopCode::UserInitiated, "test over").await.unwrap();
    s.until_stopped(&task.arn).await;
}
