//! Target-tracking auto scaling: how many tasks a service should run, given
//! how busy its tasks are.
//!
//! A *scaling policy* holds a service's capacity bounds, a target for the
//! average CPU and memory use of its tasks (in percent of the task size, as
//! ECS's `CPUUtilization` and `MemoryUtilization` service metrics), and a
//! cooldown for each direction. [`decide`] is the whole policy: a pure
//! function of the policy, the current desired count, one usage reading per
//! task, the times of the last scaling activities and `now`. The caller
//! samples usage (`berth-local`'s `usage` module), applies the decision,
//! and records it with [`ScalingState::record`].
//!
//! The math and the rules follow AWS Application Auto Scaling's
//! target-tracking policies for ECS services, one policy per metric:
//!
//! - Each metric proposes `ceil(current × average / target)` tasks, the
//!   count at which its average would sit at or just below its target.
//! - Scale out when any metric proposes more than `current`, to the largest
//!   proposal ("scales out if any policy is ready to").
//! - Scale in only when every metric proposes fewer than `current` ("scales
//!   in only if all policies are ready to"), to the largest proposal. The
//!   rounding up already leaves a margin: with a target of 70 % and 2 tasks,
//!   scale-in needs the average below 35 %.
//! - Scale-in is conservative. AWS waits for 15 one-minute datapoints below
//!   the target before it scales in; berth decides on each reading, so it
//!   instead removes at most [`SCALE_IN_STEP_PERCENT`] % of the tasks (at
//!   least one) per scale-in, then waits out the scale-in cooldown. With the
//!   defaults, 10 tasks go back to 2 one task every 5 minutes.
//! - Cooldowns, as AWS documents them: the scale-out cooldown blocks further
//!   scale-out only (the capacity just added has not taken load yet); the
//!   scale-in cooldown blocks further scale-in only. A scale-out is never
//!   blocked by a scale-in cooldown, and it ends that cooldown ("the
//!   scale-in cooldown period stops and doesn't complete"). Neither cooldown
//!   blocks the other direction. AWS lets a scale-out during its cooldown go
//!   beyond the capacity already added; berth, which keeps only the times of
//!   the last activities, holds all scale-out during the cooldown.
//! - The result stays within `[min_capacity, max_capacity]`. A count outside
//!   the bounds (the bounds changed, or a service starts below its minimum)
//!   is moved inside at once, whatever the cooldowns and even without usage
//!   readings, as AWS does when a scalable target's bounds change.
//! - No usage readings, no change: a service whose tasks are all starting
//!   has no metric to track.
//!
//! Tasks without a reading (still starting) count for nothing in the
//! average; tasks that run but take no load yet (not yet healthy behind the
//! load balancer) count with their low use, as on ECS. Since the proposal is
//! `current × average`, that is the total load over the target, and adding
//! idle tasks does not by itself make the policy scale back in.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The share of the current tasks one scale-in may remove (at least one task).
pub const SCALE_IN_STEP_PERCENT: u32 = 10;

/// Rounding slack: an average a hair above its target (float noise) is on target.
const EPSILON: f64 = 1e-9;

/// A service's target-tracking scaling policy (defaults: the blog's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScalingPolicy {
    /// The fewest tasks the service runs (default 2).
    pub min_capacity: u32,
    /// The most tasks the service runs (default 10).
    pub max_capacity: u32,
    /// Target average CPU use, percent of the task's CPU units (default 70). Zero or less: not tracked.
    pub cpu_target_percent: f64,
    /// Target average memory use, percent of the task's memory (default 80). Zero or less: not tracked.
    pub memory_target_percent: f64,
    /// After a scale-out, no further scale-out for this long (default 2 minutes).
    #[serde(with = "crate::serde_secs")]
    pub scale_out_cooldown: Duration,
    /// After a scale-in, no further scale-in for this long (default 5 minutes).
    #[serde(with = "crate::serde_secs")]
    pub scale_in_cooldown: Duration,
}

impl Default for ScalingPolicy {
    fn default() -> Self {
        Self {
            min_capacity: crate::defaults::MIN_CAPACITY,
            max_capacity: crate::defaults::MAX_CAPACITY,
            cpu_target_percent: f64::from(crate::defaults::CPU_TARGET_PERCENT),
            memory_target_percent: f64::from(crate::defaults::MEMORY_TARGET_PERCENT),
            scale_out_cooldown: Duration::from_secs(120),
            scale_in_cooldown: Duration::from_secs(300),
        }
    }
}

