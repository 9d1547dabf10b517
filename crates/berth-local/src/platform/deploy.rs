//! Deployments under `berth up`: the ledger's service records, `berth
//! deploy`, and the loop that carries out core's rollout plans.
//!
//! A *service record* (core's `deploy::ServiceRecord`) keeps each
//! service's task definition revisions and its deployment. At start the
//! record is made from `berth.toml`, or, when the file's definition
//! changed since it was last read, the change is deployed like a `berth
//! deploy`. The rule of a rollout lives in `berth_core::deploy::rollout`;
//! this module only reads, writes and wakes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_core::controller::Due;
use berth_core::deploy::{same_task, DeployError, ServiceRecord};
use berth_core::ledger::{EventRecord, Expect, Ledger};
use berth_core::task::TaskDefinition;
use chrono::Utc;
use serde::Deserialize;

use super::{Platform, PlatformError};
use crate::host::HostRuntime;

/// How often a deployment in progress is looked at.
const TICK: Duration = Duration::from_millis(500);

/// What `berth deploy` changes in the active task definition.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeployRequest {
    /// A new command (empty list: the default workload, `berth serve`).
    pub command: Option<Vec<String>>,
    /// Variables to set.
    pub env: BTreeMap<String, String>,
    /// Variables to remove.
    pub unset_env: Vec<String>,
    /// An image: a container service runs it; a process service only
    /// records it as `BERTH_IMAGE` (the AWS path runs it).
    pub image: Option<String>,
}

impl DeployRequest {
    /// The active definition with this request's changes.
    fn apply(&self, active: &TaskDefinition) -> TaskDefinition {
        let mut next = active.clone();
        if let Some(command) = &self.command {
            next.command = command.clone();
        }
        for key in &self.unset_env {
            next.env.remove(key);
        }
        next.env.extend(self.env.clone());
        match (&self.image, &mut next.container) {
            (Some(image), Some(container)) => container.image = image.clone(),
            (Some(image), None) => {
                next.env.insert("BERTH_IMAGE".into(), image.clone());
            }
            (None, _) => {}
        }
        next
    }
}

impl<R: HostRuntime> Platform<R> {
    /// Reads (or makes) every service's record and hands its revisions to
    /// the controller; a definition in `berth.toml` that changed since the
    /// last start is deployed.
    pub(super) async fn load_services(&self) -> Result<(), PlatformError> {
        for configured in self.config.services.clone() {
            let file = configured.definition();
            let record = match self.ledger.service(&configured.name).await? {
                None => self.ledger.put_service(&ServiceRecord::new(&configured.name, file), Expect::Absent).await?,
                Some(mut record) => {
                    let changed = record.configured.as_ref().is_none_or(|c| !same_task(c, &file));
                    if changed {
                        let (version, from) = (record.version, record.active);
                        record.configured = Some(file.clone());
                        let started = match record.deploy(file, configured.deployment.timeout, Utc::now()) {
                            Ok(to) => Some(to),
                            Err(DeployError::Unchanged { .. }) => None,
                            Err(e @ DeployError::InProgress { .. }) => {
                                self.log("deploy-deferred", format!("berth.toml changed, but {e}")).await;
                                None
                            }
                        };
                        let stored = self.ledger.put_service(&record, Expect::Version(version)).await?;
                        if let Some(to) = started {
                            self.log_deploy_started(&stored.name, from, to, "berth.toml changed").await;
                        }
                        stored
                    } else {
                        record
                    }
                }
            };
            self.apply_record(&record);
        }
        Ok(())
    }

    /// Gives the controller a service record's active and other revisions.
    fn apply_record(&self, record: &ServiceRecord) {
        self.controller.apply_service_record(record);
    }

    /// The `deploy-started` event, once the deployment is in the ledger.
    async fn log_deploy_started(&self, service: &str, from: u32, to: u32, why: &str) {
        let message = format!("{service}: deploying revision {to} (from {from}; {why})");
        let mut event = EventRecord::new(Utc::now(), None, "deploy-started", message);
        event.data = serde_json::json!({ "service": service, "from": from, "to": to });
        self.controller.log(event).await;
    }

    /// Starts a deployment of `service`; returns its record.
    pub async fn deploy(&self, service: &str, request: &DeployRequest) -> Result<ServiceRecord, PlatformError> {
        let timeout = self
            .config
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.deployment.timeout)
            .ok_or_else(|| PlatformError::NoService(service.to_owned()))?;
        for _ in 0..20 {
            let mut record =
                self.ledger.service(service).await?.ok_or_else(|| PlatformError::NoService(service.to_owned()))?;
            let version = record.version;
            let active = record.active_definition().cloned().ok_or_else(|| PlatformError::NoService(service.into()))?;
            let to = record.deploy(request.apply(&active), timeout, Utc::now())?;
            match self.ledger.put_service(&record, Expect::Version(version)).await {
                Ok(stored) => {
                    self.apply_record(&stored);
                    self.log_deploy_started(service, active.revision, to, "berth deploy").await;
                    return Ok(stored);
                }
                Err(e) if e.is_conflict() => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(PlatformError::ServiceBusy(service.to_owned()))
    }

    /// Carries out the deployments in progress, one look every tick.
    pub(super) async fn rollout_loop(self: Arc<Self>) {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let due = Due { rollouts: true, ..Default::default() };
        loop {
            every.tick().await;
            for failure in self.controller.pass(&due, &super::Local(&self)).await.failed {
                tracing::warn!(error = %failure, "deployment step failed; trying again");
            }
        }
    }
}
