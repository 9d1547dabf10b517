//! The backup loop of `berth up`: scheduled snapshots of running claims
//! and their replication.
//!
//! Every tick, for each service with a `[service.backup]` policy: a running
//! claim whose newest snapshot is older than the schedule allows gets one
//! (the quiesce hook, then core's `Controller::back_up` — backup retention,
//! the snapshot — then the resume), and every claim's snapshots the replicas lack are copied to
//! them, each replica then applying its own retention. What is due and what
//! is forgotten is decided in `berth_core::backup`; this loop only carries
//! it out and records the outcome in the backup book.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::backup::{self, Policy};
use berth_core::controller::Due;
use berth_core::ledger::{ClaimRecord, EventRecord, Ledger};
use berth_core::task::Runtime;
use berth_core::{ClaimName, Consistency, DesiredState, TaskInfo, TaskStatus};
use chrono::Utc;

use super::backup_book::{BackupOutcome, ReplicaReport};
use super::config::{BackupConfig, HookKind, ServiceConfig};
use super::{Platform, PlatformError};
use crate::backup::{replicate, Hook, HookTarget};
use crate::host::HostRuntime;

/// Why a scheduled snapshot was not taken (the backup report's error).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotBackedUp {
    #[error("the claim is gone")]
    Gone,
    #[error("the claim has no running task")]
    NoTask,
    #[error("the claim has no volume")]
    NoVolume,
    #[error("the service has no backup policy")]
    NoPolicy,
    #[error(transparent)]
    Ledger(#[from] berth_core::LedgerError),
    #[error(transparent)]
    Runtime(#[from] berth_core::PortError),
    #[error(transparent)]
    Snapshot(#[from] berth_core::controller::ControllerError),
}

/// How often the loop looks: a quarter of the shortest schedule, between
/// a quarter second and half a minute.
fn tick(policies: &[(ServiceConfig, Policy)]) -> Duration {
    let now = Utc::now();
    policies
        .iter()
        .map(|(_, p)| p.schedule.period(now) / 4)
        .min()
        .unwrap_or(Duration::from_secs(30))
        .clamp(Duration::from_millis(250), Duration::from_secs(30))
}

impl<R: HostRuntime> Platform<R> {
    /// The services with a backup policy, and the policy.
    pub(super) fn backup_policies(&self) -> Vec<(ServiceConfig, Policy)> {
        self.config.services.iter().filter_map(|s| Some((s.clone(), s.backup.as_ref()?.policy().ok()?))).collect()
    }

    pub(super) async fn backup_loop(self: Arc<Self>) {
        let policies = self.backup_policies();
        if policies.is_empty() {
            return;
        }
        let mut every = tokio::time::interval(tick(&policies));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let due = Due { backups: true, ..Default::default() };
        loop {
            every.tick().await;
            for failure in self.controller.pass(&due, &super::Local(&self)).await.failed {
                tracing::warn!(error = %failure, "backup pass failed; retrying next tick");
            }
        }
    }

    /// Copies the last stop snapshots `berth down` took to every replica
    /// before berth up exits, within `within`: a primary lost after a
    /// clean stop must not lose the last writes. Says what did not finish.
    pub(super) async fn replicate_final(&self, within: std::time::Duration) {
        let work = async {
            for (service, policy) in self.backup_policies().iter().filter(|(_, p)| !p.replicas.is_empty()) {
                let Ok(claims) = self.ledger.claims().await else { return };
                for claim in claims.iter().filter(|c| c.service == service.name && c.desired != DesiredState::Deleted) {
                    self.replicate_claim(&claim.name, policy).await;
                }
            }
        };
        if tokio::time::timeout(within, work).await.is_err() {
            let message = format!(
                "the last stop snapshots were not all copied to the replicas within {} s: they lag until the next \
                 start copies them (berth backup status)",
                within.as_secs()
            );
            tracing::warn!("{message}");
            self.log("berth-down", message).await;
        }
    }

    pub(super) async fn backup_pass(&self, service: &ServiceConfig, policy: &Policy) -> Result<(), PlatformError> {
        let claims: Vec<ClaimRecord> =
            self.ledger.claims().await?.into_iter().filter(|c| c.service == service.name).collect();
        for claim in &claims {
            if self.controller.due_backup(&claim.name, &policy.schedule).await?.is_some() {
                self.scheduled_snapshot(&claim.name, service, policy).await;
            }
            if claim.desired != DesiredState::Deleted {
                self.replicate_claim(&claim.name, policy).await;
            }
        }
        Ok(())
    }

    /// Takes a scheduled snapshot of a running claim now (also `berth
    /// backup now`). Backup retention runs first, so a full repository is
    /// relieved before it is written to.
    pub async fn scheduled_snapshot(
        &self,
        name: &ClaimName,
        service: &ServiceConfig,
        policy: &Policy,
    ) -> BackupOutcome {
        let started = Instant::now();
        let time = Utc::now();
        let outcome = match self.try_scheduled_snapshot(name, service, policy).await {
            Ok((snapshot, consistency, hook_error)) => BackupOutcome {
                time,
                snapshot: Some(snapshot),
                consistency: Some(consistency),
                hook_error,
                error: None,
                seconds: started.elapsed().as_secs_f64(),
            },
            Err(e) => BackupOutcome {
                time,
                snapshot: None,
                consistency: None,
                hook_error: None,
                error: Some(e.to_string()),
                seconds: started.elapsed().as_secs_f64(),
            },
        };
        let (kind, message) = match (&outcome.snapshot, &outcome.error) {
            (Some(id), _) => {
                let c = outcome.consistency.map_or("", |c| c.as_str());
                let why = outcome.hook_error.as_deref().map(|e| format!(" (quiesce failed: {e})")).unwrap_or_default();
                ("backup-taken", format!("scheduled snapshot {} ({c}-consistent){why}", &id[..id.len().min(8)]))
            }
            (None, e) => ("backup-failed", format!("scheduled snapshot failed: {}", e.as_deref().unwrap_or("?"))),
        };
        let mut event = EventRecord::new(Utc::now(), Some(name), kind, message);
        event.data = serde_json::to_value(&outcome).unwrap_or_default();
        self.controller.log(event).await;
        self.backups.update(name, |b| b.last_backup = Some(outcome.clone()));
        outcome
    }

    async fn try_scheduled_snapshot(
        &self,
        name: &ClaimName,
        service: &ServiceConfig,
        policy: &Policy,
    ) -> Result<(String, Consistency, Option<String>), NotBackedUp> {
        let claim = self.ledger.claim(name).await?.ok_or(NotBackedUp::Gone)?;
        let tasks = self.runtime.tasks().await?;
        let task = running_task(&claim, &tasks).ok_or(NotBackedUp::NoTask)?;
        let volume = claim.volume.clone().ok_or(NotBackedUp::NoVolume)?;

        let backup = service.backup.as_ref().ok_or(NotBackedUp::NoPolicy)?;
        let hook = hook_of(backup, &service.command);
        let mut env = service.env.clone();
        env.insert("STORAGE_PATH".into(), self.controller.volumes().inner().path(&volume).display().to_string());
        let endpoint = task.endpoint.clone().unwrap_or_default();
        let target = HookTarget { endpoint: &endpoint, env: &env };
        let quiesced = match &hook {
            Hook::None => Err(crate::backup::HookError::NotConfigured),
            hook => hook.quiesce(&target, backup.quiesce_timeout).await,
        };
        let consistency = if quiesced.is_ok() { Consistency::Application } else { Consistency::Crash };
        let taken = self.controller.back_up(name, &volume, policy, consistency).await;
        if quiesced.is_ok() {
            // Resume even when the snapshot failed; the task also resumes
            // by itself at the quiesce timeout.
            if let Err(e) = hook.resume(&target, backup.quiesce_timeout).await {
                tracing::warn!(claim = %name, error = %e, "resume hook failed; the task resumes at its timeout");
            }
        }
        let record = taken?;
        let hook_error = quiesced.err().filter(|_| !matches!(hook, Hook::None)).map(|e| e.to_string());
        Ok((record.id.0, consistency, hook_error))
    }

    /// Copies the claim's snapshots each replica lacks, then applies the
    /// replica's retention; records lag and errors in the book.
    pub(super) async fn replicate_claim(&self, name: &ClaimName, policy: &Policy) {
        // Background snapshots are no backups: replaced within minutes, a
        // replica copying them would copy and forget them over and over.
        let backup =
            |s: &berth_core::SnapshotRecord| !s.pending && s.kind != Some(berth_core::SnapshotKind::Background);
        let primary_snaps: Vec<_> = self.controller.snapshots_of(name).into_iter().filter(backup).collect();
        for replica in &policy.replicas {
            let known = self.backups.get(name).replicas.get(&replica.name).and_then(|r| r.snapshots.clone());
            let wanted: Vec<String> = match &known {
                Some(there) => backup::to_replicate(&primary_snaps, there).iter().map(|s| s.id.0.clone()).collect(),
                // Not listed yet: let the copy find out (it copies only what is missing).
                None => primary_snaps.iter().map(|s| s.id.0.clone()).collect(),
            };
            if known.is_some() && wanted.is_empty() {
                self.note_replica(name, replica, &primary_snaps, known.unwrap_or_default(), None, false);
                continue;
            }
            let volumes = Arc::clone(self.controller.volumes().inner());
            let replicas = Arc::clone(&self.replicas);
            let (policy_r, claim) = (replica.clone(), name.clone());
            let result = tokio::task::spawn_blocking(move || {
                let primary = volumes.repo()?;
                let target = replicas.open(&policy_r.location)?;
                let done = replicate(primary, &target, &policy_r, &claim, &wanted);
                if done.is_err() {
                    replicas.close(&policy_r.location);
                }
                done
            })
            .await;
            match result {
                Ok(Ok(done)) => {
                    if done.copied > 0 || done.forgotten > 0 {
                        let message = format!(
                            "replica {}: copied {} snapshot(s), forgot {} by its retention",
                            replica.name, done.copied, done.forgotten
                        );
                        let mut event = EventRecord::new(Utc::now(), Some(name), "replicated", message);
                        event.data = serde_json::json!({ "replica": replica.name, "copied": done.copied, "forgotten": done.forgotten });
                        self.controller.log(event).await;
                    }
                    self.note_replica(name, replica, &primary_snaps, done.snapshots, None, done.copied > 0);
                }
                Ok(Err(e)) => {
                    tracing::warn!(claim = %name, replica = %replica.name, error = %e, "replication failed");
                    self.note_replica(
                        name,
                        replica,
                        &primary_snaps,
                        known.unwrap_or_default(),
                        Some(e.to_string()),
                        false,
                    );
                }
                Err(e) => tracing::error!(error = %e, "replication task panicked"),
            }
        }
    }

    fn note_replica(
        &self,
        name: &ClaimName,
        replica: &backup::Replica,
        primary: &[berth_core::SnapshotRecord],
        there: Vec<berth_core::SnapshotRecord>,
        error: Option<String>,
        copied: bool,
    ) {
        let state = backup::replica_state(primary, &there, Utc::now());
        self.backups.update(name, |b| {
            let last_copy = b.replicas.get(&replica.name).and_then(|r| r.last_copy);
            b.replicas.insert(
                replica.name.clone(),
                ReplicaReport {
                    location: replica.location.clone(),
                    state,
                    last_copy: if copied { Some(Utc::now()) } else { last_copy },
                    error,
                    snapshots: Some(there),
                },
            );
        });
    }
}

/// The claim's own task, if it is running.
fn running_task<'a>(claim: &ClaimRecord, tasks: &'a [TaskInfo]) -> Option<&'a TaskInfo> {
    let arn = claim.task.as_ref()?;
    tasks
        .iter()
        .find(|t| &t.arn == arn && t.last_status == TaskStatus::Running && t.desired_status == TaskStatus::Running)
}

