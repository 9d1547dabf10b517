//! The ECS `Task State Change` event of a local task.
//!
//! The supervisor emits the shape EventBridge delivers for ECS (detail-type
//! `ECS Task State Change`, source `aws.ecs`), so the local controller and
//! the Lambda read events with one parser. The task's volume folder is
//! reported as its EBS attachment (`volumeId` = the local volume id), where
//! ECS reports a task's managed EBS volume, so
//! [`TaskDetail::ebs_volume_id`] finds it on both platforms.

use berth_core::event::{Attachment, Container, NameValue, EBS_ATTACHMENT};
use berth_core::{Health, TaskDetail, TaskStateChange};
use chrono::{DateTime, Utc};

use super::config::SupervisorConfig;
use super::names;
use super::table::TaskRecord;

/// The event describing `record` as it is now.
pub(crate) fn state_change(config: &SupervisorConfig, record: &TaskRecord, now: DateTime<Utc>) -> TaskStateChange {
    let info = &record.info;
    let health = health_status(info.health).to_owned();
    let container = Container {
        name: Some(record.container.clone()),
        last_status: Some(record.container_status().into()),
        exit_code: record.exit_code,
        reason: record.container_reason.clone(),
        health_status: Some(health.clone()),
    };
    let volume = Attachment {
        id: Some(record.volume.0.clone()),
        kind: Some(EBS_ATTACHMENT.into()),
        status: Some(if info.is_stopped() { "DETACHED" } else { "ATTACHED" }.into()),
        details: vec![
            NameValue { name: "volumeId".into(), value: Some(record.volume.0.clone()) },
            NameValue { name: "deleteOnTermination".into(), value: Some("false".into()) },
        ],
    };
    TaskStateChange {
        detail_type: Some("ECS Task State Change".into()),
        source: Some("aws.ecs".into()),
        id: Some(names::event_id()),
        time: Some(now),
        region: Some(config.region.clone()),
        account: Some(config.account.clone()),
        resources: vec![info.arn.0.clone()],
        detail: TaskDetail {
            task_arn: info.arn.0.clone(),
            cluster_arn: Some(names::cluster_arn(config)),
            task_definition_arn: Some(record.definition_arn.clone()),
            group: Some(record.group.clone()),
            started_by: Some(record.started_by.clone()),
            last_status: Some(info.last_status.clone()),
            desired_status: Some(info.desired_status.clone()),
            stop_code: info.stop_code.clone(),
            stopped_reason: info.stopped_reason.clone(),
            version: Some(info.version),
            health_status: Some(health),
            created_at: Some(info.created_at),
            pull_started_at: record.pull_started_at,
            pull_stopped_at: record.pull_stopped_at,
            started_at: info.started_at,
            stopping_at: record.stopping_at,
            execution_stopped_at: record.execution_stopped_at,
            stopped_at: info.stopped_at,
            updated_at: Some(now),
            attachments: vec![volume],
            containers: vec![container],
            ..TaskDetail::default()
        },
    }
}

/// ECS's name of a health status.
pub(crate) fn health_status(health: Health) -> &'static str {
    match health {
        Health::Unknown => "UNKNOWN",
        Health::Healthy => "HEALTHY",
        Health::Unhealthy => "UNHEALTHY",
    }
}
