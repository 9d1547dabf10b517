//! What `berth up` needs of a runtime beyond core's `Runtime` port.
//!
//! A *host runtime* runs tasks on this machine (processes today,
//! containers next), so each task has things only this machine knows:
//! the process id an operator can signal, the log file its output goes
//! to. The platform is generic over it; every decision still goes
//! through core's port.

use std::future::Future;
use std::path::PathBuf;

use berth_core::{Runtime, TaskArn, TaskDefinition, TaskInfo};

/// Why a host runtime cannot run the configured tasks.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    NoEngine(#[from] crate::supervisor::engine::NoEngine),
    #[error("service {service}: {source}")]
    Image {
        service: String,
        #[source]
        source: crate::supervisor::engine::EngineError,
    },
}

/// A runtime whose tasks run on this machine.
pub trait HostRuntime: Runtime + 'static {
    /// The process id of a task that has started (a container's init
    /// process for a container): what `berth ps` shows and `kill` takes.
    fn pid(&self, task: &TaskArn) -> Option<u32>;

    /// The file a task's output goes to (it may not exist yet).
    fn log_path(&self, task: &TaskArn) -> Option<PathBuf>;

    /// Readies the runtime for `definitions` before any task starts or any
    /// volume is touched: finds what they need (a container engine, their
    /// images) and removes what a killed predecessor's tasks left running.
    /// Returns how many leftovers it removed.
    fn prepare(&self, definitions: &[TaskDefinition]) -> impl Future<Output = Result<usize, HostError>> + Send;

    /// Waits (at most `within`) for the cleanups of stopped tasks that run
    /// after their STOPPED (a container's removal), so nothing is left
    /// behind when `berth up` exits.
    fn settle(&self, within: std::time::Duration) -> impl Future<Output = ()> + Send;

    /// Waits until a task has stopped and returns it; `None` for a task
    /// the runtime does not know.
    fn wait_stopped(&self, task: &TaskArn) -> impl Future<Output = Option<TaskInfo>> + Send;
}