impl ScalingPolicy {
    /// Whether a desired count set by hand (`berth scale`) fits the policy:
    /// 0 (the service stopped) or within the capacity bounds, which the
    /// policy would otherwise move it back into at its next decision.
    pub fn admits(&self, count: u32) -> Result<(), PolicyError> {
        if count == 0 || (self.min_capacity..=self.max_capacity).contains(&count) {
            return Ok(());
        }
        Err(PolicyError::Outside { count, min: self.min_capacity, max: self.max_capacity })
    }
}

/// A policy that cannot work as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("min_capacity {min} is above max_capacity {max}; lower min_capacity or raise max_capacity")]
    Bounds { min: u32, max: u32 },
    #[error(
        "{count} tasks is outside auto scaling's capacity {min}–{max}; pick a count within it, 0 to stop the \
         service, or change [service.autoscaling] in berth.toml"
    )]
    Outside { count: u32, min: u32, max: u32 },
    #[error("{metric} target {value} is not a number; set a percentage such as 70")]
    Target { metric: &'static str, value: f64 },
}

impl ScalingPolicy {
    /// Checks the bounds and targets. [`decide`] copes with a bad policy
    /// (the minimum wins over the maximum, a bad target is not tracked),
    /// but a configuration loader should reject it.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.min_capacity > self.max_capacity {
            return Err(PolicyError::Bounds { min: self.min_capacity, max: self.max_capacity });
        }
        for (metric, value) in [("cpu", self.cpu_target_percent), ("memory", self.memory_target_percent)] {
            if value.is_nan() {
                return Err(PolicyError::Target { metric, value });
            }
        }
        Ok(())
    }
}

/// How busy one task was over the last sampling interval, in percent of its
/// reservation (task size: CPU units, 1024 = one core; memory MiB). Above
/// 100 is possible: a task may use idle CPU beyond its share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskUsage {
    pub cpu_percent_of_reservation: f64,
    pub memory_percent_of_reservation: f64,
}

/// A task's cumulative CPU time and current memory at one instant, as its
/// runtime reads them (`Runtime::usage`): two samples of one task give its
/// [`TaskUsage`] ([`UsageSample::usage_since`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSample {
    /// CPU time the task has used since it started (user and system).
    pub cpu_time: Duration,
    /// Memory the task holds now.
    pub memory_bytes: u64,
    /// When it was read, on the runtime's own monotonic clock: only the
    /// difference between two samples of one runtime means anything.
    pub at: Duration,
}

impl UsageSample {
    /// The usage of a task with `cpu_units` (1024 a core) and `memory_mib`
    /// from `prev` to this sample: CPU over the interval, memory now, in
    /// percent of the reservation, as ECS's `CPUUtilization` and
    /// `MemoryUtilization`. A zero reservation, an empty interval or a
    /// counter gone backwards reads as 0 %, never a panic or infinity.
    pub fn usage_since(&self, prev: &UsageSample, cpu_units: u32, memory_mib: u32) -> TaskUsage {
        let seconds = self.at.saturating_sub(prev.at).as_secs_f64();
        let cpu_seconds = self.cpu_time.saturating_sub(prev.cpu_time).as_secs_f64();
        let cpu = if seconds > 0.0 && cpu_units > 0 {
            cpu_seconds / seconds / (f64::from(cpu_units) / 1024.0) * 100.0
        } else {
            0.0
        };
        let memory = if memory_mib > 0 {
            self.memory_bytes as f64 / (f64::from(memory_mib) * 1024.0 * 1024.0) * 100.0
        } else {
            0.0
        };
        TaskUsage { cpu_percent_of_reservation: cpu, memory_percent_of_reservation: memory }
    }
}

/// The last scaling activities of a service, kept between decisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingState {
    pub last_scale_out: Option<DateTime<Utc>>,
    pub last_scale_in: Option<DateTime<Utc>>,
}

impl ScalingState {
    /// The state after the desired count went from `current` to `desired`
    /// at `now` (unchanged when it did not change).
    #[must_use]
    pub fn record(self, current: u32, desired: u32, now: DateTime<Utc>) -> Self {
        use std::cmp::Ordering::*;
        match desired.cmp(&current) {
            Greater => Self { last_scale_out: Some(now), ..self },
            Less => Self { last_scale_in: Some(now), ..self },
            Equal => self,
        }
    }
}

