//! The local supervisor: berth's local [`Runtime`], running tasks as child
//! processes.
//!
//! A *task* here is one child process with ECS's lifecycle. Starting one
//! walks PROVISIONING → PENDING → ACTIVATING → RUNNING; stopping one walks
//! DEACTIVATING → STOPPING (SIGTERM, then SIGKILL after the definition's
//! stop timeout) → DEPROVISIONING → STOPPED. Every change is broadcast as an
//! ECS `Task State Change` event whose `detail.version` grows by one, so the
//! local controller consumes exactly what EventBridge delivers on AWS.
//!
//! Each task gets a free port on the loopback address and its environment:
//! the definition's variables plus `STORAGE_PATH` (its volume folder),
//! `PORT`, `BERTH_TASK_ARN`, `BERTH_CLAIM` and `BERTH_GENERATION`. Its
//! output is appended to `<logs>/<task-id>.log`. Health checks run as the
//! definition says and are reported, never acted on. Tasks die with the
//! supervisor (see `process` and `spawner`).

mod config;
mod container;
pub mod engine;
mod events;
mod health;
mod launch;
pub(crate) mod leftovers;
mod lifecycle;
mod names;
mod oom;
mod probe;
mod process;
mod spawner;
mod table;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use berth_core::autoscale::UsageSample;
use berth_core::ports::VolumeInfo;
use berth_core::{
    Health, LaunchRequest, PortError, Runtime, StopCode, TaskArn, TaskDefinition, TaskEvents, TaskInfo,
    TaskStateChange, TaskStatus,
};
use chrono::Utc;
use tokio::sync::{broadcast, oneshot, watch};

pub use config::SupervisorConfig;

use crate::host::{HostError, HostRuntime};
use engine::Engine;
use table::{Shared, TaskRecord};

/// The local supervisor. Cloning it gives another handle on the same tasks.
#[derive(Clone)]
pub struct LocalRuntime {
    shared: Arc<Shared>,
}

impl LocalRuntime {
    pub fn new(config: SupervisorConfig) -> Self {
        Self { shared: Arc::new(Shared::new(config)) }
    }

    pub fn config(&self) -> &SupervisorConfig {
        &self.shared.config
    }

    /// The task a client token started, if any.
    fn by_token(&self, token: &str) -> Option<TaskInfo> {
        let table = self.shared.lock();
        table.tokens.get(token).and_then(|arn| table.tasks.get(arn)).map(|r| r.info.clone())
    }

    /// The record of a new task for `request`, in no state yet.
    ///
    /// `engine` is the container engine of a container task, when one answered.
    fn record(
        &self,
        request: &LaunchRequest,
        volume: &VolumeInfo,
        id: &str,
        port: u16,
        engine: Option<&Engine>,
    ) -> TaskRecord {
        let config = &self.shared.config;
        let definition = &request.definition;
        let arn = names::task_arn(config, id);
        let definition_arn = names::definition_arn(config, &definition.family, definition.revision);
        let env = match &definition.container {
            Some(spec) => {
                let host_loopback = engine.and_then(|e| e.own_network().host_loopback);
                container::task_env(config, request, spec, &arn, port, host_loopback.as_deref())
            }
            None => process::task_env(config, request, volume, &arn, port),
        };
        TaskRecord {
            info: TaskInfo {
                arn,
                // A canary is no task of its service or claim (see LaunchRequest::canary).
                service: (!request.canary).then(|| request.service.clone()),
                claim: (!request.canary).then(|| request.claim.clone()),
                generation: Some(request.generation),
                last_status: TaskStatus::Provisioning,
                desired_status: TaskStatus::Running,
                health: Health::Unknown,
                has_health_check: definition.health_check.is_some(),
                stop_code: None,
                stopped_reason: None,
                created_at: Utc::now(),
                started_at: None,
                stopped_at: None,
                version: 0,
                endpoint: Some(SocketAddr::new(config.listen_host, port).to_string()),
                definition: Some(definition_arn.clone()),
            },
            client_token: request.client_token.clone(),
            group: match request.canary {
                true => format!("canary:{}", request.claim),
                false => format!("service:{}", request.service),
            },
            started_by: format!("berth/{}", request.claim),
            definition_arn,
            container: definition.family.clone(),
            volume: volume.id.clone(),
            argv: match definition.container {
                Some(_) => definition.command.clone(),
                None => process::argv(config, definition),
            },
            env,
            port,
            log_path: config.logs.join(format!("{id}.log")),
            pid: None,
            engine_id: None,
            stop_signal: "TERM".into(),
            pull_started_at: None,
            pull_stopped_at: None,
            stopping_at: None,
            execution_stopped_at: None,
            exit_code: None,
            container_reason: None,
            exited: false,
            leaving: watch::Sender::new(false),
            status: watch::Sender::new(TaskStatus::Provisioning),
        }
    }
}

