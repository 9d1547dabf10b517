//! Auto scaling under `berth up`: samples each task's CPU and memory and
//! applies core's target-tracking decision to the service's desired count.
//!
//! Every `sample_interval` the loop asks the runtime for a usage sample of
//! each running task of an auto-scaled service (`Runtime::usage`: the
//! process tree from `/proc` for processes), turns two consecutive samples
//! into a usage reading, and asks
//! `berth_core::autoscale::decide` for the desired count. A change goes
//! through [`Platform::scale`], as `berth scale` does (scale-out resumes
//! parked claims first, scale-in parks the highest with a snapshot), and is
//! logged as an `autoscale` event with the decision's reason. The times of
//! the last activities (the cooldowns) are kept in memory: a restarted
//! `berth up` starts without cooldowns.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_core::autoscale::{decide, ScalingState, TaskUsage, UsageSample};
use berth_core::ledger::EventRecord;
use berth_core::task::Runtime;
use berth_core::TaskStatus;
use chrono::Utc;

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
        let mut state = ScalingState::default();
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
            let Some(current) =
                self.controller.services().into_iter().find(|s| s.name == service.name).map(|s| s.desired_count)
            else {
                continue;
            };
            let now = Utc::now();
            let decision = decide(&policy, current, &readings, &state, now);
            tracing::debug!(service = %service.name, current, desired = decision.desired, reason = %decision.reason, "autoscale");
            if decision.desired == current {
                continue;
            }
            let mut event = EventRecord::new(now, None, "autoscale", format!("{}: {}", service.name, decision.reason));
            event.data = serde_json::json!({
                "service": service.name,
                "from": current,
                "to": decision.desired,
                "readings": readings,
            });
            self.controller.log(event).await;
            match self.scale(&service.name, decision.desired).await {
                Ok(_) => state = state.record(current, decision.desired, now),
                Err(e) => tracing::warn!(service = %service.name, error = %e, "autoscale could not apply its decision"),
            }
        }
    }
}
