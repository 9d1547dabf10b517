//! Starting one task: the walk from PROVISIONING to RUNNING.
//!
//! A *launch* takes a task the table holds in PROVISIONING through PENDING
//! (its log file is prepared: locally there is no image to pull) and
//! ACTIVATING to RUNNING once its process has spawned, then hands the
//! process to its watcher and, if the definition has one, starts its health
//! checker. A spawn failure ends the task in STOPPED with
//! TaskFailedToStart; a stop asked for meanwhile ends it in STOPPED before
//! a process exists. It runs on the spawner thread (see `spawner`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_core::{HealthCheck, PortError, TaskArn, TaskInfo, TaskStatus};
use chrono::Utc;

use super::table::Shared;
use super::{health, leftovers, lifecycle, process};

/// What a launch needs beyond the task's record.
pub(crate) struct Launch {
    pub arn: TaskArn,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub log_path: PathBuf,
    pub stop_timeout: Duration,
    pub health_check: Option<HealthCheck>,
    pub addr: SocketAddr,
}

/// Walks the task to RUNNING (or STOPPED) and returns it. Needs a tokio
/// runtime context for the watchers it spawns.
pub(crate) fn launch(shared: &Arc<Shared>, launch: Launch) -> Result<TaskInfo, PortError> {
    let Launch { arn, argv, env, log_path, stop_timeout, health_check, addr } = launch;
    let vanished = || PortError::retryable(format!("task {arn} vanished while starting"));
    if let Some(stopped) = shared.startup_step(&arn, TaskStatus::Pending, |r| r.pull_started_at = Some(Utc::now())) {
        return Ok(stopped);
    }
    let log = process::open_log(&log_path);
    if let Some(stopped) = shared.startup_step(&arn, TaskStatus::Activating, |r| r.pull_stopped_at = Some(Utc::now())) {
        return Ok(stopped);
    }
    let spawned = log
        .map_err(|e| format!("cannot open the log file {}: {e}", log_path.display()))
        .and_then(|log| process::spawn(&argv, &env, log).map_err(|e| format!("cannot run {}: {e}", argv[0])));
    let child = match spawned {
        Ok(child) => child,
        Err(reason) => {
            return shared.fail_to_start(&arn, format!("CannotStartContainerError: {reason}")).ok_or_else(vanished)
        }
    };
    if let (Some(dir), Some(pgid)) = (&shared.config.groups, child.id()) {
        if let Err(e) = leftovers::record(dir, pgid, &arn) {
            tracing::warn!(task = %arn, error = %e, "cannot record the task's process group");
        }
    }
    let leaving = shared.lock().tasks.get(&arn).map(|r| r.leaving.subscribe());
    let info = shared.started(&arn, child.id());
    let (Some(info), Some(leaving)) = (info, leaving) else {
        return Err(vanished());
    };
    tokio::spawn(lifecycle::watch(shared.clone(), arn.clone(), child, stop_timeout, leaving.clone()));
    if let Some(check) = health_check {
        tokio::spawn(health::watch(shared.clone(), health::Target { arn, check, env, addr, container: None }, leaving));
    }
    Ok(info)
}
