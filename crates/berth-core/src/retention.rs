//! Retention: which snapshots of a claim to keep and why.
//!
//! A [`KeepPolicy`] is restic's `forget --keep-*` vocabulary: keep the last
//! N snapshots, the newest snapshot of each of the last N hours, days, weeks
//! (ISO weeks), months and years that have snapshots, and every snapshot
//! taken within a duration of `now`. A snapshot is kept if any rule keeps it;
//! a pinned snapshot (last known good) is always kept. [`plan`] is pure: it
//! takes the snapshots of one claim and `now`, and returns a verdict with its
//! reasons for each, so a dry run can print exactly what a real run deletes.
//! Buckets are computed in UTC, so a plan does not change with the machine's
//! time zone.
//!
//! Caveat: `within` counts back from `now`, not from the newest snapshot as
//! restic does; if snapshots stop, `last` and the calendar rules still keep
//! the newest ones, so a stalled schedule never empties a claim unless the
//! policy keeps nothing but `within`.

use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::snapshot::{SnapshotId, SnapshotRecord};

/// How many snapshots to keep, per rule. `None` (or 0) disables a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepPolicy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    #[serde(default, with = "opt_secs")]
    pub within: Option<Duration>,
}

impl KeepPolicy {
    /// Whether any rule is set; an empty policy keeps everything.
    pub fn is_empty(&self) -> bool {
        let counts = [self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly];
        counts.iter().all(|c| c.unwrap_or(0) == 0) && self.within.is_none()
    }
}

/// The decision for one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub id: SnapshotId,
    pub time: DateTime<Utc>,
    pub keep: bool,
    /// Every rule that keeps it ("pinned", "keep-last", "keep-daily", …);
    /// empty when it is to be forgotten.
    pub reasons: Vec<&'static str>,
}

type Bucket = fn(&DateTime<Utc>) -> i64;

fn hour(t: &DateTime<Utc>) -> i64 {
    day(t) * 24 + t.hour() as i64
}
fn day(t: &DateTime<Utc>) -> i64 {
    t.num_days_from_ce() as i64
}
fn week(t: &DateTime<Utc>) -> i64 {
    let w = t.iso_week();
    w.year() as i64 * 100 + w.week() as i64
}
fn month(t: &DateTime<Utc>) -> i64 {
    t.year() as i64 * 12 + t.month0() as i64
}
fn year(t: &DateTime<Utc>) -> i64 {
    t.year() as i64
}

/// The snapshots [`plan`] does not keep, newest first: what a retention
/// pass deletes.
pub fn forgotten(snapshots: &[SnapshotRecord], policy: &KeepPolicy, now: DateTime<Utc>) -> Vec<SnapshotId> {
    plan(snapshots, policy, now).into_iter().filter(|v| !v.keep).map(|v| v.id).collect()
}

