//! `[service.backup]`: scheduled snapshots, replicas, verification and
//! recovery objectives in berth.toml, and the policy they make.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, opt_duration, Invalid, RetentionConfig};

/// `[service.backup]`: scheduled snapshots of running claims, copied to
/// replicas, verified by restores, judged against recovery objectives.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// A snapshot whenever a claim's newest is this old ("1h")…
    #[serde(default, deserialize_with = "opt_duration")]
    pub interval: Option<Duration>,
    /// …or at the times of a cron expression ("0 * * * *", UTC).
    pub cron: Option<String>,
    /// How the task is quiesced first: `http` (POST to `quiesce_path` and
    /// `resume_path` on the task's port; the default for `berth serve`),
    /// `command` (run `quiesce_command` and `resume_command`), or `none`
    /// (the default for other workloads). Without a working hook a
    /// snapshot is marked crash-consistent.
    pub hook: Option<HookKind>,
    #[serde(default = "quiesce_path")]
    pub quiesce_path: String,
    #[serde(default = "resume_path")]
    pub resume_path: String,
    #[serde(default)]
    pub quiesce_command: Vec<String>,
    #[serde(default)]
    pub resume_command: Vec<String>,
    /// How long the task holds writes at most; a hook slower than this fails.
    #[serde(default = "quiesce_timeout", deserialize_with = "duration")]
    pub quiesce_timeout: Duration,
    /// Retention of scheduled snapshots (stop snapshots keep `[service.retention]`).
    #[serde(default = "backup_retention")]
    pub retention: RetentionConfig,
    pub lock: Option<LockConfig>,
    #[serde(default, rename = "replica")]
    pub replicas: Vec<ReplicaConfig>,
    #[serde(default)]
    pub objectives: ObjectivesConfig,
    /// How often each claim's newest snapshot is restored and checked.
    #[serde(default, deserialize_with = "opt_duration")]
    pub verify_interval: Option<Duration>,
    /// `berth doctor` reports a claim without a passed verification this
    /// recent (default: twice verify_interval).
    #[serde(default, deserialize_with = "opt_duration")]
    pub verify_window: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    Http,
    Command,
    None,
}

fn quiesce_path() -> String {
    "/v1/quiesce".into()
}
fn resume_path() -> String {
    "/v1/resume".into()
}
fn quiesce_timeout() -> Duration {
    Duration::from_secs(30)
}
/// A day of hourly snapshots and a week of daily ones.
fn backup_retention() -> RetentionConfig {
    RetentionConfig { keep_last: Some(24), keep_daily: Some(7), ..RetentionConfig::none() }
}

/// `[service.backup.lock]`: every scheduled snapshot is locked this long.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockConfig {
    pub mode: berth_core::LockMode,
    #[serde(deserialize_with = "duration")]
    pub duration: Duration,
}

/// `[[service.backup.replica]]`: a second repository (folder or S3 URL).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    pub name: String,
    pub repo: String,
    /// Default: the primary's backup retention.
    pub retention: Option<RetentionConfig>,
}

/// `[service.backup.objectives]`: what a recovery may lose at most.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectivesConfig {
    #[serde(default, deserialize_with = "opt_duration")]
    pub rpo: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub rto: Option<Duration>,
}

impl BackupConfig {
    /// The hook in effect: `http` for `berth serve` (an empty command), else `none`.
    pub fn hook_for(&self, command: &[String]) -> HookKind {
        self.hook.unwrap_or(if command.is_empty() { HookKind::Http } else { HookKind::None })
    }

    pub(super) fn validate(&self, service: &str, command: &[String]) -> Result<(), Invalid> {
        let at = |m: String| format!("service {service:?}: [service.backup] {m}");
        match (&self.interval, &self.cron) {
            (Some(_), Some(_)) => return Err(Invalid(at("has both interval and cron; pick one".into()))),
            (None, None) => return Err(Invalid(at("needs interval (\"1h\") or cron (\"0 * * * *\")".into()))),
            (Some(d), None) if d.is_zero() => return Err(Invalid(at("interval must be above 0".into()))),
            _ => {}
        }
        self.policy().map_err(|e| Invalid(at(e.0)))?;
        if self.hook_for(command) == HookKind::Command && self.quiesce_command.is_empty() {
            return Err(Invalid(at("hook = \"command\" needs quiesce_command (and usually resume_command)".into())));
        }
        if self.quiesce_timeout.is_zero() {
            return Err(Invalid(at("quiesce_timeout must be above 0".into())));
        }
        for (i, r) in self.replicas.iter().enumerate() {
            if r.name.is_empty() || !r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(Invalid(at(format!("replica name {:?} must be letters, digits, '-' or '_'", r.name))));
            }
            if self.replicas[..i].iter().any(|o| o.name == r.name) {
                return Err(Invalid(at(format!("replica {:?} is configured twice", r.name))));
            }
            if r.repo.is_empty() {
                return Err(Invalid(at(format!("replica {:?} needs repo (a folder or an s3:// URL)", r.name))));
            }
        }
        if self.verify_interval.is_some_and(|d| d.is_zero()) {
            return Err(Invalid(at("verify_interval must be above 0".into())));
        }
        Ok(())
    }

    /// Core's view of the policy.
    pub fn policy(&self) -> Result<berth_core::backup::Policy, Invalid> {
        use berth_core::backup::{LockPolicy, Objectives, Policy, Replica, Schedule};
        let schedule = match (&self.interval, &self.cron) {
            (_, Some(c)) => Schedule::cron(c)?,
            (Some(d), None) => Schedule::Every(*d),
            (None, None) => return Err("needs interval or cron".into()),
        };
        let retention = self.retention.keep();
        Ok(Policy {
            schedule,
            lock: self.lock.as_ref().map(|l| LockPolicy { mode: l.mode, duration: l.duration }),
            replicas: self
                .replicas
                .iter()
                .map(|r| Replica {
                    name: r.name.clone(),
                    location: r.repo.clone(),
                    retention: r.retention.as_ref().map_or_else(|| retention.clone(), RetentionConfig::keep),
                })
                .collect(),
            retention,
            objectives: Objectives { rpo: self.objectives.rpo, rto: self.objectives.rto },
            verify_every: self.verify_interval,
            verify_window: self.verify_window,
        })
    }
}
