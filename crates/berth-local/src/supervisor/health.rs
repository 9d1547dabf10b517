//! The health checker of one task: probes it on its definition's schedule
//! and records HEALTHY or UNHEALTHY.
//!
//! The rules are ECS's (and Docker's): while the task starts (until its
//! first pass, within the start period) it is probed every
//! `start_interval`, as Docker's, then every `interval`; `retries` consecutive failures make it
//! UNHEALTHY; failures during the start period do not count, but a success
//! during it makes it HEALTHY; any success makes it HEALTHY again. The
//! checker only reports: it never stops an unhealthy task (the controller
//! decides, and ECS does not stop standalone tasks for health either). It
//! ends when the task leaves RUNNING.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use berth_core::{Health, HealthCheck, TaskArn};
use tokio::sync::watch;
use tokio::time::Instant;

use super::engine::Engine;
use super::lifecycle;
use super::probe;
use super::table::Shared;

/// What a health checker needs to probe one task.
pub(crate) struct Target {
    pub arn: TaskArn,
    pub check: HealthCheck,
    pub env: BTreeMap<String, String>,
    pub addr: SocketAddr,
    /// A container task's engine and container: its command probes run in it.
    pub container: Option<(Engine, String)>,
}

/// Counts consecutive failures and turns probe results into verdicts.
#[derive(Debug)]
pub(crate) struct Verdicts {
    retries: u32,
    failures: u32,
}

impl Verdicts {
    pub fn new(retries: u32) -> Self {
        Self { retries: retries.max(1), failures: 0 }
    }

    /// The health after a probe, or None if the probe changes nothing yet.
    pub fn record(&mut self, passed: bool, in_start_period: bool) -> Option<Health> {
        if passed {
            self.failures = 0;
            return Some(Health::Healthy);
        }
        if in_start_period {
            return None;
        }
        self.failures += 1;
        (self.failures >= self.retries).then_some(Health::Unhealthy)
    }
}

/// Probes `target` until its task leaves RUNNING.
pub(crate) async fn watch(shared: Arc<Shared>, target: Target, mut leaving: watch::Receiver<bool>) {
    let started = Instant::now();
    let check = &target.check;
    let mut verdicts = Verdicts::new(check.retries);
    let mut passed = false;
    loop {
        let in_start_period = started.elapsed() < check.start_period;
        let every = match passed || !in_start_period {
            true => check.interval,
            false => check.start_interval.min(check.interval),
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = lifecycle::left(&mut leaving) => return,
        }
        if !shared.is_running(&target.arn) {
            return;
        }
        let result = probe::run(&check.probe, &target, check.timeout).await;
        if let Err(reason) = &result {
            tracing::debug!(task = %target.arn, %reason, "health check failed");
        }
        passed |= result.is_ok();
        let in_start_period = started.elapsed() < check.start_period;
        if let Some(health) = verdicts.record(result.is_ok(), in_start_period) {
            if !shared.set_health(&target.arn, health) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_count_consecutive_failures_after_the_start_period() {
        let mut v = Verdicts::new(3);
        assert_eq!(v.record(false, true), None, "start period failures do not count");
        assert_eq!(v.record(false, true), None);
        assert_eq!(v.record(false, true), None);
        assert_eq!(v.record(true, true), Some(Health::Healthy), "a success in the start period counts");
        assert_eq!(v.record(false, false), None);
        assert_eq!(v.record(false, false), None);
        assert_eq!(v.record(true, false), Some(Health::Healthy), "a success resets the count");
        assert_eq!(v.record(false, false), None);
        assert_eq!(v.record(false, false), None);
        assert_eq!(v.record(false, false), Some(Health::Unhealthy));
        assert_eq!(v.record(false, false), Some(Health::Unhealthy));
        assert_eq!(Verdicts::new(0).record(false, false), Some(Health::Unhealthy), "0 retries act as 1");
    }
}
