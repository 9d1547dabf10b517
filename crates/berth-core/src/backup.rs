//! Backups: when a running claim is due a scheduled snapshot, which
//! scheduled snapshots retention forgets, how far a replica lags, whether a
//! claim's restores are verified recently enough, and whether a measured
//! recovery met its objectives.
//!
//! Stop snapshots protect a claim against its task being replaced; backups
//! protect it against everything else (a lost volume, repository or
//! region). Everything here is a pure function of snapshot records, a
//! policy and `now`, so `berth up` and the Lambda decide alike and the rules
//! are tested without a clock.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ledger::ClaimRecord;
use crate::retention::{self, KeepPolicy};
use crate::snapshot::{LockMode, SnapshotId, SnapshotKind, SnapshotLock, SnapshotRecord};

/// A schedule that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cron expression {expression:?}: {reason}")]
pub struct ScheduleError {
    pub expression: String,
    pub reason: String,
}

/// When scheduled snapshots are taken.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// One whenever the claim's newest snapshot is this old.
    Every(Duration),
    /// At each fire time of a cron expression (UTC).
    Cron { expression: String, schedule: Box<cron::Schedule> },
}

impl Schedule {
    /// A cron expression: five fields (minute hour day month weekday), or
    /// six or seven with seconds first and a year last, as the `cron` crate
    /// reads them.
    pub fn cron(expression: &str) -> Result<Self, ScheduleError> {
        let fields = expression.split_whitespace().count();
        let full = if fields == 5 { format!("0 {expression}") } else { expression.to_owned() };
        let schedule = cron::Schedule::from_str(&full)
            .map_err(|e| ScheduleError { expression: expression.to_owned(), reason: e.to_string() })?;
        Ok(Self::Cron { expression: expression.to_owned(), schedule: Box::new(schedule) })
    }

    /// The first time after `last` a snapshot is due.
    pub fn next_after(&self, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every(d) => chrono::Duration::from_std(*d).ok().and_then(|d| last.checked_add_signed(d)),
            Self::Cron { schedule, .. } => schedule.after(&last).next(),
        }
    }

    /// The longest time between two snapshots: the interval, or the widest
    /// gap between the next few fire times of a cron expression. The RPO a
    /// schedule promises while replication keeps up.
    pub fn period(&self, from: DateTime<Utc>) -> Duration {
        match self {
            Self::Every(d) => *d,
            Self::Cron { schedule, .. } => {
                let times: Vec<_> = schedule.after(&from).take(50).collect();
                times.windows(2).filter_map(|w| (w[1] - w[0]).to_std().ok()).max().unwrap_or_default()
            }
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Every(d) => write!(f, "every {}", humanize(*d)),
            Self::Cron { expression, .. } => write!(f, "cron {expression}"),
        }
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        _ => format!("{}s", d.as_secs_f64()),
    }
}

/// A service's backup policy: the schedule, the retention of scheduled
/// snapshots, their lock, the replicas every snapshot is copied to, the
/// objectives a recovery is judged by, and how often restores are verified.
#[derive(Clone, Debug)]
pub struct Policy {
    pub schedule: Schedule,
    pub retention: KeepPolicy,
    pub lock: Option<LockPolicy>,
    pub replicas: Vec<Replica>,
    pub objectives: Objectives,
    /// How often each claim's newest snapshot is restored and checked.
    pub verify_every: Option<Duration>,
    /// A claim whose newest passed verification is older than this is
    /// reported (default: twice `verify_every`).
    pub verify_window: Option<Duration>,
}

impl Policy {
    /// The window `berth doctor` holds verifications to, if any.
    pub fn window(&self) -> Option<Duration> {
        self.verify_window.or(self.verify_every.map(|d| d * 2))
    }
}

/// A second repository every snapshot is copied to, with its own retention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub name: String,
    /// A folder or an S3 URL locally; a region on AWS.
    pub location: String,
    pub retention: KeepPolicy,
}

/// A lock every scheduled snapshot gets when it is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockPolicy {
    pub mode: LockMode,
    #[serde(with = "crate::serde_secs")]
    pub duration: Duration,
}

impl LockPolicy {
    pub fn lock_from(&self, now: DateTime<Utc>) -> SnapshotLock {
        let until = chrono::Duration::from_std(self.duration)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        SnapshotLock { mode: self.mode, until }
    }
}