impl Runtime for LocalRuntime {
    /// Starts a task and returns it RUNNING (or STOPPED with
    /// TaskFailedToStart when its process cannot be spawned). A client
    /// token seen before returns that token's task, in whatever state it is.
    async fn run_task(&self, request: &LaunchRequest) -> Result<TaskInfo, PortError> {
        if let Some(info) = self.by_token(&request.client_token) {
            return Ok(info);
        }
        let Some(volume) = request.volume.attached() else {
            return Err(PortError::permanent("berth up starts a task only on a volume made before it"));
        };
        let shared = &self.shared;
        let host = shared.config.listen_host;
        let port = names::free_port(host, &shared.ports_in_use())
            .map_err(|e| PortError::retryable(format!("no free port on {host} for a task: {e}")))?;
        // A container task's environment depends on its engine's networks.
        let engine = match &request.definition.container {
            Some(_) => Some(shared.engine().await.cloned()),
            None => None,
        };
        let found = engine.as_ref().and_then(|e| e.as_ref().ok());
        let mut record = self.record(request, volume, &names::task_id(), port, found);
        let arn = record.info.arn.clone();
        // Read as the task starts and kept only in memory: never in the
        // ledger, an event or a log line.
        let mut unreadable = None;
        for (name, from) in &request.definition.secrets {
            match crate::secrets::read_secret(from) {
                Ok(value) => {
                    record.env.insert(name.clone(), value);
                }
                Err(e) => unreadable = Some(format!("ResourceInitializationError: secret {name}: {e}")),
            }
        }
        let (argv, env, log_path) = (record.argv.clone(), record.env.clone(), record.log_path.clone());
        {
            let mut table = shared.lock();
            if let Some(existing) = table.tokens.get(&request.client_token) {
                return Ok(table.tasks[existing].info.clone());
            }
            table.tokens.insert(request.client_token.clone(), arn.clone());
            let record = table.tasks.entry(arn.clone()).or_insert(record);
            shared.advance(record, TaskStatus::Provisioning);
        }
        if let Some(reason) = unreadable {
            return shared.fail_to_start(&arn, reason).ok_or_else(|| PortError::retryable("task vanished"));
        }
        tracing::info!(task = %arn, claim = %request.claim, generation = %request.generation, ?argv, "starting task");
        if let (Some(spec), Some(engine)) = (&request.definition.container, engine) {
            let engine = match engine {
                Ok(engine) => engine,
                Err(e) => {
                    let reason = format!("CannotStartContainerError: {e}");
                    return shared.fail_to_start(&arn, reason).ok_or_else(|| PortError::retryable("task vanished"));
                }
            };
            let start = container::Launch {
                arn: arn.clone(),
                spec: spec.clone(),
                name: format!("berth-{}", arn.short()),
                command: argv,
                labels: container::labels(&shared.config, request, &arn),
                env,
                volume: volume.location.clone(),
                container_port: container::container_port(spec, request.definition.port, port),
                host_port: port,
                log_path,
                stop_timeout: request.definition.stop_timeout,
                health_check: request.definition.health_check.clone(),
                addr: SocketAddr::new(host, port),
            };
            let shared = shared.clone();
            // Spawned: dropping this future does not stop the launch.
            let launched = tokio::spawn(async move { container::launch(&shared, &engine, start).await });
            return launched.await.unwrap_or_else(|e| Err(PortError::retryable(format!("the start of {arn}: {e}"))));
        }

        let start = launch::Launch {
            arn: arn.clone(),
            argv,
            env,
            log_path,
            stop_timeout: request.definition.stop_timeout,
            health_check: request.definition.health_check.clone(),
            addr: SocketAddr::new(host, port),
        };
        let (done, result) = oneshot::channel();
        let job_shared = shared.clone();
        let submitted = tokio::runtime::Handle::try_current().map_err(io::Error::other).and_then(|runtime| {
            spawner::submit(move || {
                let _context = runtime.enter();
                let _ = done.send(launch::launch(&job_shared, start));
            })
        });
        if let Err(e) = submitted {
            let reason = format!("CannotStartContainerError: cannot start a process: {e}");
            return shared.fail_to_start(&arn, reason).ok_or_else(|| PortError::retryable("task vanished"));
        }
        // Dropping this future does not stop the launch: it runs to its end.
        result.await.unwrap_or_else(|_| Err(PortError::retryable(format!("the start of task {arn} failed"))))
    }

    /// Asks a task to stop: SIGTERM now, SIGKILL after its stop timeout.
    /// Returns once the signal is sent, as ECS's StopTask does; the STOPPED
    /// event (or [`LocalRuntime::wait_stopped`]) says when it has stopped.
    /// Stopping a stopping, stopped or unknown task succeeds.
    async fn stop_task(&self, task: &TaskArn, code: StopCode, reason: &str) -> Result<(), PortError> {
        self.shared.request_stop(task, code, reason);
        Ok(())
    }

