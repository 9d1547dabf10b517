//! berth-aws: the AWS adapters of berth's ports, and the Lambda handler.
//!
//! - [`EcsRuntime`]: the `Runtime` port on ECS (RunTask, StopTask,
//!   DescribeTasks, ListTasks), each claim a standalone Fargate task.
//! - [`EbsVolumes`]: the `Volumes` port on EBS (volumes made by RunTask,
//!   found by tag; CreateSnapshot found by tag first; CopySnapshot).
//! - [`DynamoLedger`]: the ledger on DynamoDB, the same contract as the
//!   SQLite ledger.
//! - [`TargetGroup`]: ELBv2 registration of the claims' task addresses.
//! - [`insights`]: the tasks' CPU and memory use from Container Insights,
//!   for core's auto scaling.
//! - [`handler`]: one Lambda invocation (an SQS batch of EventBridge
//!   events, or the scheduled resync) over these adapters.
//!
//! Adapters translate between AWS's API and core's ports; the rules stay
//! in `berth-core`. This is the one crate that links the AWS SDK.

pub mod backup;
pub mod cleanup;
mod dynamo;
mod ebs;
mod ecs;
mod elb;
pub mod handler;
pub mod insights;
pub mod ledger_url;
mod sdk;
mod settings;
pub mod tags;

/// ECS tasks as core's `TaskInfo` (the translation lives in core).
pub use berth_core::ecs_task;

pub use dynamo::DynamoLedger;
pub use ebs::{snapshot_record, volume_info, EbsVolumes};
pub use ecs::{detail_of, EcsRuntime};
pub use elb::TargetGroup;
pub use settings::{AwsAutoscaling, AwsBackup, AwsSettings, EbsVolumeSpec, SettingsError};

/// The SDK configuration for `endpoint` (moto on loopback in tests, or
/// `None` for AWS itself), with credentials and region from the environment.
pub async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    sdk_config_in(endpoint, None).await
}

/// [`sdk_config`] in `region` rather than the environment's.
pub async fn sdk_config_in(endpoint: Option<&str>, region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    loader.load().await
}

/// A DynamoDB client for `endpoint`.
pub async fn dynamodb_client(endpoint: Option<&str>) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config(endpoint).await)
}
