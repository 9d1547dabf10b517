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

/// The `source` of every ECS event.
pub const ECS_SOURCE: &str = "aws.ecs";
/// The `detail-type` of a task state change.
pub const TASK_STATE_CHANGE: &str = "ECS Task State Change";

/// Why an event from outside berth was refused, in one line.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not JSON: {0}")]
    Json(String),
    /// A field holds a value of the wrong shape (a date that is no date).
    #[error("field {field}: {message}")]
    Field { field: String, message: String },
    #[error("source is {0}, not \"aws.ecs\": not an ECS event")]
    Source(String),
    #[error("detail-type is {0}, not \"ECS Task State Change\"")]
    DetailType(String),
}

impl TaskStateChange {
    /// Parses an event, or says in one line what is wrong with it.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Parses an event that came from outside berth (EventBridge through
    /// SQS, a file given to `berth lambda decide`): it must say it is an
    /// ECS task state change, and a bad value names its field.
    pub fn parse_ecs(json: &str) -> Result<Self, EventError> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| EventError::Json(e.to_string()))?;
        Self::from_ecs_value(value)
    }

    /// As [`Self::parse_ecs`], from JSON already parsed.
    pub fn from_ecs_value(value: serde_json::Value) -> Result<Self, EventError> {
        let event: Self = serde_path_to_error::deserialize(value)
            .map_err(|e| EventError::Field { field: e.path().to_string(), message: e.into_inner().to_string() })?;
        let shown = |v: &Option<String>| v.as_deref().map_or_else(|| "missing".to_owned(), |s| printable(s, 64));
        if event.source.as_deref() != Some(ECS_SOURCE) {
            return Err(EventError::Source(shown(&event.source)));
        }
        if event.detail_type.as_deref() != Some(TASK_STATE_CHANGE) {
            return Err(EventError::DetailType(shown(&event.detail_type)));
        }
        Ok(event)
    }
}

/// Text from outside made safe to print: control characters (terminal
/// escapes among them) escaped, quoted, and cut at `max` characters.
pub fn printable(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).flat_map(char::escape_debug).collect();
    if text.chars().count() > max {
        out.push_str(&format!("… ({} more characters)", text.chars().count() - max));
    }
    format!("\"{out}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 20, defect 7: `lambda decide` and the Lambda took any JSON
    /// with a `detail` as a task state change, and a bad date's error did
    /// not say which field.
    #[test]
    fn an_event_from_outside_must_be_an_ecs_task_state_change() {
        let event = |source: &str, kind: &str, stopped_at: &str| {
            format!(
                r#"{{"source": "{source}", "detail-type": "{kind}",
                    "detail": {{"taskArn": "arn:aws:ecs:us-east-1:1:task/c/abc", "stoppedAt": "{stopped_at}"}}}}"#
            )
        };
        assert!(TaskStateChange::parse_ecs(&event("aws.ecs", "ECS Task State Change", "2026-11-27T10:00:00Z")).is_ok());
        let err = TaskStateChange::parse_ecs(&event("aws.ec2", "ECS Task State Change", "2026-11-27T10:00:00Z"));
        assert!(matches!(err, Err(EventError::Source(_))), "{err:?}");
        let err = TaskStateChange::parse_ecs(&event(
            "aws.ecs",
            "ECS Container Instance State Change",
            "2026-11-27T10:00:00Z",
        ));
        assert!(matches!(err, Err(EventError::DetailType(_))), "{err:?}");
        let err = TaskStateChange::parse_ecs(&event("aws.ecs", "ECS Task State Change", "yesterday")).unwrap_err();
        assert!(err.to_string().starts_with("field detail.stoppedAt:"), "{err}");
        assert!(matches!(TaskStateChange::parse_ecs("{"), Err(EventError::Json(_))));
    }

    /// Issue 20, defect 7: ANSI escapes in `startedBy` reached the terminal
    /// raw, and a 5 MB value was echoed in full.
    #[test]
    fn outside_text_is_printed_escaped_and_cut() {
        assert_eq!(printable("berth/files-0/3", 64), "\"berth/files-0/3\"");
        let shown = printable("\u{1b}[2J\u{1b}]0;pwned\u{7}", 64);
        assert!(!shown.contains('\u{1b}') && !shown.contains('\u{7}'), "{shown}");
        let long = "x".repeat(5 << 20);
        let shown = printable(&long, 128);
        assert!(shown.len() < 200 && shown.contains("more characters"), "{}", shown.len());
    }

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
