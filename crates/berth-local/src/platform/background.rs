//! Background snapshots under `berth up`: every `background_snapshots`,
//! each running claim of the service whose volume changed since the last
//! look gets a crash-consistent snapshot (core's
//! `Controller::back_up_in_background`). The next snapshot of the claim,
//! the stop snapshot included, takes it as its parent and reads only what
//! changed since, so a stop after a large write is short.
//!
//! "Changed" is the volume's fingerprint (a walk of its metadata, as the
//! seal uses, see `crate::fingerprint`): an unchanged volume costs that walk
//! and writes nothing to the repository.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_core::backup::Schedule;
use berth_core::ledger::Ledger;
use berth_core::ClaimName;

use super::config::ServiceConfig;
use super::{Platform, PlatformError};
use crate::host::HostRuntime;

impl<R: HostRuntime> Platform<R> {
    /// Runs the background snapshots of one service until the platform stops.
    pub(super) async fn background_loop(self: Arc<Self>, service: ServiceConfig, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The fingerprint of each claim's volume at its last background snapshot.
        let mut seen: HashMap<ClaimName, String> = HashMap::new();
        loop {
            tick.tick().await;
            let Ok(claims) = self.ledger.claims().await else { continue };
            for claim in claims.iter().filter(|c| c.service == service.name) {
                if let Err(e) = self.background_snapshot(&claim.name, &mut seen).await {
                    tracing::warn!(claim = %claim.name, error = %e, "background snapshot failed; trying again next time");
                }
            }
        }
    }

    async fn background_snapshot(
        &self,
        name: &ClaimName,
        seen: &mut HashMap<ClaimName, String>,
    ) -> Result<(), PlatformError> {
        // Any running claim with no handoff under way is due.
        let Some(volume) = self.controller.due_backup(name, &Schedule::Every(Duration::ZERO)).await? else {
            return Ok(());
        };
        let path = self.controller.volumes().inner().path(&volume);
        let fingerprint = tokio::task::spawn_blocking(move || crate::fingerprint::fingerprint(&path))
            .await
            .map_err(std::io::Error::other)??;
        if seen.get(name) == Some(&fingerprint) {
            return Ok(());
        }
        let snapshot = self.controller.back_up_in_background(name, &volume).await?;
        tracing::debug!(claim = %name, snapshot = %snapshot.id, "background snapshot");
        // The fingerprint from before the snapshot: a change while it ran is
        // found next time.
        seen.insert(name.clone(), fingerprint);
        Ok(())
    }
}
