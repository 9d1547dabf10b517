//! berth-aws: the AWS adapters of berth's ports.
//!
//! Today the ledger on DynamoDB ([`DynamoLedger`]), which passes the same
//! ledger contract as the SQLite ledger, and the translation of ECS tasks
//! into core's `TaskInfo` ([`ecs_task`]). The ECS runtime, the EBS volumes,
//! ELBv2 target registration and the Lambda entry point follow (issue 6):
//! adapters translate between AWS's API and core's ports; the rules stay in
//! `berth-core`.

mod dynamo;

/// ECS tasks as core's `TaskInfo` (the translation lives in core).
pub use berth_core::ecs_task;

pub use dynamo::DynamoLedger;

/// A DynamoDB client for `endpoint` (moto on loopback in tests, or `None`
/// for AWS itself), with credentials and region from the environment.
pub async fn dynamodb_client(endpoint: Option<&str>) -> aws_sdk_dynamodb::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    aws_sdk_dynamodb::Client::new(&loader.load().await)
}
