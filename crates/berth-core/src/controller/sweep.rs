//! The sweep, carried out: the plan ([`crate::sweep::sweep`]) first, then
//! exactly what it says is deleted. Nothing is deleted while the ledger is
//! behind the stores.

use super::*;

impl<R: Runtime, V: Volumes, L: Ledger> Controller<R, V, L> {
    /// Removes volumes the ledger saw die and snapshots of deleted claims,
    /// older than the grace period (see [`sweep`]); returns how many went.
    /// Removes nothing while the ledger is behind the stores: what it does
    /// not know it cannot judge.
    pub async fn sweep(&self) -> Result<(usize, usize), ControllerError> {
        let plan = self.sweep_plan().await?;
        self.carry_out_sweep(&plan).await
    }

    /// What the sweep would delete now, and why ([`sweep`]); nothing is
    /// deleted. Refused while the ledger is behind the stores.
    pub async fn sweep_plan(&self) -> Result<Sweep, ControllerError> {
        let claims = self.ledger.claims().await?;
        let volumes = self.volumes.list().await?;
        let snapshots = self.volumes.all();
        crate::continuity::check(&claims, &volumes, &snapshots)?;
        Ok(sweep(&claims, &volumes, &snapshots, self.now(), self.grace))
    }

    /// Deletes exactly what `found` plans; returns how many volumes and
    /// snapshots went.
    pub async fn carry_out_sweep(&self, found: &Sweep) -> Result<(usize, usize), ControllerError> {
        self.carry_out(found.plan()).await?;
        Ok((found.volumes().len(), found.snapshots.len()))
    }
}