/// The desired count for a service, and why.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScalingDecision {
    pub desired: u32,
    pub reason: String,
}

impl ScalingDecision {
    fn to(desired: u32, reason: impl Into<String>) -> Self {
        Self { desired, reason: reason.into() }
    }
}

/// One tracked metric's reading: its average over the tasks, its target and its proposal.
struct Metric {
    name: &'static str,
    average: f64,
    target: f64,
    proposal: u32,
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:.1}% (target {}%)", self.name, self.average, self.target)
    }
}

/// A decision of [`decide`] for a service whose count lives in its
/// service record (`read`, as `expect` found it), as a plan: the record
/// with the new count and the scaling activity, written back with a
/// compare-and-swap. Empty when the count stays.
pub fn plan(
    read: crate::deploy::ServiceRecord,
    expect: crate::ledger::Expect,
    current: u32,
    decision: &ScalingDecision,
    usage: &[TaskUsage],
    now: DateTime<Utc>,
) -> crate::plan::Plan {
    use crate::plan::{Plan, Why};
    use crate::reconcile::Action;
    let mut plan = Plan::default();
    if decision.desired == current {
        return plan;
    }
    let why = Why::Autoscale {
        service: read.name.clone(),
        from: current,
        to: decision.desired,
        reason: decision.reason.clone(),
        readings: usage.to_vec(),
    };
    let mut record = read;
    record.autoscaled_count = Some(decision.desired);
    record.scaling = record.scaling.record(current, decision.desired, now);
    plan.push(None, Action::WriteService { record: Box::new(record), expect }, why);
    plan
}

/// The desired count of a service running `current` tasks whose readings
/// are `usage` (one per task that has one), under `policy`, after the
/// activities in `state`, at `now`. See the module documentation for the rules.
pub fn decide(
    policy: &ScalingPolicy,
    current: u32,
    usage: &[TaskUsage],
    state: &ScalingState,
    now: DateTime<Utc>,
) -> ScalingDecision {
    let min = policy.min_capacity;
    let max = policy.max_capacity.max(min);
    if current == 0 {
        // Rule 4 of DESIGN.md: a service scaled to 0 is never resurrected.
        return ScalingDecision::to(0, "service stopped (desired count 0) → not scaled");
    }
    if current < min {
        return ScalingDecision::to(min, format!("{current} tasks, below min capacity {min} → scale out to {min}"));
    }
    if current > max {
        return ScalingDecision::to(max, format!("{current} tasks, above max capacity {max} → scale in to {max}"));
    }

    let metrics = metrics(policy, current, usage);
    let readings = || metrics.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let Some(out) = metrics.iter().map(|m| m.proposal).max() else {
        return ScalingDecision::to(current, format!("no usage readings → hold at {current}"));
    };

    if out > current {
        let over = metrics.iter().filter(|m| m.proposal > current).map(ToString::to_string).collect::<Vec<_>>();
        let over = over.join(", ");
        if current >= max {
            return ScalingDecision::to(current, format!("{over}, at max capacity {max} → hold"));
        }
        if let Some(until) = cooling(state.last_scale_out, policy.scale_out_cooldown, now) {
            return ScalingDecision::to(current, format!("{over}, scale-out cooldown until {until} → hold"));
        }
        let desired = out.min(max);
        return ScalingDecision::to(desired, format!("{over} → scale out {current} → {desired}"));
    }

    if out < current {
        if current <= min {
            return ScalingDecision::to(current, format!("{}, at min capacity {min} → hold", readings()));
        }
        // A scale-out since the last scale-in ends the scale-in cooldown.
        let last_in = state.last_scale_in.filter(|t| state.last_scale_out.is_none_or(|o| o <= *t));
        if let Some(until) = cooling(last_in, policy.scale_in_cooldown, now) {
            return ScalingDecision::to(current, format!("{}, scale-in cooldown until {until} → hold", readings()));
        }
        let step = u32::try_from(u64::from(current) * u64::from(SCALE_IN_STEP_PERCENT) / 100).unwrap_or(current).max(1);
        let desired = out.max(current - step).max(min);
        return ScalingDecision::to(desired, format!("{} → scale in {current} → {desired}", readings()));
    }

    ScalingDecision::to(current, format!("{} → hold at {current}", readings()))
}

