//! The ECS `Task State Change` event, the one event format of berth.
//!
//! EventBridge delivers these for ECS; the local supervisor will emit the same
//! shape, so the Lambda and the local controller share one code path. Parsing
//! is lenient on purpose: every field is optional except the task ARN (the
//! one thing an event must name), unknown fields are ignored, and `stopCode`
//! and the task states are open sets, so a code AWS adds tomorrow parses as
//! `Other` instead of failing the event. An event only says which task (and
//! so which claim) to look at; decisions come from observed state, and
//! `detail.version` lets the controller drop stale, reordered events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An EventBridge envelope carrying a task state change.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct TaskStateChange {
    #[serde(rename = "detail-type", default)]
    pub detail_type: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub detail: TaskDetail,
}

/// The task as the event describes it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDetail {
    pub task_arn: String,
    #[serde(default)]
    pub cluster_arn: Option<String>,
    #[serde(default)]
    pub task_definition_arn: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// Who started the task; berth's standalone tasks carry `berth/<claim>`.
    #[serde(default)]
    pub started_by: Option<String>,
    #[serde(default)]
    pub last_status: Option<TaskStatus>,
    #[serde(default)]
    pub desired_status: Option<TaskStatus>,
    #[serde(default)]
    pub stop_code: Option<StopCode>,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    /// Increases with every change of the task; older versions are stale.
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    pub capacity_provider_name: Option<String>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// The task's health (`HEALTHY`, `UNHEALTHY`, `UNKNOWN`), from its
    /// containers' health checks.
    #[serde(default)]
    pub health_status: Option<String>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub pull_started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub pull_stopped_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub stopping_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub execution_stopped_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub stopped_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub containers: Vec<Container>,
}

/// An attachment of a task: a network interface, an EBS volume, …
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Attachment {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub details: Vec<NameValue>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct NameValue {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub last_status: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub health_status: Option<String>,
}

/// The lifecycle states of an ECS task, and any state AWS adds later.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
    Other(String),
}

impl TaskStatus {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Pending => "PENDING",
            Self::Activating => "ACTIVATING",
            Self::Running => "RUNNING",
            Self::Deactivating => "DEACTIVATING",
            Self::Stopping => "STOPPING",
            Self::Deprovisioning => "DEPROVISIONING",
            Self::Stopped => "STOPPED",
            Self::Other(s) => s,
        }
    }
}

impl From<String> for TaskStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "PROVISIONING" => Self::Provisioning,
            "PENDING" => Self::Pending,
            "ACTIVATING" => Self::Activating,
            "RUNNING" => Self::Running,
            "DEACTIVATING" => Self::Deactivating,
            "STOPPING" => Self::Stopping,
            "DEPROVISIONING" => Self::Deprovisioning,
            "STOPPED" => Self::Stopped,
            _ => Self::Other(s),
        }
    }
}

impl From<TaskStatus> for String {
    fn from(s: TaskStatus) -> String {
        s.as_str().to_owned()
    }
}

/// Why ECS stopped a task (`stopCode`), an open set.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub enum StopCode {
    TaskFailedToStart,
    EssentialContainerExited,
    UserInitiated,
    ServiceSchedulerInitiated,
    SpotInterruption,
    TerminationNotice,
    InfrastructureHealth,
    Other(String),
}

impl StopCode {
    pub fn as_str(&self) -> &str {
        match self {
            Self::TaskFailedToStart => "TaskFailedToStart",
            Self::EssentialContainerExited => "EssentialContainerExited",
            Self::UserInitiated => "UserInitiated",
            Self::ServiceSchedulerInitiated => "ServiceSchedulerInitiated",
            Self::SpotInterruption => "SpotInterruption",
            Self::TerminationNotice => "TerminationNotice",
            Self::InfrastructureHealth => "InfrastructureHealth",
            Self::Other(s) => s,
        }
    }
}

impl From<String> for StopCode {
    fn from(s: String) -> Self {
        match s.as_str() {
            "TaskFailedToStart" => Self::TaskFailedToStart,
            "EssentialContainerExited" => Self::EssentialContainerExited,
            "UserInitiated" => Self::UserInitiated,
            "ServiceSchedulerInitiated" => Self::ServiceSchedulerInitiated,
            "SpotInterruption" => Self::SpotInterruption,
            "TerminationNotice" => Self::TerminationNotice,
            "InfrastructureHealth" => Self::InfrastructureHealth,
            _ => Self::Other(s),
        }
    }
}

