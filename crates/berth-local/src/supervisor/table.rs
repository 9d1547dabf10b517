//! The supervisor's table of tasks and the state changes that emit events.
//!
//! A *task record* is everything the supervisor knows of one task: the
//! [`TaskInfo`] it reports, plus what the ECS event carries beyond it
//! (group, definition ARN, timestamps, exit code) and the process to
//! signal. Every change of a task goes through [`Shared`] under one lock:
//! the change bumps the task's `version` by one and broadcasts the event
//! while the lock is held, so each task's events reach subscribers in
//! version order, one per change.
//!
//! The walk is ECS's: PROVISIONING → PENDING → ACTIVATING → RUNNING; a stop
//! request goes DEACTIVATING → STOPPING (SIGTERM) → DEPROVISIONING →
//! STOPPED; a process that exits on its own goes STOPPING → DEPROVISIONING
//! → STOPPED; a task that cannot start, or is stopped before its process
//! exists, goes straight to STOPPED.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use berth_core::{Health, StopCode, TaskArn, TaskInfo, TaskStateChange, TaskStatus, VolumeId};
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, watch};

use super::config::SupervisorConfig;
use super::engine::{Engine, NoEngine};
use super::events;
use super::process;

/// What the supervisor knows of one task.
pub(crate) struct TaskRecord {
    pub info: TaskInfo,
    pub client_token: String,
    pub group: String,
    pub started_by: String,
    pub definition_arn: String,
    /// The container's name in events: the definition's family.
    pub container: String,
    pub volume: VolumeId,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub port: u16,
    pub log_path: PathBuf,
    /// The task's process (and process group) once it runs; a container's
    /// main process.
    pub pid: Option<u32>,
    /// The engine's id of the task's container, for a container task.
    pub engine_id: Option<String>,
    /// The signal a stop sends a container first (its image's STOPSIGNAL).
    pub stop_signal: String,
    pub pull_started_at: Option<DateTime<Utc>>,
    pub pull_stopped_at: Option<DateTime<Utc>>,
    pub stopping_at: Option<DateTime<Utc>>,
    pub execution_stopped_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i64>,
    /// Why the container did not start, if it did not.
    pub container_reason: Option<String>,
    /// Whether the process has been reaped (its group may not be signalled).
    pub exited: bool,
    /// Becomes true once the task leaves RUNNING: a stop was asked for or
    /// the process exited. The process watcher and the health checker wait on it.
    pub leaving: watch::Sender<bool>,
    /// The task's last status, for [`Shared::wait_stopped`].
    pub status: watch::Sender<TaskStatus>,
}

impl TaskRecord {
    pub fn container_status(&self) -> &'static str {
        match self.info.last_status {
            _ if self.exited || self.info.is_stopped() => "STOPPED",
            TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating => "PENDING",
            _ => "RUNNING",
        }
    }
}

#[derive(Default)]
pub(crate) struct Table {
    pub tasks: HashMap<TaskArn, TaskRecord>,
    /// Client token → the task it started.
    pub tokens: HashMap<String, TaskArn>,
}

/// The state shared by the runtime handle, process watchers and health checkers.
pub(crate) struct Shared {
    pub config: SupervisorConfig,
    /// The container engine, found when a container task first needs it.
    pub engine: tokio::sync::OnceCell<Engine>,
    /// Cleanups under way after a task's STOPPED (container removals).
    pub cleanups: watch::Sender<usize>,
    table: Mutex<Table>,
    events: broadcast::Sender<TaskStateChange>,
}

impl Shared {
    pub fn new(config: SupervisorConfig) -> Self {
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        Self {
            config,
            engine: tokio::sync::OnceCell::new(),
            cleanups: watch::Sender::new(0),
            table: Mutex::new(Table::default()),
            events,
        }
    }

    /// The container engine, found on first use.
    pub async fn engine(&self) -> Result<&Engine, NoEngine> {
        self.engine.get_or_try_init(|| Engine::connect(self.config.engine.as_deref())).await
    }

    pub fn subscribe(&self) -> broadcast::Receiver<TaskStateChange> {
        self.events.subscribe()
    }

