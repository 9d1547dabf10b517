//! A task as the admin API lists it: core's [`TaskInfo`] and what only
//! this machine knows of it.
//!
//! Core's task has no process id (a task may be an ECS task or a
//! container); under `berth up` each task has one, which `berth ps` shows
//! and an operator can signal.

use berth_core::TaskInfo;
use serde::{Deserialize, Serialize};

/// One line of `GET /v1/tasks`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskView {
    #[serde(flatten)]
    pub task: TaskInfo,
    /// The task's process id, once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}
