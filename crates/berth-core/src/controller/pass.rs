//! The resync pass: a controller's periodic work, in one order for both
//! platforms.
//!
//! The Lambda's schedule asks for all of it each minute; `berth up`'s
//! timers each ask for their part (the resync timer for the claims and the
//! sweep, the deployment timer for the rollouts, the backup timer for the
//! backups, each auto-scaled service's sampler for its decision), and its
//! events reconcile single claims between. The order is the one place where the parts meet:
//!
//! 1. the snapshot cache is read again (for the parts that read it), and
//!    with `guard` a ledger behind
//!    the volumes and snapshots refuses the whole pass (issue 20: it would
//!    start its claims again from nothing);
//! 2. auto scaling decides each service's count from the readings given;
//! 3. each service is scaled to its count, once per count;
//! 4. deployments under way take their next step;
//! 5. every claim is reconciled;
//! 6. deployments look again (a claim healthy since step 4 lets the next
//!    one go);
//! 7. the platform's backups run;
//! 8. the sweep removes what the ledger saw die.
//!
//! What differs between platforms is behind [`Shell`]: how claims are
//! reconciled (at once, or by waking workers) and what a backup is.

use std::future::Future;

use serde::Serialize;

use super::*;
use crate::autoscale::ScalingPolicy;
use crate::deploy::ServiceRecord;

/// The parts of a pass to run.
#[derive(Clone, Debug, Default)]
pub struct Due {
    /// Refuse the pass when the ledger is behind the volumes and snapshots.
    pub guard: bool,
    /// Auto scaling: each service's policy and its tasks' readings.
    pub autoscale: Vec<(String, ScalingPolicy, Vec<TaskUsage>)>,
    /// Scale each service to its count, once per count (see [`Controller::scale_once`]).
    pub scale: bool,
    /// Take the next step of each deployment under way.
    pub rollouts: bool,
    /// Reconcile every claim.
    pub claims: bool,
    /// Run the platform's backups.
    pub backups: bool,
    /// Sweep orphaned volumes and snapshots.
    pub sweep: bool,
}

impl Due {
    /// Everything: the Lambda's scheduled resync.
    pub fn all(autoscale: Vec<(String, ScalingPolicy, Vec<TaskUsage>)>) -> Self {
        Self { guard: true, autoscale, scale: true, rollouts: true, claims: true, backups: true, sweep: true }
    }
}

/// What reconciling some claims came to.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// The claims that failed, with why.
    pub failed: Vec<(ClaimName, ControllerError)>,
    /// The soonest any of them asked to be looked at again (none when the
    /// platform's workers keep their own timers).
    pub requeue: Option<Duration>,
}

/// The platform's side of a pass.
pub trait Shell: Sync {
    /// Reconciles `claims`, at once or by waking the platform's workers.
    fn reconcile(&self, claims: Vec<ClaimName>) -> impl Future<Output = Reconciled> + Send;

    /// Runs the platform's backups; returns what failed.
    fn back_up(&self) -> impl Future<Output = Vec<String>> + Send {
        async { Vec::new() }
    }
}

/// What a pass did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PassReport {
    /// Why the pass did nothing (the guard refused it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    pub failed: Vec<String>,
    /// Each auto-scaled service's decision ("files: cpu 140.0% … → scale out 2 → 4").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub autoscaling: Vec<String>,
    pub swept_volumes: usize,
    pub swept_snapshots: usize,
    /// The soonest a claim reconciled at once asked to be looked at again.
    #[serde(skip)]
    pub requeue: Option<Duration>,
}

