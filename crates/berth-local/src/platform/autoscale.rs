//! Auto scaling under `berth up`: samples each task's CPU and memory, and
//! asks core's pass for the service's decision.
//!
//! Every `sample_interval` the loop asks the runtime for a usage sample of
//! each running task of an auto-scaled service (`Runtime::usage`: the
//! process tree from `/proc` for processes, the engine's statistics for
//! containers) and turns two consecutive samples into a usage reading: the
//! platform's part, as Container Insights' readings are the Lambda's. The
//! decision is core's, in the same pass the Lambda runs
//! (`Controller::pass` with `Due::autoscale`): it writes the service's new
//! count and its cooldowns to the ledger, and logs an `autoscale` event
//! with the decision's reason. A change is then applied as `berth scale`
//! applies one (scale-out resumes parked
//! claims first, scale-in parks the highest with a snapshot). The cooldowns
//! are in the ledger, so a restarted `berth up` keeps them.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_core::autoscale::{TaskUsage, UsageSample};
use berth_core::controller::Due;
use berth_core::task::Runtime;
use berth_core::TaskStatus;

use super::config::ServiceConfig;
use super::Platform;
use crate::host::HostRuntime;

impl<R: HostRuntime> Platform<R> {
    /// Runs the autoscaler of one service until the platform stops.
    pub(super) async fn autoscale_loop(self: Arc<Self>, service: ServiceConfig) {
        let policy = service.autoscaling.policy();
        let mut every = tokio::time::interval(service.autoscaling.sample_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut samples: BTreeMap<String, UsageSample> = BTreeMap::new();
        loop {
            every.tick().await;
            let Ok(tasks) = self.runtime.tasks().await else { continue };
            let mut readings: Vec<TaskUsage> = Vec::new();
            let mut next_samples = BTreeMap::new();
            for t in tasks.iter().filter(|t| t.service.as_deref() == Some(service.name.as_str())) {
                if t.last_status != TaskStatus::Running {
                    continue;
                }
                // A task gone between the listing and the read has no reading.
                let Ok(Some(now)) = self.runtime.usage(&t.arn).await else { continue };
                if let Some(prev) = samples.get(&t.arn.0) {
                    readings.push(now.usage_since(prev, service.cpu, service.memory));
                }
                next_samples.insert(t.arn.0.clone(), now);
            }
            samples = next_samples;
            let Some(current) = self.desired_count(&service.name) else { continue };
            let due = Due { autoscale: vec![(service.name.clone(), policy.clone(), readings)], ..Default::default() };
            let report = self.controller.pass(&due, &super::Local(&self)).await;
            for failure in &report.failed {
                tracing::warn!(service = %service.name, error = %failure, "autoscale");
            }
            // The decision, once in the ledger, set the controller's count.
            match self.desired_count(&service.name) {
                Some(desired) if desired != current => {
                    if let Err(e) = self.apply_count(&service.name, current, desired).await {
                        tracing::warn!(service = %service.name, error = %e, "autoscale could not apply its decision");
                    }
                }
                _ => {}
            }
        }
    }

    /// A service's desired count, as the controller holds it.
    fn desired_count(&self, service: &str) -> Option<u32> {
        self.controller.services().into_iter().find(|s| s.name == service).map(|s| s.desired_count)
    }
}
