//! The backup report of every claim (`berth backups`, `berth doctor`,
//! `berth dr report`) and the same figures as Prometheus metrics.
//!
//! A claim's problems are what an operator must act on: a failed or
//! missing scheduled snapshot, a replica that failed or is further behind
//! than the RPO objective, a restore not verified inside the policy's
//! window. `berth doctor` exits non-zero while any claim has one.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use berth_core::backup::{self, VerifyStatus};
use berth_core::ledger::{EventRecord, Ledger};
use berth_core::{ClaimName, DesiredState};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::backup_book::ClaimBackup;
use super::drill::CheckKind;
use super::{Platform, PlatformError};
use crate::host::HostRuntime;

#[derive(Debug, Serialize)]
pub struct ClaimReport {
    pub claim: String,
    pub service: String,
    pub schedule: String,
    pub objectives: backup::Objectives,
    pub newest_snapshot: Option<SnapshotLine>,
    pub next_due: Option<DateTime<Utc>>,
    pub verification: VerificationLine,
    #[serde(flatten)]
    pub book: ClaimBackup,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SnapshotLine {
    pub id: String,
    pub time: DateTime<Utc>,
    pub kind: Option<String>,
    pub consistency: Option<berth_core::Consistency>,
    pub age_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct VerificationLine {
    /// `None` when the policy sets no verification.
    pub status: Option<VerifyStatus>,
    #[serde(with = "berth_core::serde_secs::option")]
    pub window: Option<Duration>,
}

impl<R: HostRuntime> Platform<R> {
    /// One line per claim of a service with a backup policy.
    pub async fn backup_report(&self) -> Result<Vec<ClaimReport>, PlatformError> {
        let now = Utc::now();
        let policies = self.backup_policies();
        let mut out = Vec::new();
        for claim in self.ledger.claims().await? {
            if claim.desired == DesiredState::Deleted {
                continue;
            }
            let Some((_, policy)) = policies.iter().find(|(s, _)| s.name == claim.service) else { continue };
            let snaps = self.controller.snapshots_of(&claim.name);
            let newest = snaps.iter().filter(|s| !s.pending).max_by_key(|s| s.time);
            let book = self.backups.get(&claim.name);
            let window = policy.window();
            // Without a verification schedule only a failed check (one run
            // by hand, or a drill) is a verdict; with one, so is staleness.
            let status = match window {
                Some(w) => Some(backup::verify_status(book.last_verified, book.last_verify_failed, w, now)),
                None => Some(backup::verify_status(book.last_verified, book.last_verify_failed, Duration::MAX, now))
                    .filter(|s| *s == VerifyStatus::Failed),
            };
            let mut problems = Vec::new();
            if let Some(e) = book.last_backup.as_ref().and_then(|b| b.error.as_ref()) {
                problems.push(format!("the last scheduled snapshot failed: {e}"));
            }
            for (name, r) in &book.replicas {
                if let Some(e) = &r.error {
                    problems.push(format!("replica {name}: {e}"));
                }
                if let (Some(rpo), Some(objective)) = (r.state.rpo_now, policy.objectives.rpo) {
                    if rpo > objective + policy.schedule.period(now) {
                        problems.push(format!(
                            "replica {name} is {:.0} s behind, over the RPO objective of {:.0} s",
                            rpo.as_secs_f64(),
                            objective.as_secs_f64()
                        ));
                    }
                }
            }
            for r in policy.replicas.iter().filter(|r| !book.replicas.contains_key(&r.name)) {
                problems.push(format!("replica {} has not been written to yet", r.name));
            }
            match status {
                Some(VerifyStatus::Failed) => problems.push(format!(
                    "the last restore verification failed: {}",
                    book.last_verification.as_ref().and_then(|v| v.error.clone()).unwrap_or_default()
                )),
                Some(VerifyStatus::Overdue) => problems.push(format!(
                    "no verified snapshot within {}",
                    humantime::format_duration(window.unwrap_or_default())
                )),
                _ => {}
            }
            out.push(ClaimReport {
                claim: claim.name.to_string(),
                service: claim.service.clone(),
                schedule: policy.schedule.to_string(),
                objectives: policy.objectives,
                newest_snapshot: newest.map(|s| SnapshotLine {
                    id: s.id.0.clone(),
                    time: s.time,
                    kind: s.kind.map(|k| k.to_string()),
                    consistency: s.consistency,
                    age_seconds: (now - s.time).to_std().unwrap_or_default().as_secs_f64(),
                }),
                next_due: (claim.task.is_some()).then(|| backup::next_due(&policy.schedule, &snaps, now)),
                verification: VerificationLine { status, window },
                book,
                problems,
            });
        }
        Ok(out)
    }

    /// The report as Prometheus text.
    pub async fn backup_metrics(&self) -> Result<String, PlatformError> {
        let report = self.backup_report().await?;
        let mut out = String::new();
        let mut family = |name: &str, help: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        let claim = |c: &ClaimReport| format!("claim=\"{}\",service=\"{}\"", c.claim, c.service);
        family(
            "berth_backup_age_seconds",
            "Age of the claim's newest snapshot.",
            report.iter().filter_map(|c| Some((claim(c), c.newest_snapshot.as_ref()?.age_seconds))).collect(),
        );
        let replicas = |f: &dyn Fn(&super::backup_book::ReplicaReport) -> Option<f64>| -> Vec<(String, f64)> {
            report
                .iter()
                .flat_map(|c| {
                    c.book
                        .replicas
                        .iter()
                        .filter_map(|(n, r)| Some((format!("{},replica=\"{n}\"", claim(c)), f(r)?)))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        family(
            "berth_replication_lag_seconds",
            "How far the replica's newest snapshot is behind the primary's.",
            replicas(&|r| Some(r.state.lag.as_secs_f64())),
        );
        family(
            "berth_replica_rpo_seconds",
            "Data lost if the primary were lost now: the age of the replica's newest snapshot.",
            replicas(&|r| r.state.rpo_now.map(|d| d.as_secs_f64())),
        );
        family(
            "berth_restore_verified",
            "1 while the claim has a verified restore inside its policy window.",
            report
                .iter()
                .filter_map(|c| Some((claim(c), f64::from(u8::from(c.verification.status? == VerifyStatus::Verified)))))
                .collect(),
        );
        family(
            "berth_dr_rto_seconds",
            "Measured RTO of the claim's last DR drill.",
            report.iter().filter_map(|c| Some((claim(c), c.book.last_drill.as_ref()?.rto_seconds?))).collect(),
        );
        family(
            "berth_dr_rpo_seconds",
            "Measured RPO of the claim's last DR drill.",
            report.iter().filter_map(|c| Some((claim(c), c.book.last_drill.as_ref()?.rpo_seconds?))).collect(),
        );
        family(
            "berth_backup_problems",
            "Problems berth doctor reports for the claim.",
            report.iter().map(|c| (claim(c), c.problems.len() as f64)).collect(),
        );
        Ok(out)
    }

    /// Verifies each claim's newest snapshot when its policy says it is
    /// time, and says so in the event log when a claim falls out of its
    /// window.
    pub(super) async fn verify_loop(self: Arc<Self>) {
        let policies: Vec<_> = self.backup_policies().into_iter().filter(|(_, p)| p.verify_every.is_some()).collect();
        let Some(shortest) = policies.iter().filter_map(|(_, p)| p.verify_every).min() else { return };
        let mut every = tokio::time::interval((shortest / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flagged: std::collections::BTreeSet<ClaimName> = Default::default();
        loop {
            every.tick().await;
            let Ok(claims) = self.ledger.claims().await else { continue };
            for (service, policy) in &policies {
                let period = policy.verify_every.unwrap_or_default();
                for claim in claims.iter().filter(|c| c.service == service.name && c.desired != DesiredState::Deleted) {
                    if self.controller.snapshots_of(&claim.name).is_empty() {
                        continue;
                    }
                    let now = Utc::now();
                    let last = self.backups.get(&claim.name).last_verification.map(|r| r.started_at);
                    if last.is_none_or(|t| (now - t).to_std().unwrap_or_default() >= period) {
                        let _ = self.recovery_check(&claim.name, None, CheckKind::Verify).await;
                    }
                    let book = self.backups.get(&claim.name);
                    let window = policy.window().unwrap_or(period * 2);
                    let status = backup::verify_status(book.last_verified, book.last_verify_failed, window, now);
                    if status == VerifyStatus::Verified {
                        flagged.remove(&claim.name);
                    } else if flagged.insert(claim.name.clone()) {
                        let message = format!("no verified snapshot within {}", humantime::format_duration(window));
                        let event = EventRecord::new(now, Some(&claim.name), "verification-overdue", message);
                        self.controller.log(event).await;
                    }
                }
            }
        }
    }
}
