//! Tasks and the `Runtime` port: what starts, stops and describes them.
//!
//! A task is one running incarnation of a claim. Locally the supervisor
//! runs it as a child process; on AWS it is an ECS task. Both report tasks
//! in the same shape, with ECS's lifecycle states and stop codes, so the
//! reconciler cannot tell them apart.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::autoscale::UsageSample;
use crate::claim::{ClaimName, Generation};
use crate::event::{StopCode, TaskStateChange, TaskStatus};
use crate::ports::{PortError, VolumeInfo, VolumeSource};

/// A task's ARN, in ECS's format everywhere
/// (`arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskArn(pub String);

impl TaskArn {
    /// The short id after the last `/`, as ECS's console shows it.
    pub fn short(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for TaskArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a container's health is probed (ECS `healthCheck`, plus an HTTP
/// probe that the local supervisor runs itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Probe {
    /// A command run in the task's environment; exit 0 is healthy.
    Command(Vec<String>),
    /// An HTTP GET on the task's port; any 2xx is healthy.
    Http { path: String },
}

/// A container health check, with ECS's parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: Probe,
    #[serde(with = "crate::serde_secs")]
    pub interval: Duration,
    #[serde(with = "crate::serde_secs")]
    pub timeout: Duration,
    /// Consecutive failures that make the container unhealthy.
    pub retries: u32,
    /// Failures during this time after start do not count.
    #[serde(with = "crate::serde_secs")]
    pub start_period: Duration,
    /// How often it is probed while the task starts: until its first pass,
    /// within the start period (Docker's `start_interval`), so a task is
    /// healthy a moment after it serves rather than a whole interval later.
    /// ECS has no such setting: on AWS the container probes at `interval`.
    #[serde(default = "start_interval", with = "crate::serde_secs")]
    pub start_interval: Duration,
}

/// The default [`HealthCheck::start_interval`].
pub const HEALTH_START_INTERVAL: Duration = Duration::from_millis(100);

fn start_interval() -> Duration {
    HEALTH_START_INTERVAL
}

/// A task definition: what a claim's task runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDefinition {
    /// `family:revision`, as ECS names task definitions.
    pub family: String,
    pub revision: u32,
    /// The command; empty means the default workload (`berth serve`).
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// The port the task listens on (locally each task gets its own and
    /// this is only the default for the `PORT` variable on AWS).
    pub port: u16,
    pub health_check: Option<HealthCheck>,
    /// SIGTERM, then SIGKILL after this long.
    #[serde(with = "crate::serde_secs")]
    pub stop_timeout: Duration,
    /// Variables whose values are secrets, by where the runtime reads them
    /// as the task starts (an ECS task definition's `secrets`, `valueFrom`).
    /// A definition, and so the ledger that keeps every revision, holds
    /// where a secret is, never its value. Under `berth up`: `env:NAME`
    /// (berth up's own environment) or `file:PATH`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// The container the task runs, if it runs one: under `berth up` a task
    /// without one is a host process (`command`, or `berth serve`). With
    /// one, `command` is the container's command (empty: the image's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSpec>,
}

/// What an ECS container definition says beyond the command: the image,
/// who runs it and where, the task size it is held to, and where the
/// claim's volume is mounted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// An image reference (`localhost/berth-serve:1`, `postgres:16`).
    pub image: String,
    /// The entry point; empty keeps the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry_point: Vec<String>,
    /// `uid[:gid]` or a user name; none keeps the image's `USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Where the claim's volume is mounted read-write (the blog's `/data`).
    pub mount_path: String,
    /// CPU units (1024 = one core) and MiB: enforced on the container, as
    /// Fargate holds a task to its size.
    pub cpu: u32,
    pub memory: u32,
    pub network: NetworkMode,
}

/// How a container task is networked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Its own network namespace (as `awsvpc` gives each task its own
    /// address): its port is published on the host's loopback at a free
    /// port, so every task may listen on the same container port.
    #[default]
    Bridge,
    /// The host's network: it listens on the port berth gives it (`PORT`),
    /// as a process task does, and reaches loopback peers directly.
    Host,
}

/// Everything a runtime needs to start one generation of a claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchRequest {
    pub service: String,
    pub claim: ClaimName,
    pub generation: Generation,
    pub volume: LaunchVolume,
    pub definition: TaskDefinition,
    /// Derived from (claim, generation): launching twice with one token
    /// starts one task (ECS RunTask's `clientToken`).
    pub client_token: String,
    /// A canary: the claim's task run on a scratch volume to prove a
    /// restored snapshot serves (restore verification, DR drills). Its task
    /// names no service or claim, so no controller, load balancer or peer
    /// list takes it for one of the claim's; the runtime runs its health
    /// check as for any task.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,
}

/// The volume a task starts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LaunchVolume {
    /// A volume the store made beforehand (a folder under `berth up`).
    Attach(VolumeInfo),
    /// A volume the runtime makes as it starts the task, from this source
    /// (ECS RunTask's `managedEBSVolume`: Fargate attaches EBS volumes only
    /// at launch, so there is nothing to make before).
    Create(VolumeSource),
}