    /// The table, with stopped tasks past their retention dropped.
    pub fn lock(&self) -> MutexGuard<'_, Table> {
        let mut table = self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let retention = chrono::Duration::from_std(self.config.stopped_retention).unwrap_or(chrono::Duration::MAX);
        let cutoff = Utc::now().checked_sub_signed(retention).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let expired: Vec<TaskArn> = table
            .tasks
            .iter()
            .filter(|(_, r)| r.info.is_stopped() && r.info.stopped_at.is_some_and(|at| at < cutoff))
            .map(|(arn, _)| arn.clone())
            .collect();
        for arn in expired {
            if let Some(record) = table.tasks.remove(&arn) {
                table.tokens.remove(&record.client_token);
            }
        }
        table
    }

    /// Ports of tasks that have not stopped.
    pub fn ports_in_use(&self) -> HashSet<u16> {
        self.lock().tasks.values().filter(|r| !r.info.is_stopped()).map(|r| r.port).collect()
    }

    /// Records a change of `record` and broadcasts it as the next version.
    pub fn emit(&self, record: &mut TaskRecord) {
        record.info.version += 1;
        let event = events::state_change(&self.config, record, Utc::now());
        tracing::info!(
            task = %record.info.arn,
            status = record.info.last_status.as_str(),
            desired = record.info.desired_status.as_str(),
            health = ?record.info.health,
            version = record.info.version,
            "task state change"
        );
        // No subscriber is not an error: events are notifications.
        let _ = self.events.send(event);
    }

    /// Moves `record` to `status` and emits the change.
    pub fn advance(&self, record: &mut TaskRecord, status: TaskStatus) {
        record.info.last_status = status.clone();
        if status == TaskStatus::Stopped {
            record.info.stopped_at.get_or_insert_with(Utc::now);
        }
        self.emit(record);
        record.status.send_replace(status);
    }

    /// One step of a task's start: applies `change` and moves to `status`,
    /// unless a stop was asked for meanwhile; then the task goes to STOPPED
    /// without a process and its info is returned.
    pub fn startup_step(
        &self,
        arn: &TaskArn,
        status: TaskStatus,
        change: impl FnOnce(&mut TaskRecord),
    ) -> Option<TaskInfo> {
        let mut table = self.lock();
        let record = table.tasks.get_mut(arn)?;
        if record.info.desired_status == TaskStatus::Stopped {
            record.leaving.send_replace(true);
            self.advance(record, TaskStatus::Stopped);
            return Some(record.info.clone());
        }
        change(record);
        self.advance(record, status);
        None
    }

    /// A task whose process could not be started: STOPPED with
    /// TaskFailedToStart and `reason`.
    pub fn fail_to_start(&self, arn: &TaskArn, reason: String) -> Option<TaskInfo> {
        let mut table = self.lock();
        let record = table.tasks.get_mut(arn)?;
        tracing::warn!(task = %arn, %reason, "task failed to start");
        let now = Utc::now();
        record.info.desired_status = TaskStatus::Stopped;
        record.info.stop_code = Some(StopCode::TaskFailedToStart);
        record.info.stopped_reason = Some(reason.clone());
        record.container_reason = Some(reason);
        record.stopping_at.get_or_insert(now);
        record.execution_stopped_at = Some(now);
        record.leaving.send_replace(true);
        self.advance(record, TaskStatus::Stopped);
        Some(record.info.clone())
    }

    /// A task whose process runs: RUNNING, and on to stopping if a stop was
    /// asked for while it started.
    pub fn started(&self, arn: &TaskArn, pid: Option<u32>) -> Option<TaskInfo> {
        let mut table = self.lock();
        let record = table.tasks.get_mut(arn)?;
        record.pid = pid;
        record.info.started_at = Some(Utc::now());
        self.advance(record, TaskStatus::Running);
        let info = record.info.clone();
        if record.info.desired_status == TaskStatus::Stopped {
            self.begin_stop(record);
        }
        Some(info)
    }

    /// Asks a task to stop with `code` and `reason`. The first request
    /// decides the code; a task that is stopping or stopped, or unknown, is
    /// left alone.
    pub fn request_stop(&self, arn: &TaskArn, code: StopCode, reason: &str) {
        let mut table = self.lock();
        let Some(record) = table.tasks.get_mut(arn) else {
            return;
        };
        if record.info.desired_status == TaskStatus::Stopped || record.info.is_stopped() {
            return;
        }
        record.info.desired_status = TaskStatus::Stopped;
        record.info.stop_code = Some(code);
        record.info.stopped_reason = Some(reason.to_owned());
        record.stopping_at = Some(Utc::now());
        // Before RUNNING the starting call sees the request at its next step.
        if record.info.last_status == TaskStatus::Running {
            self.begin_stop(record);
        }
    }

    /// DEACTIVATING → STOPPING and SIGTERM to the task's process group; the
    /// process watcher sends SIGKILL after the stop timeout.
    fn begin_stop(&self, record: &mut TaskRecord) {
        self.advance(record, TaskStatus::Deactivating);
        self.advance(record, TaskStatus::Stopping);
        match (&record.engine_id, self.engine.get()) {
            // The engine's kill, as ECS's StopTask: signalled as the
            // container's init, the signal reaches it only if it handles it.
            (Some(id), Some(engine)) => {
                let (engine, id, signal) = (engine.clone(), id.clone(), record.stop_signal.clone());
                tokio::spawn(async move { engine.kill(&id, &signal).await });
            }
            _ if !record.exited => process::signal_group(record.pid, libc::SIGTERM),
            _ => {}
        }
        record.leaving.send_replace(true);
    }

    /// The task's process exited with `exit_code`: on to STOPPED. An exit
    /// nobody asked for is EssentialContainerExited, as on ECS.
    pub fn finish(&self, arn: &TaskArn, exit_code: Option<i64>) {
        self.finish_as(arn, exit_code, None);
    }

    /// [`Self::finish`], with why the container ended when the runtime
    /// knows (`OutOfMemoryError: …`): it becomes the container's reason and,
    /// for an exit nobody asked for, the task's stopped reason.
    pub fn finish_as(&self, arn: &TaskArn, exit_code: Option<i64>, reason: Option<&str>) {
        let mut table = self.lock();
        let Some(record) = table.tasks.get_mut(arn) else {
            return;
        };
        let now = Utc::now();
        record.exited = true;
        record.exit_code = exit_code;
        record.execution_stopped_at = Some(now);
        record.leaving.send_replace(true);
        if record.info.desired_status != TaskStatus::Stopped {
            record.info.desired_status = TaskStatus::Stopped;
            record.info.stop_code = Some(StopCode::EssentialContainerExited);
            record.info.stopped_reason = Some(match reason {
                Some(reason) => format!("Essential container in task exited: {reason}"),
                None => "Essential container in task exited".into(),
            });
            record.stopping_at = Some(now);
        }
        if let Some(reason) = reason {
            record.container_reason = Some(reason.to_owned());
        }
        if matches!(record.info.last_status, TaskStatus::Running | TaskStatus::Deactivating) {
            self.advance(record, TaskStatus::Stopping);
        }
        self.advance(record, TaskStatus::Deprovisioning);
        record.info.stopped_at = Some(now);
        self.advance(record, TaskStatus::Stopped);
    }

    /// Records a health check verdict; a change is emitted. Returns false
    /// once the task is no longer running, which ends its health checks.
    pub fn set_health(&self, arn: &TaskArn, health: Health) -> bool {
        let mut table = self.lock();
        let Some(record) = table.tasks.get_mut(arn) else {
            return false;
        };
        if record.info.last_status != TaskStatus::Running || record.info.desired_status != TaskStatus::Running {
            return false;
        }
        if record.info.health != health {
            record.info.health = health;
            self.emit(record);
        }
        true
    }

    /// Whether the task is running and not asked to stop.
    pub fn is_running(&self, arn: &TaskArn) -> bool {
        self.lock()
            .tasks
            .get(arn)
            .is_some_and(|r| r.info.last_status == TaskStatus::Running && r.info.desired_status == TaskStatus::Running)
    }

    /// Waits until the task has stopped; None if it is unknown.
    pub async fn wait_stopped(&self, arn: &TaskArn) -> Option<TaskInfo> {
        let mut status = self.lock().tasks.get(arn)?.status.subscribe();
        // The sender lives in the record; if the record is dropped the task
        // stopped long ago.
        let _ = status.wait_for(|s| *s == TaskStatus::Stopped).await;
        self.lock().tasks.get(arn).map(|r| r.info.clone())
    }
}