impl From<StopCode> for String {
    fn from(c: StopCode) -> String {
        c.as_str().to_owned()
    }
}

/// The attachment type of a task's managed EBS volume.
pub const EBS_ATTACHMENT: &str = "AmazonElasticBlockStorage";

impl TaskDetail {
    /// The id of the task's EBS volume, if the event carries it (it may not:
    /// then the adapter asks DescribeTasks or DescribeVolumes).
    pub fn ebs_volume_id(&self) -> Option<&str> {
        self.attachments
            .iter()
            .filter(|a| a.kind.as_deref() == Some(EBS_ATTACHMENT))
            .flat_map(|a| &a.details)
            .find(|d| d.name == "volumeId")
            .and_then(|d| d.value.as_deref())
    }

    /// Whether the task has reached its final state.
    pub fn is_stopped(&self) -> bool {
        self.last_status == Some(TaskStatus::Stopped)
    }

    /// Whether the task ran on Fargate Spot capacity.
    pub fn on_spot(&self) -> bool {
        self.capacity_provider_name.as_deref() == Some("FARGATE_SPOT")
    }
}

impl TaskStateChange {
    /// Parses an event, or says in one line what is wrong with it.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        // The ECS Developer Guide's example, kept in ../shared beside the repository.
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/aws-examples/ecs-task-state-change-running.json");
        let text = std::fs::read_to_string(path).expect("../shared/aws-examples is beside the checkout");
        let e = TaskStateChange::parse(&text).unwrap();
        assert_eq!(e.detail_type.as_deref(), Some("ECS Task State Change"));
        assert_eq!(e.detail.last_status, Some(TaskStatus::Running));
        assert_eq!(e.detail.version, Some(4));
        assert!(e.detail.task_arn.ends_with("/c13b4cb40f1f4fe4a2971f76ae5a47ad"));
        assert_eq!(e.detail.ebs_volume_id(), None);
        assert!(!e.detail.is_stopped());
    }

    #[test]
    fn stopped_spot_task_with_ebs_and_unknown_fields() {
        let json = r#"{
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "brandNewField": {"x": 1},
            "detail": {
                "taskArn": "arn:aws:ecs:us-east-1:1:task/c/abc",
                "lastStatus": "STOPPED",
                "desiredStatus": "STOPPED",
                "stopCode": "SpotInterruption",
                "stoppedReason": "Your Spot Task was interrupted.",
                "capacityProviderName": "FARGATE_SPOT",
                "version": 7,
                "stoppedAt": "2026-11-27T10:00:00.123Z",
                "attachments": [
                    {"type": "eni", "details": [{"name": "privateIPv4Address", "value": "10.0.0.1"}]},
                    {"type": "AmazonElasticBlockStorage", "status": "ATTACHED",
                     "details": [{"name": "volumeId", "value": "vol-0123"}, {"name": "deleteOnTermination", "value": "false"}]}
                ],
                "someFutureThing": true
            }
        }"#;
        let e = TaskStateChange::parse(json).unwrap();
        assert!(e.detail.is_stopped() && e.detail.on_spot());
        assert_eq!(e.detail.stop_code, Some(StopCode::SpotInterruption));
        assert_eq!(e.detail.ebs_volume_id(), Some("vol-0123"));
    }

    #[test]
    fn open_sets_and_minimal_events() {
        let e = TaskStateChange::parse(
            r#"{"detail": {"taskArn": "t", "stopCode": "SomethingNew", "lastStatus": "HIBERNATING"}}"#,
        )
        .unwrap();
        assert_eq!(e.detail.stop_code, Some(StopCode::Other("SomethingNew".into())));
        assert_eq!(e.detail.last_status, Some(TaskStatus::Other("HIBERNATING".into())));
        // The task ARN is the one field an event must have.
        assert!(TaskStateChange::parse(r#"{"detail": {"lastStatus": "STOPPED"}}"#).is_err());
        // Round trip keeps the wire names.
        let back = serde_json::to_value(&e).unwrap();
        assert_eq!(back["detail"]["stopCode"], "SomethingNew");
    }
}