impl<R: Runtime, V: Volumes, L: Ledger> Controller<R, V, L> {
    /// Runs the parts of the pass that `due` asks for, in the module's order.
    pub async fn pass<S: Shell>(&self, due: &Due, shell: &S) -> PassReport {
        let mut report = PassReport::default();
        // Listing a repository is slow: only the parts that read the
        // snapshots (the claims, the sweep, the guard) have it listed again.
        let refreshed = match due.guard || due.claims || due.sweep {
            true => self.refresh_snapshots().await,
            false => Ok(()),
        };
        if due.guard {
            if let Err(e) = refreshed.and(self.check_continuity().await) {
                tracing::error!(error = %e, "resync refused: the ledger is behind the volumes and snapshots");
                report.refused = Some(format!("resync refused: {e}"));
                return report;
            }
        } else if let Err(e) = refreshed {
            report.failed.push(format!("snapshots: {e}"));
        }
        for (service, policy, usage) in &due.autoscale {
            match self.autoscale(service, policy, usage).await {
                Ok(Some(d)) => report.autoscaling.push(format!("{service}: {}", d.reason)),
                Ok(None) => {}
                Err(e) => report.failed.push(format!("autoscaling of {service}: {e}")),
            }
        }
        if due.scale {
            if let Err(e) = self.scale_once().await {
                report.failed.push(format!("scaling: {e}"));
            }
        }
        let failed = |report: &mut PassReport, done: Reconciled| {
            report.failed.extend(done.failed.into_iter().map(|(c, e)| format!("{c}: {e}")));
            report.requeue = match (report.requeue, done.requeue) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        };
        if due.rollouts {
            let moved = self.step_rollouts(&mut report).await;
            // With every claim reconciled next, the moved ones are among them.
            if !due.claims {
                failed(&mut report, shell.reconcile(moved).await);
            }
        }
        if due.claims {
            match self.ledger.claims().await {
                Ok(claims) => failed(&mut report, shell.reconcile(claims.into_iter().map(|c| c.name).collect()).await),
                Err(e) => report.failed.push(e.to_string()),
            }
            if due.rollouts {
                let moved = self.step_rollouts(&mut report).await;
                failed(&mut report, shell.reconcile(moved).await);
            }
        }
        if due.backups {
            report.failed.extend(shell.back_up().await);
        }
        if due.sweep {
            match self.sweep().await {
                Ok((v, s)) => (report.swept_volumes, report.swept_snapshots) = (v, s),
                Err(e) => report.failed.push(format!("sweep: {e}")),
            }
        }
        report
    }

    /// The next step of every service's deployment; returns the claims moved.
    async fn step_rollouts(&self, report: &mut PassReport) -> Vec<ClaimName> {
        let mut moved = Vec::new();
        for spec in self.services() {
            match self.step_rollout(&spec.name).await {
                Ok(claims) => moved.extend(claims),
                Err(e) => report.failed.push(format!("deployment of {}: {e}", spec.name)),
            }
        }
        moved
    }

    /// Scales each service to its configured count once per count: a
    /// claim parked since (by a user's stop) stays parked, as under
    /// `berth up`, where scaling runs at start and on a change of count.
    /// The count last scaled to is kept in the service record.
    pub async fn scale_once(&self) -> Result<(), ControllerError> {
        let services = self.services();
        let mut records = Vec::new();
        for spec in &services {
            let record = self.ledger.service(&spec.name).await?;
            if record.as_ref().and_then(|r| r.scaled_to) != Some(spec.desired_count) {
                records.push((spec, record));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        self.scale_services().await?;
        for (spec, record) in records {
            let (mut next, expect) = ServiceRecord::or_first(record, &spec.name, &spec.definition);
            next.scaled_to = Some(spec.desired_count);
            match self.ledger.put_service(&next, expect).await {
                Ok(_) => {}
                Err(e) if e.is_conflict() => {} // another controller recorded it
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Reconciles each claim at once, one after another (the Lambda, where no
/// worker outlives the invocation).
pub struct Inline<'a, R, V, L>(pub &'a Controller<R, V, L>);

impl<R: Runtime, V: Volumes, L: Ledger> Shell for Inline<'_, R, V, L> {
    async fn reconcile(&self, claims: Vec<ClaimName>) -> Reconciled {
        let mut done = Reconciled::default();
        for claim in claims {
            match self.0.reconcile_claim(&claim).await {
                Ok(Some(d)) => done.requeue = Some(done.requeue.map_or(d, |s| s.min(d))),
                Ok(None) => {}
                Err(e) => done.failed.push((claim, e)),
            }
        }
        done
    }
}
