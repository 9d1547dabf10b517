//! `berth up`'s side of a controller pass ([`berth_core::controller::Shell`]).
//!
//! Every periodic job of `berth up` is a timer that asks core's one pass
//! (`Controller::pass`) for its part: the resync for the claims and the
//! sweep, the deployment timer for the rollouts, the backup timer for the
//! backups, each auto-scaled service's sampler for its decision. The order
//! of the parts, and what each decides, is core's; this shell says how
//! `berth up` carries out the two parts that are the platform's own.

use std::sync::Arc;

use berth_core::controller::{Reconciled, Shell};
use berth_core::ClaimName;

use super::Platform;
use crate::host::HostRuntime;

/// The platform as a pass's shell.
pub(super) struct Local<'a, R: HostRuntime>(pub &'a Arc<Platform<R>>);

impl<R: HostRuntime> Shell for Local<'_, R> {
    /// Wakes the queue's workers: a pass never waits for a handoff.
    async fn reconcile(&self, claims: Vec<ClaimName>) -> Reconciled {
        for claim in claims {
            self.0.queue.wake(claim);
        }
        Reconciled::default()
    }

    /// The scheduled snapshots and replication of each service with a
    /// `[service.backup]` policy (see `backup.rs`).
    async fn back_up(&self) -> Vec<String> {
        let mut failed = Vec::new();
        for (service, policy) in self.0.backup_policies() {
            if let Err(e) = self.0.backup_pass(&service, &policy).await {
                failed.push(format!("backups of {}: {e}", service.name));
            }
        }
        failed
    }
}
