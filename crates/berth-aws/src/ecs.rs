//! The `Runtime` port on ECS: each claim's generation is a standalone
//! Fargate task (RunTask), never a service's, because ECS deletes a service
//! task's EBS volume when it stops and only RunTask honours
//! `deleteOnTermination = false`.
//!
//! A task is berth's by its `startedBy` (`berth/<claim>/<generation>`,
//! see `berth_core::ecs_task`), which every DescribeTasks answer and every
//! event carries; tags are not used to find tasks, since StopTask deletes
//! them. RunTask's `clientToken` makes a retried launch start one task; the
//! adapter also looks for the generation's task by `startedBy` first, which
//! covers an emulator that ignores the token and a token AWS has forgotten.

use std::collections::BTreeSet;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride, DesiredStatus,
    EbsResourceType, EbsTagSpecification, KeyValuePair, LaunchType, NetworkConfiguration, Tag, TaskFilesystemType,
    TaskManagedEbsVolumeConfiguration, TaskManagedEbsVolumeTerminationPolicy, TaskOverride, TaskVolumeConfiguration,
};
use berth_core::ecs_task::{started_by, task_info};
use berth_core::event::{Attachment, Container, NameValue, TaskDetail};
use berth_core::{LaunchRequest, LaunchVolume, PortError, Runtime, StopCode, TaskArn, TaskInfo, VolumeSource};
use chrono::Utc;

use crate::sdk::{port_error, time};
use crate::settings::AwsSettings;
use crate::tags;

/// ECS describes at most this many tasks per call.
const DESCRIBE_BATCH: usize = 100;

/// berth's tasks on one ECS cluster.
pub struct EcsRuntime {
    client: aws_sdk_ecs::Client,
    settings: AwsSettings,
}

impl EcsRuntime {
    pub fn new(client: aws_sdk_ecs::Client, settings: AwsSettings) -> Self {
        Self { client, settings }
    }

    /// A task description as core's `TaskInfo`, with what only the task
    /// definition knows: the port, and whether a container health check
    /// is defined. ECS reports `healthStatus: UNKNOWN` both for a task
    /// whose check has not passed yet and for one without any check, so
    /// the status alone cannot tell "not ready yet" from "nothing to wait
    /// for"; without the definition, a reported status means a check.
    fn info(&self, detail: &TaskDetail, now: chrono::DateTime<Utc>) -> TaskInfo {
        let arn = detail.task_definition_arn.as_deref();
        let family = arn.and_then(|d| d.rsplit('/').next()).and_then(|d| d.split(':').next());
        let spec = self.settings.services.iter().find(|s| Some(s.definition.family.as_str()) == family);
        let mut info = task_info(detail, spec.map_or(80, |s| s.definition.port), now);
        if let Some(spec) = spec {
            info.has_health_check = spec.definition.health_check.is_some();
        }
        info
    }

    /// The tasks with these ARNs, as core sees them.
    pub async fn describe(&self, arns: &[String]) -> Result<Vec<TaskInfo>, PortError> {
        let mut out = Vec::new();
        for batch in arns.chunks(DESCRIBE_BATCH) {
            let answer = self
                .client
                .describe_tasks()
                .cluster(&self.settings.cluster)
                .set_tasks(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|e| port_error("DescribeTasks", e))?;
            let now = Utc::now();
            for task in answer.tasks() {
                let detail = detail_of(task);
                out.push(self.info(&detail, now));
            }
        }
        Ok(out)
    }

    /// The ARNs of the cluster's tasks, running and stopped, optionally of
    /// one `startedBy`.
    async fn list(&self, started: Option<&str>) -> Result<Vec<String>, PortError> {
        let mut arns = BTreeSet::new();
        for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let mut pages = self
                .client
                .list_tasks()
                .cluster(&self.settings.cluster)
                .desired_status(status)
                .set_started_by(started.map(str::to_owned))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                arns.extend(page.map_err(|e| port_error("ListTasks", e))?.task_arns().iter().cloned());
            }
        }
        Ok(arns.into_iter().collect())
    }
}

