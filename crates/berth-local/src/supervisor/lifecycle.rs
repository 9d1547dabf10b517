//! The process watcher of one task: waits for its process to exit, and
//! escalates a stop from SIGTERM to SIGKILL.
//!
//! A stop request has already sent SIGTERM to the task's process group
//! (see `Shared::request_stop`); the watcher gives the process the
//! definition's stop timeout to exit, then sends SIGKILL to the group.
//! Once the leader has exited, the rest of its group is killed too, so
//! nothing the task started keeps writing to its volume, and the task
//! moves on to STOPPED with the exit code.

use std::sync::Arc;
use std::time::Duration;

use berth_core::TaskArn;
use tokio::process::Child;
use tokio::sync::watch;

use super::table::Shared;
use super::{leftovers, process};

/// Watches `child`, the process of task `arn`, until it exits.
pub(crate) async fn watch(
    shared: Arc<Shared>,
    arn: TaskArn,
    mut child: Child,
    stop_timeout: Duration,
    mut leaving: watch::Receiver<bool>,
) {
    let pgid = child.id();
    let status = tokio::select! {
        status = child.wait() => status,
        () = left(&mut leaving) => match tokio::time::timeout(stop_timeout, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(task = %arn, ?stop_timeout, "task ignored SIGTERM; sending SIGKILL");
                process::signal_group(pgid, libc::SIGKILL);
                child.wait().await
            }
        },
    };
    process::signal_group(pgid, libc::SIGKILL);
    if let (Some(dir), Some(pgid)) = (&shared.config.groups, pgid) {
        leftovers::forget(dir, pgid);
    }
    let exit_code = match status {
        Ok(status) => Some(process::exit_code(status)),
        Err(e) => {
            tracing::error!(task = %arn, error = %e, "cannot wait for a task's process");
            None
        }
    };
    shared.finish(&arn, exit_code);
}

/// Resolves once the task is leaving RUNNING (never, if its record is gone).
pub(crate) async fn left(leaving: &mut watch::Receiver<bool>) {
    if leaving.wait_for(|l| *l).await.is_err() {
        std::future::pending::<()>().await;
    }
}