fn hook_of(backup: &BackupConfig, command: &[String]) -> Hook {
    match backup.hook_for(command) {
        HookKind::Http => Hook::Http { quiesce: backup.quiesce_path.clone(), resume: backup.resume_path.clone() },
        HookKind::Command => {
            Hook::Command { quiesce: backup.quiesce_command.clone(), resume: backup.resume_command.clone() }
        }
        HookKind::None => Hook::None,
    }
}

impl<R: HostRuntime> Platform<R> {
    /// `berth backup now CLAIM`: a scheduled snapshot of a running claim
    /// at once, then replication, as the loop would do when it is due.
    pub async fn backup_now(&self, name: &ClaimName) -> Result<BackupOutcome, PlatformError> {
        let claim = self.ledger.claim(name).await?.ok_or_else(|| PlatformError::NoClaim(name.clone()))?;
        let (service, policy) = self
            .backup_policies()
            .into_iter()
            .find(|(s, _)| s.name == claim.service)
            .ok_or_else(|| PlatformError::NoBackupPolicy(claim.service.clone()))?;
        let outcome = self.scheduled_snapshot(name, &service, &policy).await;
        if let Some(e) = &outcome.error {
            return Err(PlatformError::Backup(format!("claim {name}: scheduled snapshot failed: {e}")));
        }
        self.replicate_claim(name, &policy).await;
        Ok(outcome)
    }