/// RunTask's volume configuration for a launch: the EBS volume ECS makes,
/// from `source`, kept when the task stops, tagged for berth.
pub fn volume_configuration(
    settings: &AwsSettings,
    request: &LaunchRequest,
    source: &VolumeSource,
) -> Result<TaskVolumeConfiguration, PortError> {
    let spec = &settings.volume;
    let snapshot = match source {
        VolumeSource::Empty => None,
        VolumeSource::Snapshot(s) | VolumeSource::AdoptOrRestore { snapshot: s, .. } => Some(s.0.clone()),
    };
    // Only a volume made from a snapshot is initialized (RunTask refuses
    // the rate without a snapshot id).
    let rate = spec.initialization_rate.filter(|_| snapshot.is_some());
    let mut tagging = EbsTagSpecification::builder().resource_type(EbsResourceType::Volume);
    for (key, value) in tags::volume(&settings.cluster, &request.claim, request.generation) {
        tagging = tagging.tags(Tag::builder().key(key).value(value).build());
    }
    let ebs = TaskManagedEbsVolumeConfiguration::builder()
        .role_arn(&spec.role_arn)
        .size_in_gib(spec.size_gib)
        .volume_type(&spec.volume_type)
        .set_iops(spec.iops)
        .set_throughput(spec.throughput)
        .encrypted(spec.encrypted)
        .set_kms_key_id(spec.kms_key_id.clone())
        .set_snapshot_id(snapshot)
        .set_volume_initialization_rate(rate)
        .filesystem_type(TaskFilesystemType::from(spec.filesystem_type.as_str()))
        .tag_specifications(tagging.build().map_err(|e| PortError::permanent(e.to_string()))?)
        .termination_policy(
            TaskManagedEbsVolumeTerminationPolicy::builder()
                .delete_on_termination(false)
                .build()
                .map_err(|e| PortError::permanent(e.to_string()))?,
        )
        .build()
        .map_err(|e| PortError::permanent(e.to_string()))?;
    TaskVolumeConfiguration::builder()
        .name(&spec.name)
        .managed_ebs_volume(ebs)
        .build()
        .map_err(|e| PortError::permanent(e.to_string()))
}

impl EcsRuntime {
    fn overrides(&self, request: &LaunchRequest) -> TaskOverride {
        let mut container = ContainerOverride::builder().name(&self.settings.container);
        let mut env = request.definition.env.clone();
        env.insert("BERTH_CLAIM".into(), request.claim.to_string());
        env.insert("BERTH_GENERATION".into(), request.generation.to_string());
        for (name, value) in env {
            container = container.environment(KeyValuePair::builder().name(name).value(value).build());
        }
        if !request.definition.command.is_empty() {
            container = container.set_command(Some(request.definition.command.clone()));
        }
        TaskOverride::builder().container_overrides(container.build()).build()
    }
}

impl Runtime for EcsRuntime {
    // ECS's task state changes reach the Lambda through EventBridge and
    // SQS, and its readings through Container Insights (`insights`).
    type Events = berth_core::NoEvents;

    fn subscribe(&self) -> Self::Events {
        berth_core::NoEvents
    }

    async fn usage(&self, _task: &TaskArn) -> Result<Option<berth_core::autoscale::UsageSample>, PortError> {
        Ok(None)
    }

