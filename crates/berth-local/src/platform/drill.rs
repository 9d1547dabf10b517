//! Recovery checks: restore verification and disaster-recovery drills.
//!
//! Both do what a real recovery does, on the side: take the claim's newest
//! snapshot from a repository (the primary, or a replica as if the primary
//! were gone), restore it into a scratch volume (every blob is checked
//! against its hash on the way), check the restored tree against the
//! snapshot's own count of files and bytes, start a canary task of the
//! service on it and wait for its health check. The claim's own task and
//! volume are never touched. The time from the start to a healthy canary is
//! the measured RTO; the age of the snapshot at the start is the measured
//! RPO. A verification runs on a schedule from the primary; a drill runs on
//! request, from a replica by default, and is judged against the
//! objectives of `[service.backup.objectives]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::backup::{Objectives, Policy, Verdicts};
use berth_core::ledger::{EventRecord, Ledger};
use berth_core::ClaimName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::config::ServiceConfig;
use super::{Platform, PlatformError};
use crate::host::HostRuntime;

/// Which check it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    Verify,
    Drill,
}

/// What a recovery check found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrillReport {
    pub claim: String,
    pub kind: CheckKind,
    /// `primary` or the replica's name.
    pub source: String,
    pub location: String,
    pub snapshot: Option<String>,
    pub snapshot_time: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub restore_seconds: Option<f64>,
    pub files: u64,
    pub bytes: u64,
    pub data_ok: bool,
    pub healthy: bool,
    /// Start to healthy canary.
    pub rto_seconds: Option<f64>,
    /// The snapshot's age at the start: the data a real recovery would lose.
    pub rpo_seconds: Option<f64>,
    pub objectives: Objectives,
    pub verdicts: Option<Verdicts>,
    pub passed: bool,
    pub error: Option<String>,
}

/// What the restore step hands the canary step.
struct Restored {
    snapshot: String,
    time: DateTime<Utc>,
    files: u64,
    bytes: u64,
    seconds: f64,
}

impl<R: HostRuntime> Platform<R> {
    /// Runs a recovery check of `claim` from the primary (`from: None`) or
    /// the named replica, records it in the book and the event log, and
    /// returns it. A failed check is a report with `passed: false`; only a
    /// request that makes no sense (no such claim, service or replica) is
    /// an error.
    pub async fn recovery_check(
        &self,
        claim: &ClaimName,
        from: Option<&str>,
        kind: CheckKind,
    ) -> Result<DrillReport, PlatformError> {
        let record = self.ledger.claim(claim).await?.ok_or_else(|| PlatformError::NoClaim(claim.clone()))?;
        let service = self
            .config
            .services
            .iter()
            .find(|s| s.name == record.service)
            .cloned()
            .ok_or_else(|| PlatformError::NoService(record.service.clone()))?;
        let policy = service.backup.as_ref().and_then(|b| b.policy().ok());
        let (source, location) = match from {
            None => ("primary".to_owned(), self.state.repository().display().to_string()),
            Some(name) => {
                let replica = policy
                    .as_ref()
                    .and_then(|p| p.replicas.iter().find(|r| r.name == name))
                    .ok_or_else(|| PlatformError::NoReplica(service.name.clone(), name.to_owned()))?;
                (replica.name.clone(), replica.location.clone())
            }
        };
        let report = self.run_check(claim, &service, policy.as_ref(), &source, &location, kind).await;
        let (event_kind, verdict) = match (kind, report.passed) {
            (CheckKind::Verify, true) => ("restore-verified", "passed"),
            (CheckKind::Verify, false) => ("restore-verify-failed", "FAILED"),
            (CheckKind::Drill, true) => ("dr-drill", "passed"),
            (CheckKind::Drill, false) => ("dr-drill-failed", "FAILED"),
        };
        let what = if kind == CheckKind::Verify { "restore verification" } else { "DR drill" };
        let detail = match (&report.error, report.rto_seconds, report.rpo_seconds) {
            (Some(e), _, _) => format!(": {e}"),
            (None, Some(rto), Some(rpo)) => format!(": RTO {rto:.1} s, RPO {rpo:.1} s"),
            _ => String::new(),
        };
        let message = format!("{what} from {source} {verdict}{detail}");
        let mut event = EventRecord::new(Utc::now(), Some(claim), event_kind, message);
        event.data = serde_json::to_value(&report).unwrap_or_default();
        self.controller.log(event).await;
        self.backups.update(claim, |b| {
            match kind {
                CheckKind::Verify => b.last_verification = Some(report.clone()),
                CheckKind::Drill => b.last_drill = Some(report.clone()),
            }
            // A drill restores and starts a canary as a verification does:
            // a passed one counts as a verified snapshot too.
            if report.passed {
                b.last_verified = Some(report.started_at);
            } else {
                b.last_verify_failed = Some(report.started_at);
            }
        });
        Ok(report)
    }