/// The tracked metrics with their averages over `usage` and their proposals;
/// empty without readings.
fn metrics(policy: &ScalingPolicy, current: u32, usage: &[TaskUsage]) -> Vec<Metric> {
    type Read = fn(&TaskUsage) -> f64;
    let tracked: [(&'static str, f64, Read); 2] = [
        ("cpu", policy.cpu_target_percent, |u| u.cpu_percent_of_reservation),
        ("memory", policy.memory_target_percent, |u| u.memory_percent_of_reservation),
    ];
    let mut metrics = Vec::new();
    for (name, target, read) in tracked {
        if target.is_nan() || target <= 0.0 {
            continue;
        }
        let values: Vec<f64> = usage.iter().map(read).filter(|v| v.is_finite()).map(|v| v.max(0.0)).collect();
        if values.is_empty() {
            continue;
        }
        let average = values.iter().sum::<f64>() / values.len() as f64;
        // `as` saturates: an absurd reading proposes u32::MAX, clamped to max later.
        let proposal = (f64::from(current) * average / target - EPSILON).ceil().max(0.0) as u32;
        metrics.push(Metric { name, average, target, proposal });
    }
    metrics
}

/// When the cooldown that started at `since` ends, if it has not ended by `now`.
fn cooling(since: Option<DateTime<Utc>>, cooldown: Duration, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let until = since? + chrono::Duration::from_std(cooldown).unwrap_or(chrono::Duration::MAX);
    (now < until).then_some(until)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    fn tasks(n: usize, cpu: f64, memory: f64) -> Vec<TaskUsage> {
        vec![TaskUsage { cpu_percent_of_reservation: cpu, memory_percent_of_reservation: memory }; n]
    }

    fn run(current: u32, usage: &[TaskUsage]) -> ScalingDecision {
        decide(&ScalingPolicy::default(), current, usage, &ScalingState::default(), t0())
    }

    #[test]
    fn defaults_are_the_blogs() {
        let p = ScalingPolicy::default();
        assert_eq!((p.min_capacity, p.max_capacity), (2, 10));
        assert_eq!((p.cpu_target_percent, p.memory_target_percent), (70.0, 80.0));
        assert_eq!((p.scale_out_cooldown.as_secs(), p.scale_in_cooldown.as_secs()), (120, 300));
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn policy_serde_uses_seconds_and_defaults() {
        let p: ScalingPolicy = serde_json::from_str(r#"{"max_capacity": 4, "scale_in_cooldown": 30}"#).unwrap();
        assert_eq!(p.max_capacity, 4);
        assert_eq!(p.min_capacity, 2);
        assert_eq!(p.scale_in_cooldown, Duration::from_secs(30));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["scale_out_cooldown"], 120.0);
        assert_eq!(serde_json::from_value::<ScalingPolicy>(json).unwrap(), p);
    }

    #[test]
    fn scales_out_on_cpu() {
        // 2 tasks at 100 % CPU against 70 %: ceil(2 × 100 / 70) = 3.
        let d = run(2, &tasks(2, 100.0, 10.0));
        assert_eq!(d.desired, 3, "{}", d.reason);
        assert!(d.reason.contains("cpu 100.0%") && d.reason.contains("scale out 2 → 3"), "{}", d.reason);
        assert!(!d.reason.contains("memory"), "only the metric over its target is named: {}", d.reason);
    }

    #[test]
    fn scales_out_on_memory() {
        // 4 tasks at 95 % memory against 80 %: ceil(4 × 95 / 80) = 5.
        let d = run(4, &tasks(4, 50.0, 95.0));
        assert_eq!(d.desired, 5, "{}", d.reason);
        assert!(d.reason.contains("memory 95.0%"), "{}", d.reason);
    }

    #[test]
    fn scales_out_to_the_larger_proposal() {
        // cpu: ceil(2 × 140 / 70) = 4; memory: ceil(2 × 100 / 80) = 3.
        let d = run(2, &tasks(2, 140.0, 100.0));
        assert_eq!(d.desired, 4, "{}", d.reason);
        // And the other way round.
        let d = run(2, &tasks(2, 80.0, 200.0));
        assert_eq!(d.desired, 5, "{}", d.reason);
    }

    #[test]
    fn a_metric_below_target_does_not_hold_back_scale_out() {
        let d = run(3, &tasks(3, 5.0, 90.0));
        assert_eq!(d.desired, 4, "{}", d.reason);
    }

    #[test]
    fn averages_over_the_tasks_with_readings() {
        // One task at 200 %, one idle: average 100 % → ceil(2 × 100 / 70) = 3.
        let mut usage = tasks(1, 200.0, 10.0);
        usage.extend(tasks(1, 0.0, 10.0));
        assert_eq!(run(2, &usage).desired, 3);
        // A third task still starting has no reading: the average is over two.
        assert_eq!(run(3, &usage).desired, 5);
    }

    #[test]
    fn scale_out_stops_at_max() {
        let d = run(4, &tasks(4, 400.0, 10.0));
        assert_eq!(d.desired, 10, "{}", d.reason);
        let d = run(10, &tasks(10, 400.0, 10.0));
        assert_eq!(d.desired, 10);
        assert!(d.reason.contains("at max capacity 10"), "{}", d.reason);
        // Absurd readings saturate rather than overflow.
        assert_eq!(run(4, &tasks(4, 1e300, 10.0)).desired, 10);
    }

    #[test]
    fn on_target_holds() {
        // Exactly on target, and a little below it (rounding up keeps the count).
        assert_eq!(run(2, &tasks(2, 70.0, 80.0)).desired, 2);
        assert_eq!(run(3, &tasks(3, 70.0 + 1e-12, 80.0)).desired, 3);
        let d = run(2, &tasks(2, 40.0, 30.0));
        assert_eq!(d.desired, 2, "ceil(2 × 40 / 70) = 2: {}", d.reason);
        assert!(d.reason.contains("hold at 2"), "{}", d.reason);
    }

    #[test]
    fn scales_in_only_when_every_metric_is_below() {
        // cpu proposes ceil(4 × 20 / 70) = 2, memory ceil(4 × 70 / 80) = 4: hold.
        let d = run(4, &tasks(4, 20.0, 70.0));
        assert_eq!(d.desired, 4, "{}", d.reason);
        // Both propose 3 (cpu: ceil(4 × 50 / 70) = 3, memory: ceil(4 × 50 / 80) = 3): scale in.
        let d = run(4, &tasks(4, 50.0, 50.0));
        assert_eq!(d.desired, 3, "{}", d.reason);
        assert!(d.reason.contains("scale in 4 → 3"), "{}", d.reason);
    }

    #[test]
    fn scale_in_is_gradual() {
        // 10 idle tasks propose 1, but one scale-in removes 10 % (one task).
        let d = run(10, &tasks(10, 1.0, 1.0));
        assert_eq!(d.desired, 9, "{}", d.reason);
        // With 40 tasks (max raised), 10 % is four.
        let policy = ScalingPolicy { max_capacity: 50, ..ScalingPolicy::default() };
        let d = decide(&policy, 40, &tasks(40, 1.0, 1.0), &ScalingState::default(), t0());
        assert_eq!(d.desired, 36, "{}", d.reason);
        // To the largest proposal when that is closer than the step.
        let d = decide(&policy, 40, &tasks(40, 65.0, 10.0), &ScalingState::default(), t0());
        assert_eq!(d.desired, 38, "ceil(40 × 65 / 70) = 38: {}", d.reason);
    }

    #[test]
    fn never_scales_in_below_min() {
        let d = run(2, &tasks(2, 0.0, 0.0));
        assert_eq!(d.desired, 2);
        assert!(d.reason.contains("at min capacity 2"), "{}", d.reason);
        let policy = ScalingPolicy { min_capacity: 3, ..ScalingPolicy::default() };
        let d = decide(&policy, 4, &tasks(4, 0.0, 0.0), &ScalingState::default(), t0());
        assert_eq!(d.desired, 3);
    }

    #[test]
    fn scale_out_cooldown_blocks_only_scale_out() {
        let policy = ScalingPolicy::default();
        let state = ScalingState { last_scale_out: Some(t0()), last_scale_in: None };
        let hot = tasks(3, 100.0, 10.0);
        let d = decide(&policy, 3, &hot, &state, t0() + secs(119));
        assert_eq!(d.desired, 3, "{}", d.reason);
        assert!(d.reason.contains("scale-out cooldown until"), "{}", d.reason);
        assert_eq!(decide(&policy, 3, &hot, &state, t0() + secs(120)).desired, 5);
        // Scale-in right after a scale-out is allowed (load fell away).
        let cold = tasks(3, 10.0, 10.0);
        assert_eq!(decide(&policy, 3, &cold, &state, t0() + secs(10)).desired, 2);
    }

    #[test]
    fn scale_in_cooldown_blocks_only_scale_in() {
        let policy = ScalingPolicy::default();
        let state = ScalingState { last_scale_out: None, last_scale_in: Some(t0()) };
        let cold = tasks(5, 10.0, 10.0);
        let d = decide(&policy, 5, &cold, &state, t0() + secs(299));
        assert_eq!(d.desired, 5, "{}", d.reason);
        assert!(d.reason.contains("scale-in cooldown until"), "{}", d.reason);
        assert_eq!(decide(&policy, 5, &cold, &state, t0() + secs(300)).desired, 4);
        // Scale-out is not held by a scale-in cooldown…
        let hot = tasks(5, 100.0, 10.0);
        assert_eq!(decide(&policy, 5, &hot, &state, t0() + secs(10)).desired, 8);
        // …and ends it.
        let state = state.record(5, 8, t0() + secs(10));
        assert_eq!(state.last_scale_out, Some(t0() + secs(10)));
        let cold = tasks(8, 10.0, 10.0);
        assert_eq!(decide(&policy, 8, &cold, &state, t0() + secs(20)).desired, 7);
    }

    #[test]
    fn a_count_by_hand_must_fit_the_bounds() {
        let p = ScalingPolicy::default();
        assert_eq!(p.admits(0), Ok(()));
        assert_eq!(p.admits(2), Ok(()));
        assert_eq!(p.admits(10), Ok(()));
        let e = p.admits(11).unwrap_err();
        assert_eq!(e, PolicyError::Outside { count: 11, min: 2, max: 10 });
        assert!(e.to_string().contains("0 to stop"), "{e}");
        assert!(p.admits(1).is_err());
    }

    #[test]
    fn record_notes_the_direction() {
        let s = ScalingState::default();
        assert_eq!(s.record(2, 2, t0()), s);
        assert_eq!(s.record(2, 3, t0()).last_scale_out, Some(t0()));
        let s = s.record(3, 2, t0());
        assert_eq!((s.last_scale_out, s.last_scale_in), (None, Some(t0())));
    }

    #[test]
    fn no_readings_no_change() {
        let d = run(3, &[]);
        assert_eq!(d.desired, 3);
        assert!(d.reason.contains("no usage readings"), "{}", d.reason);
        // Readings that are not numbers are no readings.
        assert_eq!(run(3, &tasks(3, f64::NAN, f64::INFINITY)).desired, 3);
        // A metric that is not tracked is ignored.
        let policy = ScalingPolicy { memory_target_percent: 0.0, ..ScalingPolicy::default() };
        let d = decide(&policy, 3, &tasks(3, 10.0, 500.0), &ScalingState::default(), t0());
        assert_eq!(d.desired, 2, "{}", d.reason);
    }

    #[test]
    fn outside_the_bounds_moves_inside_at_once() {
        let blocked = ScalingState { last_scale_out: Some(t0()), last_scale_in: Some(t0()) };
        let policy = ScalingPolicy::default();
        let d = decide(&policy, 0, &[], &blocked, t0());
        assert_eq!(d.desired, 0, "a stopped service stays stopped: {}", d.reason);
        assert!(d.reason.contains("not scaled"), "{}", d.reason);
        let d = decide(&policy, 1, &[], &blocked, t0());
        assert_eq!(d.desired, 2);
        assert!(d.reason.contains("below min capacity 2"), "{}", d.reason);
        assert_eq!(decide(&policy, 1, &tasks(1, 0.0, 0.0), &blocked, t0()).desired, 2);
        let d = decide(&policy, 12, &tasks(12, 100.0, 100.0), &blocked, t0());
        assert_eq!(d.desired, 10, "{}", d.reason);
    }

    #[test]
    fn a_bad_policy_is_reported_and_does_not_panic() {
        let policy = ScalingPolicy { min_capacity: 5, max_capacity: 3, ..ScalingPolicy::default() };
        assert_eq!(policy.validate(), Err(PolicyError::Bounds { min: 5, max: 3 }));
        assert_eq!(decide(&policy, 4, &tasks(4, 100.0, 0.0), &ScalingState::default(), t0()).desired, 5);
        let policy = ScalingPolicy { cpu_target_percent: f64::NAN, ..ScalingPolicy::default() };
        assert!(policy.validate().is_err());
        assert_eq!(decide(&policy, 4, &tasks(4, 100.0, 0.0), &ScalingState::default(), t0()).desired, 3);
    }
}