    async fn run_task(&self, request: &LaunchRequest) -> Result<TaskInfo, PortError> {
        if request.canary {
            return Err(PortError::permanent("canaries (restore verification, drills) run under berth up only"));
        }
        let LaunchVolume::Create(source) = &request.volume else {
            return Err(PortError::permanent(
                "a Fargate task cannot attach an existing volume; ECS makes it at launch",
            ));
        };
        let started = started_by(&request.claim, request.generation);
        let existing = self.list(Some(&started)).await?;
        if let Some(task) = self.describe(&existing).await?.into_iter().max_by_key(|t| t.created_at) {
            return Ok(task);
        }
        let network = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.settings.subnets.clone()))
            .set_security_groups(Some(self.settings.security_groups.clone()))
            .assign_public_ip(if self.settings.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| PortError::permanent(e.to_string()))?;
        let mut run = self
            .client
            .run_task()
            .cluster(&self.settings.cluster)
            .task_definition(format!("{}:{}", request.definition.family, request.definition.revision))
            .started_by(&started)
            .group(berth_core::ecs_task::group(&request.service))
            .client_token(&request.client_token)
            .network_configuration(NetworkConfiguration::builder().awsvpc_configuration(network).build())
            .volume_configurations(volume_configuration(&self.settings, request, source)?)
            .overrides(self.overrides(request));
        run = if self.settings.spot {
            run.capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider("FARGATE_SPOT")
                    .weight(1)
                    .build()
                    .map_err(|e| PortError::permanent(e.to_string()))?,
            )
        } else {
            run.launch_type(LaunchType::Fargate)
        };
        let answer = run.send().await.map_err(|e| port_error("RunTask", e))?;
        if let Some(failure) = answer.failures().first() {
            // Capacity and similar failures pass; a bad definition does not.
            let reason = failure.reason().unwrap_or("unknown");
            let message = format!("RunTask: {reason}: {}", failure.detail().unwrap_or(""));
            return Err(if reason.contains("RESOURCE") || reason.contains("capacity") || reason.contains("AGENT") {
                PortError::retryable(message)
            } else {
                PortError::permanent(message)
            });
        }
        let task = answer.tasks().first().ok_or_else(|| PortError::retryable("RunTask answered with no task"))?;
        let detail = detail_of(task);
        Ok(self.info(&detail, Utc::now()))
    }

    async fn stop_task(&self, task: &TaskArn, code: StopCode, reason: &str) -> Result<(), PortError> {
        // ECS reports every StopTask as UserInitiated; the reason says
        // berth's own cause, within ECS's 255 characters.
        let reason: String = format!("berth: {reason} ({})", String::from(code)).chars().take(255).collect();
        match self.client.stop_task().cluster(&self.settings.cluster).task(&task.0).reason(reason).send().await {
            Ok(_) => Ok(()),
            Err(e) if crate::sdk::code(&e) == Some("InvalidParameterException") => {
                // A task ECS no longer knows has stopped.
                tracing::debug!(task = %task, "StopTask of a task ECS no longer has");
                Ok(())
            }
            Err(e) => Err(port_error("StopTask", e)),
        }
    }

    async fn tasks(&self) -> Result<Vec<TaskInfo>, PortError> {
        let arns = self.list(None).await?;
        let mut tasks = self.describe(&arns).await?;
        // Only berth's: a task without a berth `startedBy` has no claim.
        tasks.retain(|t| t.claim.is_some());
        Ok(tasks)
    }
}