/// Recovery objectives: how much data (RPO) and time (RTO) a recovery may lose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objectives {
    #[serde(default, with = "crate::serde_secs::option")]
    pub rpo: Option<Duration>,
    #[serde(default, with = "crate::serde_secs::option")]
    pub rto: Option<Duration>,
}

/// Whether a measured recovery met each objective (`None`: no objective set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdicts {
    pub rpo_met: Option<bool>,
    pub rto_met: Option<bool>,
}

impl Verdicts {
    /// False only when an objective is set and was missed.
    pub fn all_met(&self) -> bool {
        self.rpo_met != Some(false) && self.rto_met != Some(false)
    }
}

impl Objectives {
    pub fn judge(&self, rpo: Duration, rto: Duration) -> Verdicts {
        Verdicts { rpo_met: self.rpo.map(|o| rpo <= o), rto_met: self.rto.map(|o| rto <= o) }
    }
}

/// Should a running claim get a scheduled snapshot now? Any snapshot of
/// the claim counts as its newest (a stop snapshot ten seconds ago makes a
/// scheduled one pointless); a claim with none is due at once.
pub fn due(schedule: &Schedule, snapshots: &[SnapshotRecord], now: DateTime<Utc>) -> bool {
    match newest(snapshots) {
        None => true,
        Some(last) => schedule.next_after(last.time).is_some_and(|next| next <= now),
    }
}

/// The background snapshots ([`SnapshotKind::Background`]) of one claim
/// that a newer one replaces: all but the newest. They exist only to be
/// the next snapshot's parent, so one is enough.
pub fn superseded_background(snapshots: &[SnapshotRecord]) -> Vec<SnapshotId> {
    let mut background: Vec<&SnapshotRecord> =
        snapshots.iter().filter(|s| s.kind == Some(SnapshotKind::Background) && !s.pending).collect();
    background.sort_by_key(|s| s.time);
    background.pop();
    background.into_iter().map(|s| s.id.clone()).collect()
}

/// When the next scheduled snapshot is due.
pub fn next_due(schedule: &Schedule, snapshots: &[SnapshotRecord], now: DateTime<Utc>) -> DateTime<Utc> {
    newest(snapshots).and_then(|s| schedule.next_after(s.time)).map_or(now, |t| t.max(now))
}

fn newest(snapshots: &[SnapshotRecord]) -> Option<&SnapshotRecord> {
    snapshots.iter().filter(|s| !s.pending).max_by_key(|s| s.time)
}

/// The scheduled snapshots of one claim that the backup retention forgets
/// now. Stop and manual snapshots are the handoff's retention's (see
/// [`crate::reconcile::forgettable`]); the head and last-known-good
/// snapshots and locked ones are kept whatever their kind.
pub fn forgettable_scheduled(
    claim: Option<&ClaimRecord>,
    snapshots: &[SnapshotRecord],
    policy: &KeepPolicy,
    now: DateTime<Utc>,
) -> Vec<SnapshotId> {
    if policy.is_empty() {
        return Vec::new();
    }
    let scheduled = crate::reconcile::protect(
        claim,
        snapshots.iter().filter(|s| s.kind == Some(SnapshotKind::Scheduled) && !s.pending),
    );
    retention::forgotten(&scheduled, policy, now)
}

/// How a replica stands for one claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    /// The newest snapshot time in the primary and in the replica.
    pub primary_newest: Option<DateTime<Utc>>,
    pub replica_newest: Option<DateTime<Utc>>,
    /// How far the replica is behind the primary (0 when it has the newest).
    #[serde(with = "crate::serde_secs")]
    pub lag: Duration,
    /// The data lost if the primary (volume and repository) were lost now:
    /// everything since the replica's newest snapshot.
    #[serde(with = "crate::serde_secs::option")]
    pub rpo_now: Option<Duration>,
}

/// Compares one claim's snapshots in the primary and in a replica. A copy
/// keeps its original's time, so times compare across repositories.
pub fn replica_state(primary: &[SnapshotRecord], replica: &[SnapshotRecord], now: DateTime<Utc>) -> ReplicaState {
    let primary_newest = newest(primary).map(|s| s.time);
    let replica_newest = newest(replica).map(|s| s.time);
    let lag = match (primary_newest, replica_newest) {
        (Some(p), Some(r)) => (p - r).to_std().unwrap_or_default(),
        (Some(p), None) => (now - p).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    };
    let rpo_now = replica_newest.map(|r| (now - r).to_std().unwrap_or_default());
    ReplicaState { primary_newest, replica_newest, lag, rpo_now }
}

