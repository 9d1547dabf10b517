//! berth's controller as a Lambda function (`bootstrap` on the
//! `provided.al2023` runtime, built with cargo-lambda): SQS batches of
//! EventBridge ECS task state changes, with partial batch failures, and the
//! scheduled `{"resync": true}`. The work is `berth_aws::handler`'s; this
//! file only reads the environment and runs the Lambda loop.
//!
//! Environment: `BERTH_CONFIG` (the stack's settings as JSON, see
//! `berth_aws::AwsSettings`), `BERTH_TABLE` (the DynamoDB table), and
//! optionally `BERTH_AWS_ENDPOINT` (an emulator's URL, for tests).

use anyhow::Context;
use berth_aws::handler::{answer, Handler};
use berth_aws::AwsSettings;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().json().with_target(false).without_time().init();
    // Boxed: the handler's future is deep enough to overflow the layout query.
    match Box::pin(run()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Lambda shows a failed init's output: one line saying what to set.
            eprintln!("berth-lambda: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let settings = AwsSettings::from_env()?;
    let table = std::env::var("BERTH_TABLE").context("BERTH_TABLE is not set: the ledger's DynamoDB table")?;
    let endpoint = std::env::var("BERTH_AWS_ENDPOINT").ok();
    let config = berth_aws::sdk_config(endpoint.as_deref()).await;
    let handler = Handler::new(settings, &config, &table);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let report = handler.handle(&event.payload).await;
        tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "invocation done");
        Ok::<Value, lambda_runtime::Error>(answer(&report))
    }))
    .await
    .map_err(|e| anyhow::anyhow!("the Lambda runtime loop failed: {e}"))
}
