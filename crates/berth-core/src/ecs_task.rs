//! ECS tasks as core sees them: the translation of an ECS task (from a
//! `Task State Change` event, later from DescribeTasks) into a `TaskInfo`.
//!
//! berth names the claim and generation of every task it starts in
//! RunTask's `startedBy` (`berth/<claim>/<generation>`), not in tags:
//! task tags are not in events, and StopTask deletes them, while
//! `startedBy` is in every event and every DescribeTasks answer for the
//! task's whole life. A task without it is not berth's (rule 8's scope
//! check still runs first). The task's address for the load balancer is the
//! private IPv4 address of its network interface attachment.
//!
//! It lives in core beside the event model because two adapters use it:
//! the ECS runtime, and `berth lambda decide`, which replays an event
//! without linking the AWS SDK.

use crate::claim::{ClaimName, Generation};
use crate::event::{TaskDetail, TaskStatus};
use crate::task::{Health, TaskArn, TaskInfo};
use chrono::{DateTime, Utc};

/// The `startedBy` prefix of berth's tasks.
pub const STARTED_BY_PREFIX: &str = "berth/";

/// RunTask's `startedBy` for a generation of a claim (at most 128
/// characters of letters, digits, `-`, `/` and `_`, which claim names and
/// numbers keep to).
pub fn started_by(claim: &ClaimName, generation: Generation) -> String {
    format!("{STARTED_BY_PREFIX}{claim}/{}", generation.0)
}

/// The claim and generation a `startedBy` names, if it is berth's.
pub fn parse_started_by(value: &str) -> Option<(ClaimName, Generation)> {
    let (claim, generation) = value.strip_prefix(STARTED_BY_PREFIX)?.split_once('/')?;
    Some((ClaimName::parse(claim).ok()?, Generation(generation.parse().ok()?)))
}

/// The `group` prefix of berth's tasks: RunTask's `group` names the
/// service (`berth:<service>`), in every event and DescribeTasks answer.
pub const GROUP_PREFIX: &str = "berth:";

/// RunTask's `group` for a task of `service` (at most 255 characters).
pub fn group(service: &str) -> String {
    format!("{GROUP_PREFIX}{service}")
}

/// The service of a task: its `group`, or for a task started before berth
/// set one, the claim's name (`<service>-<ordinal>`), which a fork's is not.
fn service_of(group: Option<&str>, claim: &ClaimName) -> Option<String> {
    match group.and_then(|g| g.strip_prefix(GROUP_PREFIX)) {
        Some(service) => Some(service.to_owned()),
        None => claim.as_str().rsplit_once('-').map(|(service, _)| service.to_owned()),
    }
}

/// The task an event describes, as core's `TaskInfo`; `observed` stands
/// in for the creation time when the event has none. A task ECS does not
/// report a health status for counts as having no health check.
pub fn task_info(detail: &TaskDetail, port: u16, observed: DateTime<Utc>) -> TaskInfo {
    let claimed = detail.started_by.as_deref().and_then(parse_started_by);
    let health = match detail.health_status.as_deref() {
        Some("HEALTHY") => Health::Healthy,
        Some("UNHEALTHY") => Health::Unhealthy,
        _ => Health::Unknown,
    };
    let ip = detail
        .attachments
        .iter()
        .filter(|a| a.kind.as_deref() == Some("eni") || a.kind.as_deref() == Some("ElasticNetworkInterface"))
        .flat_map(|a| &a.details)
        .find(|d| d.name == "privateIPv4Address")
        .and_then(|d| d.value.clone());
    TaskInfo {
        arn: TaskArn(detail.task_arn.clone()),
        service: claimed.as_ref().and_then(|(c, _)| service_of(detail.group.as_deref(), c)),
        claim: claimed.as_ref().map(|(c, _)| c.clone()),
        generation: claimed.map(|(_, g)| g),
        last_status: detail.last_status.clone().unwrap_or(TaskStatus::Other("UNKNOWN".into())),
        desired_status: detail.desired_status.clone().unwrap_or(TaskStatus::Running),
        health,
        has_health_check: detail.health_status.is_some(),
        stop_code: detail.stop_code.clone(),
        stopped_reason: detail.stopped_reason.clone(),
        created_at: detail.created_at.unwrap_or(observed),
        started_at: detail.started_at,
        stopped_at: detail.stopped_at,
        version: detail.version.unwrap_or(0),
        endpoint: ip.map(|ip| format!("{ip}:{port}")),
        definition: detail.task_definition_arn.clone(),
    }
}

