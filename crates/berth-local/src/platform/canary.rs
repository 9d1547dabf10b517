//! Canaries through the `Runtime` port: the proof that a restored snapshot
//! serves (restore verification and DR drills).
//!
//! A *canary* is the service's task started on a scratch volume as an
//! ordinary launch (`LaunchRequest::canary`): the runtime runs it and its
//! health check as for any task, but its task names no service or claim,
//! so no controller, load balancer or peer list takes it for one of the
//! claim's. It is probed every 200 ms until healthy: how soon it serves is
//! what a drill measures, so the service's steady interval does not apply.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_core::ports::VolumeInfo;
use berth_core::task::{Runtime, TaskEvents};
use berth_core::{ClaimName, HealthCheck, LaunchRequest, Probe, StopCode, TaskArn, VolumeId};
use chrono::Utc;

use super::config::ServiceConfig;
use super::Platform;
use crate::host::HostRuntime;

/// Why a canary did not prove a restore: the verification's or drill's error.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error("cannot start a canary: {0}")]
    Start(#[source] berth_core::PortError),
    #[error("{0}")]
    Runtime(#[source] berth_core::PortError),
    #[error("the canary stopped before it was healthy ({0})")]
    Stopped(String),
    #[error("the canary is gone from the runtime")]
    Gone,
    #[error("not healthy within {0:?}")]
    NotHealthy(Duration),
    /// Any of the above, with where the canary's output is.
    #[error("canary on the restored volume: {source} (log: {log})")]
    OnVolume {
        #[source]
        source: Box<CanaryError>,
        log: String,
    },
}

/// How often a canary is probed until it passes.
const PROBE_EVERY: Duration = Duration::from_millis(200);

impl<R: HostRuntime> Platform<R> {
    /// Starts the service's task on `scratch` and waits for its health
    /// check; the canary is stopped either way.
    pub(super) async fn canary(
        &self,
        claim: &ClaimName,
        service: &ServiceConfig,
        scratch: &Path,
    ) -> Result<(), CanaryError> {
        let mut definition = service.definition();
        let configured = definition.health_check.clone();
        let within = configured
            .as_ref()
            .map_or(Duration::from_secs(30), |h| {
                h.start_period.max(Duration::from_secs(10)) + h.interval * h.retries + h.timeout
            })
            .min(Duration::from_secs(300));
        // The service's own probe (berth serve's /health without one), and
        // failures only count once `within` has passed: the wait decides.
        definition.health_check = Some(HealthCheck {
            probe: configured.as_ref().map_or(Probe::Http { path: "/health".into() }, |h| h.probe.clone()),
            interval: PROBE_EVERY,
            timeout: configured.as_ref().map_or(Duration::from_secs(5), |h| h.timeout),
            retries: 3,
            start_period: within,
            start_interval: PROBE_EVERY,
        });
        let stop_timeout = definition.stop_timeout;
        let volume = VolumeInfo {
            id: VolumeId("canary".into()),
            claim: claim.clone(),
            generation: None,
            created: Utc::now(),
            source_snapshot: None,
            adopted_from: None,
            location: scratch.display().to_string(),
        };
        let nonce = format!("{:016x}", fastrand::u64(..));
        let request = LaunchRequest::canary_of(&service.name, claim, definition, volume, &nonce);
        let mut events = self.runtime.subscribe();
        let task = self.runtime.run_task(&request).await.map_err(CanaryError::Start)?;
        let outcome = self.until_healthy(&task.arn, &mut events, within).await;
        let _ = self.runtime.stop_task(&task.arn, StopCode::UserInitiated, "canary finished").await;
        // The scratch volume goes next: not while the canary still writes to it.
        let _ = tokio::time::timeout(stop_timeout + Duration::from_secs(5), self.runtime.wait_stopped(&task.arn)).await;
        let log = self.runtime.log_path(&task.arn).map(|p| p.display().to_string()).unwrap_or_default();
        outcome.map_err(|e| CanaryError::OnVolume { source: Box::new(e), log })
    }

    /// Waits until `task` is ready (RUNNING and passing its health check),
    /// stops, or `within` runs out; woken by its events, and every second
    /// should an event be lost.
    async fn until_healthy<E: TaskEvents>(
        &self,
        task: &TaskArn,
        events: &mut E,
        within: Duration,
    ) -> Result<(), CanaryError> {
        let deadline = Instant::now() + within;
        loop {
            let now = self.runtime.tasks().await.map_err(CanaryError::Runtime)?;
            match now.iter().find(|t| &t.arn == task) {
                Some(t) if t.is_ready() => return Ok(()),
                Some(t) if t.is_stopped() => {
                    let why = t.stopped_reason.as_deref().unwrap_or("no reason given");
                    return Err(CanaryError::Stopped(why.to_owned()));
                }
                Some(_) => {}
                None => return Err(CanaryError::Gone),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CanaryError::NotHealthy(within));
            }
            let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), events.next()).await;
        }
    }
}