/// Snapshots of one claim in the primary that a replica lacks, oldest
/// first, by time (a copy keeps its original's time).
pub fn to_replicate<'a>(primary: &'a [SnapshotRecord], replica: &[SnapshotRecord]) -> Vec<&'a SnapshotRecord> {
    let mut out: Vec<&SnapshotRecord> =
        primary.iter().filter(|p| !p.pending && !replica.iter().any(|r| r.time == p.time)).collect();
    out.sort_by_key(|s| s.time);
    out
}

/// Whether a claim's restores are verified recently enough: the newest
/// passed verification must be younger than `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyStatus {
    /// A verification passed inside the window.
    Verified,
    /// The last one is older than the window, or none ever passed.
    Overdue,
    /// The newest verification failed.
    Failed,
}

/// Judges one claim from its newest passed and newest failed verification.
pub fn verify_status(
    last_passed: Option<DateTime<Utc>>,
    last_failed: Option<DateTime<Utc>>,
    window: Duration,
    now: DateTime<Utc>,
) -> VerifyStatus {
    if let (Some(f), p) = (last_failed, last_passed) {
        if p.is_none_or(|p| f > p) {
            return VerifyStatus::Failed;
        }
    }
    match last_passed {
        Some(p) if (now - p).to_std().unwrap_or_default() <= window => VerifyStatus::Verified,
        _ => VerifyStatus::Overdue,
    }
}