/// The id of the task's EBS volume, owned: [`TaskDetail::ebs_volume_id`]
/// for callers that keep it past the event. Often `None` on AWS: the
/// published RunTask answers name the volume (`volumeName`) but not its id,
/// and no published event shows one.
pub fn ebs_volume_id(detail: &TaskDetail) -> Option<String> {
    detail.ebs_volume_id().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{StopCode, TaskStateChange};

    #[test]
    fn ebs_volume_id_reads_only_the_ebs_attachment() {
        let detail = |attachments: &str| {
            TaskStateChange::parse(&format!(r#"{{"detail": {{"taskArn": "t", "attachments": {attachments}}}}}"#))
                .unwrap()
                .detail
        };
        let both = detail(
            r#"[{"type": "eni", "details": [{"name": "volumeId", "value": "vol-not-this"}]},
                {"type": "AmazonElasticBlockStorage", "details": [{"name": "volumeName", "value": "data"},
                                                                  {"name": "volumeId", "value": "vol-0abc"}]}]"#,
        );
        assert_eq!(ebs_volume_id(&both), Some("vol-0abc".to_owned()));
        let eni_only = detail(r#"[{"type": "eni", "details": [{"name": "volumeId", "value": "vol-not-this"}]}]"#);
        assert_eq!(ebs_volume_id(&eni_only), None);
        // AWS's own RunTask example: an EBS attachment that names no volume id yet.
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ecs-events/aws-cli-runtask-ebs-provisioning.json");
        let e = TaskStateChange::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(e.detail.attachments.iter().any(|a| a.kind.as_deref() == Some(crate::event::EBS_ATTACHMENT)));
        assert_eq!(ebs_volume_id(&e.detail), None);
    }

    #[test]
    fn started_by_round_trips_and_refuses_strangers() {
        let claim = ClaimName::parse("files-3").unwrap();
        let s = started_by(&claim, Generation(12));
        assert_eq!(s, "berth/files-3/12");
        assert!(s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-/_".contains(c)));
        assert_eq!(parse_started_by(&s), Some((claim, Generation(12))));
        for other in ["ecs-svc/123456", "berth/files-3", "berth/Bad Name/1", "berth/files-3/x", ""] {
            assert_eq!(parse_started_by(other), None, "{other}");
        }
    }

    #[test]
    fn the_documented_running_event_is_no_task_of_berths() {
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/aws-examples/ecs-task-state-change-running.json");
        let e = TaskStateChange::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        let t = task_info(&e.detail, 5000, Utc::now());
        assert_eq!(t.claim, None, "no berth/ startedBy");
        assert_eq!(t.last_status, TaskStatus::Running);
        assert_eq!(t.version, 4);
        assert_eq!(
            t.revision(),
            e.detail.task_definition_arn.as_deref().and_then(|d| d.rsplit(':').next()?.parse().ok())
        );
    }

    #[test]
    fn a_stopped_spot_task_of_a_claim() {
        // The shape of AWS's documented Fargate Spot interruption event, as
        // berth's RunTask starts the task.
        let json = r#"{
            "version": "0",
            "id": "9bcdac79-b31f-4d3d-9410-fbd727c29fab",
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": "111122223333",
            "region": "us-east-1",
            "resources": ["arn:aws:ecs:us-east-1:111122223333:task/berth/b99d40b3"],
            "detail": {
                "clusterArn": "arn:aws:ecs:us-east-1:111122223333:cluster/berth",
                "createdAt": "2026-12-02T10:41:05.702Z",
                "desiredStatus": "STOPPED",
                "lastStatus": "STOPPED",
                "startedBy": "berth/files-1/7",
                "stoppedReason": "Your Spot Task was interrupted.",
                "stopCode": "SpotInterruption",
                "capacityProviderName": "FARGATE_SPOT",
                "healthStatus": "HEALTHY",
                "taskArn": "arn:aws:ecs:us-east-1:111122223333:task/berth/b99d40b3",
                "taskDefinitionArn": "arn:aws:ecs:us-east-1:111122223333:task-definition/files:4",
                "version": 5,
                "attachments": [
                    {"type": "eni", "status": "DELETED", "details": [{"name": "privateIPv4Address", "value": "10.0.1.17"}]},
                    {"type": "AmazonElasticBlockStorage", "details": [{"name": "volumeId", "value": "vol-0abc"}]}
                ]
            }
        }"#;
        let e = TaskStateChange::parse(json).unwrap();
        let t = task_info(&e.detail, 5000, Utc::now());
        assert_eq!(t.claim.as_ref().map(ClaimName::as_str), Some("files-1"));
        assert_eq!(t.service.as_deref(), Some("files"));
        assert_eq!(t.generation, Some(Generation(7)));
        assert!(t.is_stopped());
        assert_eq!(t.stop_code, Some(StopCode::SpotInterruption));
        assert_eq!(t.health, Health::Healthy);
        assert_eq!(t.endpoint.as_deref(), Some("10.0.1.17:5000"));
        assert_eq!(t.revision(), Some(4));
        assert_eq!(e.detail.ebs_volume_id(), Some("vol-0abc"));
    }

    #[test]
    fn a_forks_task_names_its_service_by_group_not_by_its_claims_name() {
        let mut detail: crate::event::TaskDetail = serde_json::from_value(serde_json::json!({
            "taskArn": "arn:aws:ecs:us-east-1:111122223333:task/berth/f1",
            "lastStatus": "RUNNING",
            "startedBy": "berth/restored/1",
            "group": group("files"),
        }))
        .unwrap();
        assert_eq!(task_info(&detail, 5000, Utc::now()).service.as_deref(), Some("files"));
        detail.group = None;
        assert_eq!(task_info(&detail, 5000, Utc::now()).service, None, "a claim name with no `-` names no service");
    }
}