/// Decides, for the snapshots of one claim, which to keep at `now`.
/// Verdicts come newest first.
pub fn plan(snapshots: &[SnapshotRecord], policy: &KeepPolicy, now: DateTime<Utc>) -> Vec<Verdict> {
    let mut sorted: Vec<&SnapshotRecord> = snapshots.iter().collect();
    // Newest first; ties broken by id so the plan is deterministic.
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));

    let calendar: [(&'static str, Option<u32>, Bucket); 5] = [
        ("keep-hourly", policy.hourly, hour),
        ("keep-daily", policy.daily, day),
        ("keep-weekly", policy.weekly, week),
        ("keep-monthly", policy.monthly, month),
        ("keep-yearly", policy.yearly, year),
    ];
    // Per calendar rule: how many buckets are still to fill, and the last
    // bucket seen (only the newest snapshot of a bucket counts).
    let mut left: Vec<u32> = calendar.iter().map(|(_, n, _)| n.unwrap_or(0)).collect();
    let mut last_bucket: Vec<Option<i64>> = vec![None; calendar.len()];
    let mut last_left = policy.last.unwrap_or(0);
    let within_from = policy.within.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| now - d);

    sorted
        .into_iter()
        .map(|s| {
            let mut reasons = Vec::new();
            if s.pinned {
                reasons.push("pinned");
            }
            if let Some(lock) = s.locked_at(now) {
                reasons.push(match lock.mode {
                    crate::snapshot::LockMode::Governance => "locked-governance",
                    crate::snapshot::LockMode::Compliance => "locked-compliance",
                });
            }
            if last_left > 0 {
                last_left -= 1;
                reasons.push("keep-last");
            }
            if within_from.is_some_and(|from| s.time >= from) {
                reasons.push("keep-within");
            }
            for (i, (reason, _, bucket)) in calendar.iter().enumerate() {
                let b = bucket(&s.time);
                if left[i] > 0 && last_bucket[i] != Some(b) {
                    left[i] -= 1;
                    reasons.push(*reason);
                }
                last_bucket[i] = Some(b);
            }
            if policy.is_empty() {
                reasons.push("no policy");
            }
            Verdict { id: s.id.clone(), time: s.time, keep: !reasons.is_empty(), reasons }
        })
        .collect()
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn snap(id: &str, t: DateTime<Utc>, pinned: bool) -> SnapshotRecord {
        SnapshotRecord {
            id: SnapshotId(id.into()),
            time: t,
            claim: None,
            generation: None,
            kind: None,
            pinned,
            pending: false,
            lock: None,
            consistency: None,
            volume: None,
        }
    }

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
    }

    fn kept(v: &[Verdict]) -> Vec<&str> {
        v.iter().filter(|v| v.keep).map(|v| v.id.0.as_str()).collect()
    }

    #[test]
    fn keep_last_and_daily() {
        // Three a day for four days.
        let mut snaps = Vec::new();
        for d in 1..=4 {
            for h in [1, 9, 17] {
                snaps.push(snap(&format!("d{d}h{h}"), at(d, h), false));
            }
        }
        let policy = KeepPolicy { last: Some(2), daily: Some(3), ..Default::default() };
        let v = plan(&snaps, &policy, at(5, 0));
        assert_eq!(kept(&v), ["d4h17", "d4h9", "d3h17", "d2h17"]);
        assert_eq!(v[0].reasons, ["keep-last", "keep-daily"]);
        assert_eq!(v[1].reasons, ["keep-last"]);
        assert!(v.iter().filter(|v| !v.keep).all(|v| v.reasons.is_empty()));
    }

    #[test]
    fn pinned_is_always_kept() {
        let snaps = vec![snap("old-good", at(1, 0), true), snap("a", at(2, 0), false), snap("b", at(3, 0), false)];
        let v = plan(&snaps, &KeepPolicy { last: Some(1), ..Default::default() }, at(4, 0));
        assert_eq!(kept(&v), ["b", "old-good"]);
        assert_eq!(v.iter().find(|v| v.id.0 == "old-good").unwrap().reasons, ["pinned"]);
    }

    #[test]
    fn within_counts_back_from_now() {
        let snaps = vec![snap("a", at(1, 0), false), snap("b", at(3, 0), false), snap("c", at(3, 12), false)];
        let policy = KeepPolicy { within: Some(Duration::from_secs(24 * 3600)), ..Default::default() };
        assert_eq!(kept(&plan(&snaps, &policy, at(4, 0))), ["c", "b"]);
    }

    #[test]
    fn weekly_monthly_yearly_buckets() {
        let t = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap();
        let snaps = vec![
            snap("2024-12-30", t(2024, 12, 30), false), // ISO week 2025-W01
            snap("2025-01-02", t(2025, 1, 2), false),   // same ISO week
            snap("2025-01-31", t(2025, 1, 31), false),
            snap("2025-02-01", t(2025, 2, 1), false),
            snap("2026-06-01", t(2026, 6, 1), false),
        ];
        let now = t(2026, 7, 1);
        let weekly = plan(&snaps, &KeepPolicy { weekly: Some(10), ..Default::default() }, now);
        // 2025-01-31 and 2025-02-01 share ISO week 2025-W05; 2024-12-30 and
        // 2025-01-02 share 2025-W01.
        assert_eq!(kept(&weekly), ["2026-06-01", "2025-02-01", "2025-01-02"]);
        let monthly = plan(&snaps, &KeepPolicy { monthly: Some(3), ..Default::default() }, now);
        assert_eq!(kept(&monthly), ["2026-06-01", "2025-02-01", "2025-01-31"]);
        let yearly = plan(&snaps, &KeepPolicy { yearly: Some(5), ..Default::default() }, now);
        assert_eq!(kept(&yearly), ["2026-06-01", "2025-02-01", "2024-12-30"]);
    }

    #[test]
    fn a_lock_keeps_a_snapshot_until_its_date() {
        use crate::snapshot::{LockMode, SnapshotLock};
        let mut locked = snap("locked", at(1, 0), false);
        locked.lock = Some(SnapshotLock { mode: LockMode::Compliance, until: at(10, 0) });
        let snaps = vec![locked, snap("a", at(2, 0), false), snap("b", at(3, 0), false)];
        let policy = KeepPolicy { last: Some(1), ..Default::default() };
        let v = plan(&snaps, &policy, at(4, 0));
        assert_eq!(kept(&v), ["b", "locked"]);
        assert_eq!(v.iter().find(|v| v.id.0 == "locked").unwrap().reasons, ["locked-compliance"]);
        // Past its date the lock no longer counts.
        assert_eq!(kept(&plan(&snaps, &policy, at(11, 0))), ["b"]);
        let lock = SnapshotLock { mode: LockMode::Governance, until: at(10, 0) };
        assert!(lock.forbids_delete(at(4, 0), false));
        assert!(!lock.forbids_delete(at(4, 0), true));
        let lock = SnapshotLock { mode: LockMode::Compliance, ..lock };
        assert!(lock.forbids_delete(at(4, 0), true), "no bypass for compliance");
        assert!(!lock.forbids_delete(at(10, 0), false), "expired");
    }

    #[test]
    fn empty_policy_keeps_everything() {
        let snaps = vec![snap("a", at(1, 0), false), snap("b", at(2, 0), false)];
        let v = plan(&snaps, &KeepPolicy::default(), at(3, 0));
        assert!(v.iter().all(|v| v.keep && v.reasons == ["no policy"]));
    }
}
