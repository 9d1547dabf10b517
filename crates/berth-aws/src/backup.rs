//! Scheduled backups on AWS, run by the Lambda's resync: an EBS snapshot
//! of each running claim's volume when core says one is due (backup
//! retention first, the policy's lock as a tag), and a copy of every
//! completed snapshot in the replica region (CopySnapshot), where the
//! replica's retention then runs.
//!
//! The snapshots are crash-consistent: the Lambda does not reach into a
//! task to quiesce it. A copy carries `berth:source-snapshot`, which is how
//! the next pass knows what the replica has (a copy's start time is its
//! own, not its original's, so times do not compare across regions).

use std::collections::BTreeSet;

use berth_core::backup::Policy;
use berth_core::{ClaimName, Consistency, Ledger, SnapshotId, Volumes};
use serde::Serialize;

use crate::ebs::EbsVolumes;
use crate::handler::AwsController;
use crate::settings::AwsBackup;

/// A service's backup policy with its replica store.
pub struct Backup {
    pub settings: AwsBackup,
    pub policy: Policy,
    /// The stack's snapshots in the replica region, and the region they come from.
    pub replica: Option<(EbsVolumes, String)>,
}

/// What one backup pass did.
#[derive(Debug, Default, Serialize)]
pub struct BackupReport {
    pub snapshots: Vec<String>,
    pub copied: Vec<String>,
    pub replica_forgotten: usize,
    pub failed: Vec<String>,
}

impl Backup {
    pub fn new(settings: AwsBackup, config: &aws_config::SdkConfig, cluster: &str) -> Self {
        let replica = settings.replica_region.as_ref().map(|region| {
            let conf = aws_sdk_ec2::config::Builder::from(config)
                .region(aws_sdk_ec2::config::Region::new(region.clone()))
                .build();
            let source = config.region().map(|r| r.to_string()).unwrap_or_default();
            (EbsVolumes::new(aws_sdk_ec2::Client::from_conf(conf), cluster), source)
        });
        Self { policy: settings.policy(), settings, replica }
    }

    /// Backs up and replicates every claim of the service.
    pub async fn pass(&self, controller: &AwsController, report: &mut BackupReport) {
        let claims = match controller.ledger.claims().await {
            Ok(c) => c,
            Err(e) => return report.failed.push(format!("backups: {e}")),
        };
        let replicated = match &self.replica {
            Some((store, _)) => match store.copies().await {
                Ok(copies) => Some(copies),
                Err(e) => {
                    report
                        .failed
                        .push(format!("replica {}: {e}", self.settings.replica_region.as_deref().unwrap_or("")));
                    None
                }
            },
            None => None,
        };
        for claim in claims.iter().filter(|c| c.service == self.settings.service) {
            match controller.due_backup(&claim.name, &self.policy.schedule).await {
                Ok(Some(volume)) => {
                    match controller.back_up(&claim.name, &volume, &self.policy, Consistency::Crash).await {
                        Ok(s) => report.snapshots.push(s.id.0),
                        Err(e) => report.failed.push(format!("{}: scheduled snapshot: {e}", claim.name)),
                    }
                }
                Ok(None) => {}
                Err(e) => report.failed.push(format!("{}: {e}", claim.name)),
            }
            if let (Some((store, source)), Some(copies)) = (&self.replica, &replicated) {
                if let Err(e) = self.replicate(controller, store, source, copies, &claim.name, report).await {
                    report.failed.push(format!("{}: replication: {e}", claim.name));
                }
            }
        }
    }

    async fn replicate(
        &self,
        controller: &AwsController,
        store: &EbsVolumes,
        source_region: &str,
        copies: &[(berth_core::SnapshotRecord, Option<SnapshotId>)],
        claim: &ClaimName,
        report: &mut BackupReport,
    ) -> Result<(), berth_core::PortError> {
        let of_claim = |copies: &[(berth_core::SnapshotRecord, Option<SnapshotId>)]| -> Vec<_> {
            copies.iter().filter(|(s, _)| s.claim.as_ref() == Some(claim)).cloned().collect()
        };
        let mut there = of_claim(copies);
        let have: BTreeSet<SnapshotId> = there.iter().filter_map(|(_, src)| src.clone()).collect();
        let mut copied = false;
        for snap in controller.snapshots_of(claim).iter().filter(|s| !s.pending && !have.contains(&s.id)) {
            let copy = controller.volumes().copy_to(store.client(), source_region, &snap.id).await?;
            report.copied.push(copy.0);
            copied = true;
        }
        let Some(replica) = self.policy.replicas.first() else { return Ok(()) };
        if replica.retention.is_empty() {
            return Ok(());
        }
        if copied {
            // The new copies count for the replica's retention too.
            there = of_claim(&store.copies().await?);
        }
        let records: Vec<_> = there.iter().map(|(s, _)| s.clone()).collect();
        let doomed: Vec<SnapshotId> = berth_core::retention::forgotten(&records, &replica.retention, controller.now());
        if !doomed.is_empty() {
            store.delete_snapshots(&doomed).await?;
            report.replica_forgotten += doomed.len();
        }
        Ok(())
    }
}