    async fn run_check(
        &self,
        claim: &ClaimName,
        service: &ServiceConfig,
        policy: Option<&Policy>,
        source: &str,
        location: &str,
        kind: CheckKind,
    ) -> DrillReport {
        let started_at = Utc::now();
        let started = Instant::now();
        let objectives = policy.map(|p| p.objectives).unwrap_or_default();
        let mut report = DrillReport {
            claim: claim.to_string(),
            kind,
            source: source.to_owned(),
            location: location.to_owned(),
            snapshot: None,
            snapshot_time: None,
            started_at,
            restore_seconds: None,
            files: 0,
            bytes: 0,
            data_ok: false,
            healthy: false,
            rto_seconds: None,
            rpo_seconds: None,
            objectives,
            verdicts: None,
            passed: false,
            error: None,
        };
        let scratch = self.state.root().join("scratch").join(format!(
            "{}-{claim}-{:08x}",
            if kind == CheckKind::Verify { "verify" } else { "drill" },
            fastrand::u32(..)
        ));
        let restored = self.restore_scratch(claim, source, location, &scratch).await;
        let outcome = match restored {
            Ok(r) => {
                report.snapshot = Some(r.snapshot.clone());
                report.snapshot_time = Some(r.time);
                report.restore_seconds = Some(r.seconds);
                report.rpo_seconds = Some((started_at - r.time).to_std().unwrap_or_default().as_secs_f64());
                report.files = r.files;
                report.bytes = r.bytes;
                report.data_ok = true;
                self.canary(claim, service, &scratch).await.map_err(|e| e.to_string())
            }
            Err((snapshot, e)) => {
                report.snapshot = snapshot;
                Err(e.to_string())
            }
        };
        match outcome {
            Ok(()) => {
                report.healthy = true;
                let rto = started.elapsed();
                report.rto_seconds = Some(rto.as_secs_f64());
                let rpo = Duration::from_secs_f64(report.rpo_seconds.unwrap_or_default());
                let verdicts = objectives.judge(rpo, rto);
                report.verdicts = Some(verdicts);
                report.passed = kind == CheckKind::Verify || verdicts.all_met();
                if !report.passed {
                    report.error = Some(missed(&objectives, rpo, rto));
                }
            }
            Err(e) => report.error = Some(format!("claim {claim}: {e}")),
        }
        let cleanup = scratch.clone();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(cleanup)).await;
        report
    }

    /// Restores the claim's newest snapshot in the source into `scratch`
    /// and checks the tree against the snapshot's summary. A failure says
    /// which snapshot it was, once one was chosen.
    async fn restore_scratch(
        &self,
        claim: &ClaimName,
        source: &str,
        location: &str,
        scratch: &Path,
    ) -> Result<Restored, (Option<String>, RestoreFailure)> {
        let volumes = Arc::clone(self.controller.volumes().inner());
        let replicas = Arc::clone(&self.replicas);
        let (claim, primary, location, scratch) =
            (claim.clone(), source == "primary", location.to_owned(), scratch.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let none = |e: RestoreFailure| (None, e);
            let replica;
            let repo = if primary {
                volumes.repo().map_err(|e| none(e.into()))?
            } else {
                replica = replicas.open(&location).map_err(|e| none(e.into()))?;
                &*replica
            };
            let snaps = repo.list().map_err(|e| none(e.into()))?;
            let newest = snaps
                .iter()
                .filter(|s| s.claim.as_deref() == Some(claim.as_str()))
                .max_by_key(|s| s.unix_time)
                .ok_or_else(|| none(RestoreFailure::NoSnapshot { claim: claim.clone(), location: location.clone() }))?;
            let chosen = |e: RestoreFailure| (Some(newest.id.clone()), e);
            let scratch_io = |source| RestoreFailure::Scratch { path: scratch.clone(), source };
            std::fs::create_dir_all(&scratch).map_err(|e| chosen(scratch_io(e)))?;
            let t = Instant::now();
            repo.restore(&newest.id, &scratch)
                .map_err(|source| chosen(RestoreFailure::Restore { snapshot: newest.id.clone(), source }))?;
            let seconds = t.elapsed().as_secs_f64();
            let (files, bytes) = tree_size(&scratch).map_err(|e| chosen(scratch_io(e)))?;
            if newest.files > 0 && (files != newest.files || bytes != newest.bytes) {
                return Err(chosen(RestoreFailure::Differs {
                    snapshot: newest.id.clone(),
                    restored: (files, bytes),
                    recorded: (newest.files, newest.bytes),
                }));
            }
            Ok(Restored { snapshot: newest.id.clone(), time: crate::snapshot_time(newest), files, bytes, seconds })
        })
        .await
        .map_err(|e| (None, RestoreFailure::Task(e.to_string())))?
    }
}