/// An SDK task in the shape of an event's `detail`, so one translation
/// (`berth_core::ecs_task::task_info`) serves events and answers alike.
pub fn detail_of(task: &aws_sdk_ecs::types::Task) -> TaskDetail {
    TaskDetail {
        task_arn: task.task_arn().unwrap_or_default().to_owned(),
        cluster_arn: task.cluster_arn().map(str::to_owned),
        task_definition_arn: task.task_definition_arn().map(str::to_owned),
        group: task.group().map(str::to_owned),
        started_by: task.started_by().map(str::to_owned),
        last_status: task.last_status().map(|s| s.to_owned().into()),
        desired_status: task.desired_status().map(|s| s.to_owned().into()),
        stop_code: task.stop_code().map(|c| c.as_str().to_owned().into()),
        stopped_reason: task.stopped_reason().map(str::to_owned),
        version: u64::try_from(task.version()).ok(),
        capacity_provider_name: task.capacity_provider_name().map(str::to_owned),
        availability_zone: task.availability_zone().map(str::to_owned),
        health_status: task.health_status().map(|h| h.as_str().to_owned()),
        created_at: task.created_at().and_then(time),
        pull_started_at: task.pull_started_at().and_then(time),
        pull_stopped_at: task.pull_stopped_at().and_then(time),
        started_at: task.started_at().and_then(time),
        stopping_at: task.stopping_at().and_then(time),
        execution_stopped_at: task.execution_stopped_at().and_then(time),
        stopped_at: task.stopped_at().and_then(time),
        updated_at: None,
        attachments: task
            .attachments()
            .iter()
            .map(|a| Attachment {
                id: a.id().map(str::to_owned),
                kind: a.r#type().map(str::to_owned),
                status: a.status().map(str::to_owned),
                details: a
                    .details()
                    .iter()
                    .filter_map(|d| Some(NameValue { name: d.name()?.to_owned(), value: d.value().map(str::to_owned) }))
                    .collect(),
            })
            .collect(),
        containers: task
            .containers()
            .iter()
            .map(|c| Container {
                name: c.name().map(str::to_owned),
                last_status: c.last_status().map(str::to_owned),
                exit_code: c.exit_code().map(i64::from),
                reason: c.reason().map(str::to_owned),
                health_status: c.health_status().map(|h| h.as_str().to_owned()),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{ClaimName, Generation, SnapshotId, TaskDefinition};

    /// The `files` service's task definition at `revision`.
    fn files_definition(revision: u32) -> TaskDefinition {
        TaskDefinition {
            family: "files".into(),
            revision,
            command: vec![],
            env: Default::default(),
            port: 5000,
            health_check: None,
            stop_timeout: std::time::Duration::from_secs(30),
            secrets: Default::default(),
            container: None,
        }
    }

    #[test]
    fn the_volume_is_restored_from_the_snapshot_kept_on_stop_and_tagged() {
        let settings: AwsSettings = serde_json::from_value(serde_json::json!({
            "cluster": "berth", "subnets": ["subnet-1"], "security_groups": ["sg-1"], "container": "app",
            "volume": { "name": "data", "role_arn": "arn:aws:iam::1:role/infra", "iops": 3000 },
            "services": []
        }))
        .unwrap();
        let claim = ClaimName::parse("files-1").unwrap();
        let request = LaunchRequest {
            service: "files".into(),
            claim: claim.clone(),
            generation: Generation(7),
            volume: LaunchVolume::Create(VolumeSource::Snapshot(SnapshotId("snap-123".into()))),
            definition: files_definition(2),
            client_token: LaunchRequest::token_for(&claim, Generation(7)),
            canary: false,
        };
        let LaunchVolume::Create(source) = &request.volume else { unreachable!() };
        let c = volume_configuration(&settings, &request, source).unwrap();
        assert_eq!(c.name(), "data");
        let ebs = c.managed_ebs_volume().unwrap();
        assert_eq!(ebs.snapshot_id(), Some("snap-123"));
        assert_eq!(ebs.termination_policy().map(|t| t.delete_on_termination()), Some(false));
        assert_eq!((ebs.size_in_gib(), ebs.volume_type(), ebs.iops()), (Some(20), Some("gp3"), Some(3000)));
        assert_eq!(ebs.encrypted(), Some(true));
        assert_eq!(ebs.filesystem_type().map(|f| f.as_str()), Some("ext4"));
        let tags: Vec<(&str, &str)> =
            ebs.tag_specifications()[0].tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
        assert_eq!(tags, vec![("berth:cluster", "berth"), ("berth:claim", "files-1"), ("berth:generation", "7")]);
        assert!(request.client_token.len() <= 64, "RunTask's clientToken is at most 64 characters");

        let empty = volume_configuration(&settings, &request, &VolumeSource::Empty).unwrap();
        assert_eq!(empty.managed_ebs_volume().unwrap().snapshot_id(), None);
        assert_eq!(ebs.volume_initialization_rate(), None, "no rate configured: the default hydration");
    }

    #[test]
    fn a_provisioned_initialization_rate_goes_with_every_volume_from_a_snapshot_and_only_then() {
        let settings = |rate: i32| {
            AwsSettings::parse(
                &serde_json::json!({
                    "cluster": "berth", "subnets": ["subnet-1"], "security_groups": ["sg-1"], "container": "app",
                    "volume": { "name": "data", "role_arn": "arn:aws:iam::1:role/infra", "initialization_rate": rate },
                    "services": []
                })
                .to_string(),
            )
        };
        for bad in [99, 301, 0] {
            let e = settings(bad).unwrap_err().to_string();
            assert!(e.contains("outside EBS's 100–300 MiB/s"), "{bad}: {e}");
        }
        let settings = settings(300).unwrap();
        let claim = ClaimName::parse("files-0").unwrap();
        let definition = files_definition(1);
        let request = |source: VolumeSource| LaunchRequest {
            service: "files".into(),
            claim: claim.clone(),
            generation: Generation(2),
            volume: LaunchVolume::Create(source),
            definition: definition.clone(),
            client_token: LaunchRequest::token_for(&claim, Generation(2)),
            canary: false,
        };
        let rate_for = |source: VolumeSource| {
            let r = request(source.clone());
            volume_configuration(&settings, &r, &source)
                .unwrap()
                .managed_ebs_volume()
                .unwrap()
                .volume_initialization_rate()
        };
        assert_eq!(rate_for(VolumeSource::Snapshot(SnapshotId("snap-1".into()))), Some(300));
        assert_eq!(rate_for(VolumeSource::Empty), None, "RunTask takes a rate only with a snapshot id");
    }

    #[test]
    fn unknown_health_waits_only_where_the_definition_has_a_check() {
        let settings = |check: serde_json::Value| -> AwsSettings {
            serde_json::from_value(serde_json::json!({
                "cluster": "berth", "subnets": ["subnet-1"], "security_groups": ["sg-1"], "container": "app",
                "volume": { "name": "data", "role_arn": "arn:aws:iam::1:role/infra" },
                "services": [{ "name": "files", "desired_count": 1,
                    "definition": { "family": "files", "revision": 1, "command": [], "env": {}, "port": 5000,
                        "health_check": check, "stop_timeout": 30 },
                    "retention": { "last": 7 }, "lease": 60, "healthy_reset": 600 }]
            }))
            .unwrap()
        };
        let client = aws_sdk_ecs::Client::from_conf(aws_sdk_ecs::Config::builder().behavior_version_latest().build());
        let detail: TaskDetail = serde_json::from_value(serde_json::json!({
            "taskArn": "arn:aws:ecs:us-east-1:1:task/berth/abc",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/files:1",
            "startedBy": "berth/files-0/1", "lastStatus": "RUNNING", "desiredStatus": "RUNNING",
            "healthStatus": "UNKNOWN", "version": 3
        }))
        .unwrap();
        let unchecked = EcsRuntime::new(client.clone(), settings(serde_json::Value::Null));
        let t = unchecked.info(&detail, Utc::now());
        assert!(t.is_ready(), "no check defined: UNKNOWN is all ECS will ever say");
        assert_eq!(t.endpoint, None);
        let check = serde_json::json!({ "probe": { "command": ["CMD", "true"] }, "interval": 30, "timeout": 5,
            "retries": 3, "start_period": 60 });
        let checked = EcsRuntime::new(client, settings(check));
        assert!(!checked.info(&detail, Utc::now()).is_ready(), "a check defined: UNKNOWN is not yet healthy");
    }
}