/// The newest snapshot of one claim at or before `at` (point-in-time recovery).
pub fn at_or_before(snapshots: &[SnapshotRecord], at: DateTime<Utc>) -> Option<&SnapshotRecord> {
    snapshots.iter().filter(|s| !s.pending && s.time <= at).max_by_key(|s| s.time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
    }

    fn snap(id: &str, t: DateTime<Utc>, kind: SnapshotKind) -> SnapshotRecord {
        SnapshotRecord {
            id: SnapshotId(id.into()),
            time: t,
            claim: None,
            generation: None,
            kind: Some(kind),
            pinned: false,
            pending: false,
            lock: None,
            consistency: None,
            volume: None,
        }
    }

    #[test]
    fn an_interval_is_due_once_the_newest_snapshot_of_any_kind_is_that_old() {
        let every = Schedule::Every(Duration::from_secs(3600));
        assert!(due(&every, &[], at(10, 0)), "no snapshot: due at once");
        let s = [snap("a", at(9, 30), SnapshotKind::OnStop)];
        assert!(!due(&every, &s, at(10, 0)), "a stop snapshot 30 min ago counts");
        assert!(due(&every, &s, at(10, 30)));
        assert_eq!(next_due(&every, &s, at(10, 0)), at(10, 30));
        let mut pending = snap("b", at(9, 59), SnapshotKind::Scheduled);
        pending.pending = true;
        assert!(due(&every, &[s[0].clone(), pending], at(10, 30)), "a pending snapshot is not yet one");
    }

    #[test]
    fn cron_fires_at_its_times_and_five_fields_mean_minutes() {
        let hourly = Schedule::cron("15 * * * *").unwrap();
        let s = [snap("a", at(9, 20), SnapshotKind::Scheduled)];
        assert!(!due(&hourly, &s, at(10, 14)));
        assert!(due(&hourly, &s, at(10, 15)));
        assert_eq!(hourly.period(at(0, 0)), Duration::from_secs(3600));
        assert!(Schedule::cron("every hour").unwrap_err().to_string().contains("every hour"));
        let six = Schedule::cron("*/10 * * * * *").unwrap();
        assert_eq!(six.period(at(0, 0)), Duration::from_secs(10));
    }

    #[test]
    fn backup_retention_forgets_only_scheduled_unprotected_unlocked_snapshots() {
        let mut locked = snap("locked", at(1, 0), SnapshotKind::Scheduled);
        locked.lock = Some(SnapshotLock { mode: LockMode::Governance, until: at(23, 0) });
        let snaps = vec![
            locked,
            snap("stop", at(2, 0), SnapshotKind::OnStop),
            snap("s3", at(3, 0), SnapshotKind::Scheduled),
            snap("head", at(4, 0), SnapshotKind::Scheduled),
            snap("s5", at(5, 0), SnapshotKind::Scheduled),
            snap("s6", at(6, 0), SnapshotKind::Scheduled),
        ];
        let mut claim = ClaimRecord::new(crate::ClaimName::parse("web-0").unwrap(), "web", 0, 1, at(0, 0));
        claim.head_snapshot = Some(SnapshotId("head".into()));
        let policy = KeepPolicy { last: Some(2), ..Default::default() };
        let mut gone = forgettable_scheduled(Some(&claim), &snaps, &policy, at(7, 0));
        gone.sort();
        assert_eq!(gone, [SnapshotId("s3".into())]);
        assert!(forgettable_scheduled(None, &snaps, &KeepPolicy::default(), at(7, 0)).is_empty());
    }

    #[test]
    fn a_replica_lags_by_the_primary_snapshots_it_lacks() {
        let primary = [snap("a", at(9, 0), SnapshotKind::Scheduled), snap("b", at(10, 0), SnapshotKind::Scheduled)];
        let replica = [snap("a2", at(9, 0), SnapshotKind::Scheduled)];
        let s = replica_state(&primary, &replica, at(10, 30));
        assert_eq!(s.lag, Duration::from_secs(3600));
        assert_eq!(s.rpo_now, Some(Duration::from_secs(90 * 60)));
        assert_eq!(to_replicate(&primary, &replica).iter().map(|s| s.id.0.as_str()).collect::<Vec<_>>(), ["b"]);
        let caught_up = replica_state(&primary, &primary, at(10, 30));
        assert_eq!(caught_up.lag, Duration::ZERO);
        let empty = replica_state(&primary, &[], at(10, 30));
        assert_eq!((empty.lag, empty.rpo_now), (Duration::from_secs(30 * 60), None));
    }

    #[test]
    fn verification_is_overdue_outside_its_window_and_a_newer_failure_wins() {
        let w = Duration::from_secs(3600);
        assert_eq!(verify_status(None, None, w, at(10, 0)), VerifyStatus::Overdue);
        assert_eq!(verify_status(Some(at(9, 30)), None, w, at(10, 0)), VerifyStatus::Verified);
        assert_eq!(verify_status(Some(at(8, 0)), None, w, at(10, 0)), VerifyStatus::Overdue);
        assert_eq!(verify_status(Some(at(9, 30)), Some(at(9, 45)), w, at(10, 0)), VerifyStatus::Failed);
        assert_eq!(verify_status(Some(at(9, 50)), Some(at(9, 45)), w, at(10, 0)), VerifyStatus::Verified);
    }

    #[test]
    fn objectives_judge_a_measured_recovery_and_pitr_picks_at_or_before() {
        let o = Objectives { rpo: Some(Duration::from_secs(60)), rto: None };
        let v = o.judge(Duration::from_secs(61), Duration::from_secs(5));
        assert_eq!((v.rpo_met, v.rto_met, v.all_met()), (Some(false), None, false));
        assert!(o.judge(Duration::from_secs(60), Duration::from_secs(500)).all_met());
        let snaps = [snap("a", at(9, 0), SnapshotKind::Scheduled), snap("b", at(10, 0), SnapshotKind::OnStop)];
        assert_eq!(at_or_before(&snaps, at(9, 59)).unwrap().id.0, "a");
        assert_eq!(at_or_before(&snaps, at(10, 0)).unwrap().id.0, "b");
        assert!(at_or_before(&snaps, at(8, 0)).is_none());
        let lock = LockPolicy { mode: LockMode::Compliance, duration: Duration::from_secs(3600) }.lock_from(at(9, 0));
        assert_eq!(lock.until, at(10, 0));
    }

    #[test]
    fn only_the_newest_background_snapshot_is_kept() {
        let snaps = [
            snap("b2", at(10, 0), SnapshotKind::Background),
            snap("b1", at(9, 0), SnapshotKind::Background),
            snap("stop", at(9, 30), SnapshotKind::OnStop),
            snap("b3", at(11, 0), SnapshotKind::Background),
            snap("sched", at(8, 0), SnapshotKind::Scheduled),
        ];
        assert_eq!(superseded_background(&snaps), vec![SnapshotId("b1".into()), SnapshotId("b2".into())]);
        assert_eq!(superseded_background(&snaps[2..3]), Vec::<SnapshotId>::new());
    }
}