/// Why a verification's or drill's restore failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreFailure {
    #[error(transparent)]
    Repo(#[from] berth_repo::RepoError),
    #[error("no snapshot of claim {claim} in {location}")]
    NoSnapshot { claim: ClaimName, location: String },
    #[error("the scratch volume {}: {source}", path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("restore of snapshot {snapshot}: {source}")]
    Restore {
        snapshot: String,
        #[source]
        source: berth_repo::RepoError,
    },
    #[error("snapshot {snapshot} restored {} files / {} bytes where it recorded {} / {}", restored.0, restored.1, recorded.0, recorded.1)]
    Differs { snapshot: String, restored: (u64, u64), recorded: (u64, u64) },
    #[error("the restore task failed: {0}")]
    Task(String),
}

fn missed(objectives: &Objectives, rpo: Duration, rto: Duration) -> String {
    let mut out = Vec::new();
    if let Some(o) = objectives.rpo.filter(|o| rpo > *o) {
        out.push(format!("RPO {:.1} s is over its objective {:.0} s", rpo.as_secs_f64(), o.as_secs_f64()));
    }
    if let Some(o) = objectives.rto.filter(|o| rto > *o) {
        out.push(format!("RTO {:.1} s is over its objective {:.0} s", rto.as_secs_f64(), o.as_secs_f64()));
    }
    out.join("; ")
}

/// Regular files and their bytes under `root`.
pub(crate) fn tree_size(root: &Path) -> std::io::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                files += 1;
                bytes += entry.metadata()?.len();
            }
        }
    }
    Ok((files, bytes))
}

impl<R: HostRuntime> Platform<R> {
    /// The first replica of the claim's service, where a drill recovers
    /// from unless told otherwise.
    pub async fn first_replica(&self, claim: &ClaimName) -> Result<Option<String>, PlatformError> {
        let record = self.ledger.claim(claim).await?.ok_or_else(|| PlatformError::NoClaim(claim.clone()))?;
        Ok(self
            .config
            .services
            .iter()
            .find(|s| s.name == record.service)
            .and_then(|s| s.backup.as_ref())
            .and_then(|b| b.replicas.first())
            .map(|r| r.name.clone()))
    }
}