impl LaunchVolume {
    /// The volume made beforehand, if any.
    pub fn attached(&self) -> Option<&VolumeInfo> {
        match self {
            Self::Attach(v) => Some(v),
            Self::Create(_) => None,
        }
    }
}

impl LaunchRequest {
    /// The client token for a generation of a claim.
    pub fn token_for(claim: &ClaimName, generation: Generation) -> String {
        format!("berth-{claim}-{generation}")
    }

    /// A canary of `claim` on the volume `scratch` (see [`Self::canary`]);
    /// `nonce` makes its client token one of its own.
    pub fn canary_of(
        service: &str,
        claim: &ClaimName,
        definition: TaskDefinition,
        scratch: VolumeInfo,
        nonce: &str,
    ) -> Self {
        Self {
            service: service.to_owned(),
            claim: claim.clone(),
            generation: Generation(0),
            volume: LaunchVolume::Attach(scratch),
            definition,
            client_token: format!("berth-canary-{claim}-{nonce}"),
            canary: true,
        }
    }
}

/// A container's health as the runtime last saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Health {
    #[default]
    Unknown,
    Healthy,
    Unhealthy,
}

/// A task as its runtime describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub arn: TaskArn,
    pub service: Option<String>,
    pub claim: Option<ClaimName>,
    pub generation: Option<Generation>,
    pub last_status: TaskStatus,
    pub desired_status: TaskStatus,
    pub health: Health,
    /// Whether a health check is defined (without one, RUNNING is enough).
    pub has_health_check: bool,
    pub stop_code: Option<StopCode>,
    pub stopped_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    /// `detail.version` of the task's last state change.
    pub version: u64,
    /// Where it serves (`127.0.0.1:PORT` locally; the task IP on AWS).
    pub endpoint: Option<String>,
    pub definition: Option<String>,
}

impl TaskInfo {
    pub fn is_stopped(&self) -> bool {
        self.last_status == TaskStatus::Stopped
    }

    /// The task definition revision it runs: the number after the last `:`
    /// of its definition's ARN (`…:task-definition/files:3`), as ECS names them.
    pub fn revision(&self) -> Option<u32> {
        self.definition.as_deref()?.rsplit_once(':')?.1.parse().ok()
    }

    /// Running and, if it has a health check, passing it.
    pub fn is_ready(&self) -> bool {
        self.last_status == TaskStatus::Running && (!self.has_health_check || self.health == Health::Healthy)
    }
}

/// A runtime's task state changes, as ECS `Task State Change` events.
pub trait TaskEvents: Send {
    /// The next change, in version order per task. `Some(Err(n))`: `n`
    /// changes were lost because the reader fell behind (a resync finds
    /// what they said, rule 2). `None`: no more will come.
    fn next(&mut self) -> impl Future<Output = Option<Result<TaskStateChange, u64>>> + Send;
}

/// The events of a runtime whose changes reach the controller another way
/// (ECS: EventBridge → SQS → the Lambda): none, at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEvents;

impl TaskEvents for NoEvents {
    async fn next(&mut self) -> Option<Result<TaskStateChange, u64>> {
        None
    }
}

/// Starts, stops and describes tasks, and says what they do.
pub trait Runtime: Send + Sync {
    /// Its stream of task state changes.
    type Events: TaskEvents + 'static;
    /// Starts a task; a second call with the same client token returns the
    /// task of the first.
    fn run_task(&self, request: &LaunchRequest) -> impl Future<Output = Result<TaskInfo, PortError>> + Send;

    /// Asks a task to stop (SIGTERM, then SIGKILL after its stop timeout).
    /// `code` is the stop code the runtime reports for it; stopping a task
    /// that has stopped succeeds.
    fn stop_task(
        &self,
        task: &TaskArn,
        code: StopCode,
        reason: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Every task the runtime knows, stopped ones included for as long as
    /// it keeps them (ECS: about an hour).
    fn tasks(&self) -> impl Future<Output = Result<Vec<TaskInfo>, PortError>> + Send;

    /// Task state changes from now on.
    fn subscribe(&self) -> Self::Events;

    /// The CPU and memory a running task uses now; `None` for a task that
    /// is not running, or a runtime whose readings come another way (ECS:
    /// Container Insights).
    fn usage(&self, task: &TaskArn) -> impl Future<Output = Result<Option<UsageSample>, PortError>> + Send;
}

impl<T: Runtime> Runtime for std::sync::Arc<T> {
    type Events = T::Events;

    fn subscribe(&self) -> Self::Events {
        (**self).subscribe()
    }

    fn usage(&self, task: &TaskArn) -> impl Future<Output = Result<Option<UsageSample>, PortError>> + Send {
        (**self).usage(task)
    }

    fn run_task(&self, request: &LaunchRequest) -> impl Future<Output = Result<TaskInfo, PortError>> + Send {
        (**self).run_task(request)
    }

    fn stop_task(
        &self,
        task: &TaskArn,
        code: StopCode,
        reason: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send {
        (**self).stop_task(task, code, reason)
    }

    fn tasks(&self) -> impl Future<Output = Result<Vec<TaskInfo>, PortError>> + Send {
        (**self).tasks()
    }
}