    /// Point-in-time recovery from a replica: the claim's newest snapshot
    /// there at or before `at` is copied back into the primary (where
    /// retention may have forgotten it, or which may be new and empty), and
    /// its id in the primary is returned for [`Platform::restore`].
    pub async fn bring_back(
        &self,
        name: &ClaimName,
        from: &str,
        at: chrono::DateTime<Utc>,
    ) -> Result<berth_core::SnapshotId, PlatformError> {
        let claim = self.ledger.claim(name).await?.ok_or_else(|| PlatformError::NoClaim(name.clone()))?;
        let replica = self
            .backup_policies()
            .into_iter()
            .find(|(s, _)| s.name == claim.service)
            .and_then(|(_, p)| p.replicas.into_iter().find(|r| r.name == from))
            .ok_or_else(|| PlatformError::NoReplica(claim.service.clone(), from.to_owned()))?;
        let volumes = Arc::clone(self.controller.volumes().inner());
        let replicas = Arc::clone(&self.replicas);
        let claim_name = name.clone();
        let found = tokio::task::spawn_blocking(move || -> Result<Option<String>, berth_repo::RepoError> {
            let source = replicas.open(&replica.location)?;
            let there: Vec<_> =
                source.list()?.iter().map(crate::to_record).filter(|s| s.claim.as_ref() == Some(&claim_name)).collect();
            let Some(chosen) = backup::at_or_before(&there, at) else { return Ok(None) };
            let primary = volumes.repo()?;
            source.copy_to(primary, std::slice::from_ref(&chosen.id.0))?;
            // A copy keeps its original's time and tags: that finds it
            // whether it was copied now or was there all along.
            let back = primary
                .list()?
                .into_iter()
                .find(|s| s.claim.as_deref() == Some(claim_name.as_str()) && crate::snapshot_time(s) == chosen.time);
            Ok(back.map(|s| s.id))
        })
        .await
        .map_err(|e| PlatformError::Backup(e.to_string()))?
        .map_err(|e| PlatformError::Backup(e.to_string()))?;
        let id = found.ok_or_else(|| PlatformError::NoSnapshotAt(name.clone(), at.to_rfc3339()))?;
        self.controller.refresh_snapshots().await?;
        Ok(berth_core::SnapshotId(id))
    }
}
