//! The state folder held by a command while no `berth up` runs.
//!
//! Some work must not race a running platform: rebuilding a lost ledger
//! writes claims that a controller would act on at once. Such a command
//! takes the state folder's lock as `berth up` does, and first clears
//! what a killed `berth up` left behind (task processes still writing to
//! volumes, half-made volumes), so the volumes it reads are at rest.

use std::sync::Arc;

use crate::ledger::SqliteLedger;
use crate::platform::{lock::StateLock, remove_staging, PlatformError};
use crate::state::StateDir;
use crate::supervisor::leftovers;
use crate::volumes::LocalVolumes;

/// The ledger and volumes of a state folder, with its lock held.
pub struct Offline {
    pub ledger: Arc<SqliteLedger>,
    pub volumes: Arc<LocalVolumes>,
    _lock: StateLock,
}

impl Offline {
    /// Locks `state` (refused while a `berth up` runs on it), stops the
    /// processes a killed one left, and opens its ledger.
    pub fn open(state: &StateDir, volumes: LocalVolumes) -> Result<Self, PlatformError> {
        state.ensure()?;
        let lock = StateLock::acquire(state)?;
        match leftovers::reap(&state.task_groups()) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(killed = n, "killed processes the tasks of a previous run left behind"),
            Err(e) => tracing::warn!(error = %e, "cannot check for processes a previous run left behind"),
        }
        remove_staging(state);
        let ledger = Arc::new(SqliteLedger::open(&state.ledger())?);
        Ok(Self { ledger, volumes: Arc::new(volumes), _lock: lock })
    }

    /// Removes the containers a killed `berth up` of `state` left running
    /// (container tasks do not die with it): call before reading volumes.
    pub async fn clear_containers(&self, state: &StateDir) {
        match crate::supervisor::reap_left_containers(&state.logs()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(removed = n, "removed containers the tasks of a previous run left behind"),
            Err(e) => tracing::warn!(error = %e, "cannot check for containers a previous run left behind"),
        }
    }
}