    async fn tasks(&self) -> Result<Vec<TaskInfo>, PortError> {
        let mut tasks: Vec<TaskInfo> = self.shared.lock().tasks.values().map(|r| r.info.clone()).collect();
        tasks.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.arn.cmp(&b.arn)));
        Ok(tasks)
    }

    type Events = Events;

    /// Task state change events from now on, in version order per task.
    fn subscribe(&self) -> Events {
        Events(self.shared.subscribe())
    }

    /// The CPU time and resident memory of the task's process tree, read
    /// from `/proc` ([`crate::usage`]), or of its container, read from the
    /// engine's statistics (its cgroup); `None` once it is not running.
    async fn usage(&self, task: &TaskArn) -> Result<Option<UsageSample>, PortError> {
        let (pid, container) = {
            let table = self.shared.lock();
            match table.tasks.get(task) {
                Some(r) if r.info.last_status == TaskStatus::Running && !r.exited => (r.pid, r.engine_id.clone()),
                _ => (None, None),
            }
        };
        if let (Some(id), Some(engine)) = (container, self.shared.engine.get()) {
            let reading =
                engine.stats(&id).await.map_err(|e| PortError::retryable(format!("statistics of {task}: {e}")))?;
            return Ok(reading.map(|(cpu_ns, memory_bytes)| UsageSample {
                cpu_time: std::time::Duration::from_nanos(cpu_ns),
                memory_bytes,
                at: crate::usage::now(),
            }));
        }
        let Some(pid) = pid else { return Ok(None) };
        // A task gone between the lookup and the read has no reading.
        let read = tokio::task::spawn_blocking(move || crate::usage::sample(pid).ok().map(|s| s.reading()));
        read.await.map_err(|e| PortError::retryable(format!("reading the usage of task {task}: {e}")))
    }
}

impl HostRuntime for LocalRuntime {
    /// The task's process id: its process group's leader.
    fn pid(&self, arn: &TaskArn) -> Option<u32> {
        self.shared.lock().tasks.get(arn).and_then(|r| r.pid)
    }

    fn log_path(&self, arn: &TaskArn) -> Option<PathBuf> {
        if let Some(record) = self.shared.lock().tasks.get(arn) {
            return Some(record.log_path.clone());
        }
        names::id_of(&self.shared.config, arn).map(|id| self.shared.config.logs.join(format!("{id}.log")))
    }

    /// Finds the engine when a definition runs a container (an error when
    /// none answers, or it lacks an image), and removes the containers a
    /// previous supervisor of this state folder left; without container
    /// definitions an engine that does not answer at once is no error.
    async fn prepare(&self, definitions: &[TaskDefinition]) -> Result<usize, HostError> {
        let images: Vec<(&str, &str)> = definitions
            .iter()
            .filter_map(|d| Some((d.family.as_str(), d.container.as_ref()?.image.as_str())))
            .collect();
        let engine = if images.is_empty() {
            match tokio::time::timeout(std::time::Duration::from_secs(5), self.shared.engine()).await {
                Ok(Ok(engine)) => engine,
                _ => return Ok(0),
            }
        } else {
            self.shared.engine().await?
        };
        for (service, image) in images {
            engine.image_user(image).await.map_err(|source| HostError::Image { service: service.into(), source })?;
        }
        let removed = container::reap(engine, &self.shared.config).await.unwrap_or_else(|e| {
            tracing::warn!(engine = %engine.address, error = %e, "cannot look for containers a previous run left");
            0
        });
        Ok(removed)
    }

    async fn settle(&self, within: std::time::Duration) {
        let mut cleanups = self.shared.cleanups.subscribe();
        let _ = tokio::time::timeout(within, cleanups.wait_for(|n| *n == 0)).await;
    }

    async fn wait_stopped(&self, arn: &TaskArn) -> Option<TaskInfo> {
        self.shared.wait_stopped(arn).await
    }
}

/// Removes the containers a killed supervisor logging to `logs` left, if
/// an engine answers within a few seconds (none answering: nothing can be
/// running in one); returns how many. For commands that work on a state
/// folder while no `berth up` runs (`berth ledger rebuild`).
pub async fn reap_left_containers(logs: &std::path::Path) -> Result<usize, engine::EngineError> {
    let found = tokio::time::timeout(std::time::Duration::from_secs(5), engine::Engine::connect(None)).await;
    let Ok(Ok(engine)) = found else { return Ok(0) };
    container::reap_scope(&engine, &logs.display().to_string()).await
}

/// The supervisor's events, as core's [`TaskEvents`].
pub struct Events(broadcast::Receiver<TaskStateChange>);

impl TaskEvents for Events {
    async fn next(&mut self) -> Option<Result<TaskStateChange, u64>> {
        match self.0.recv().await {
            Ok(event) => Some(Ok(event)),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(Err(missed)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
