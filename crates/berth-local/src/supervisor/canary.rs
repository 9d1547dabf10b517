//! Canary tasks: a service's task started on a scratch volume, outside
//! every claim, to prove a restored snapshot serves (restore verification
//! and DR drills).
//!
//! A canary runs the service's command with the environment a task of the
//! claim would get, on a free loopback port, and is probed with the
//! service's own health check. It is not in the task table, so no event
//! reaches the controller and no load balancer sees it; it dies when its
//! handle drops (its whole process group is killed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_core::ports::VolumeInfo;
use berth_core::{ClaimName, Generation, LaunchRequest, LaunchVolume, Probe, TaskArn, TaskDefinition, VolumeId};
use chrono::Utc;

use super::{names, probe, process, LocalRuntime};

/// A running canary; dropping it kills it.
pub struct Canary {
    child: tokio::process::Child,
    addr: SocketAddr,
    env: BTreeMap<String, String>,
    probe: Probe,
    timeout: Duration,
    interval: Duration,
}

impl LocalRuntime {
    /// Starts `definition`'s task for `claim` of `service` on the folder
    /// `volume`, its output appended to `log`.
    pub fn start_canary(
        &self,
        service: &str,
        claim: &ClaimName,
        definition: &TaskDefinition,
        volume: &Path,
        log: &Path,
    ) -> Result<Canary, String> {
        let config = self.config();
        let host = config.listen_host;
        let port = names::free_port(host, &self.shared.ports_in_use())
            .map_err(|e| format!("no free port on {host} for a canary: {e}"))?;
        let info = VolumeInfo {
            id: VolumeId("canary".into()),
            claim: claim.clone(),
            generation: None,
            created: Utc::now(),
            source_snapshot: None,
            adopted_from: None,
            location: volume.display().to_string(),
        };
        let request = LaunchRequest {
            service: service.to_owned(),
            claim: claim.clone(),
            generation: Generation(0),
            definition: definition.clone(),
            volume: LaunchVolume::Attach(info.clone()),
            client_token: String::new(),
        };
        let arn = TaskArn(format!("canary/{claim}"));
        let env = process::task_env(config, &request, &info, &arn, port);
        let argv = process::argv(config, definition);
        let log = process::open_log(log).map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let mut cmd = process::command(&argv, &env).map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        cmd.stdout(log).stderr(err).kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
        let check = definition.health_check.as_ref();
        Ok(Canary {
            child,
            addr: SocketAddr::new(host, port),
            env,
            probe: check.map_or(Probe::Http { path: "/health".into() }, |c| c.probe.clone()),
            timeout: check.map_or(Duration::from_secs(5), |c| c.timeout),
            interval: Duration::from_millis(200),
        })
    }
}

impl Canary {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Probes until the health check passes (returns how long it took) or
    /// `within` runs out (returns the last failure). A canary that exits
    /// fails at once.
    pub async fn wait_healthy(&mut self, within: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = "not probed yet".to_owned();
        while start.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the canary exited ({status}) before it was healthy; last probe: {last}"));
            }
            match probe::run(&self.probe, &self.env, self.addr, self.timeout).await {
                Ok(()) => return Ok(start.elapsed()),
                Err(e) => last = e,
            }
            tokio::time::sleep(self.interval).await;
        }
        Err(format!("not healthy within {within:?}: {last}"))
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        // The whole group: `berth serve` or a shell script may have children.
        process::signal_group(self.child.id(), libc::SIGKILL);
    }
}
