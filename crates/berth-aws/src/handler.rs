//! One Lambda invocation: an SQS batch of EventBridge ECS task state
//! changes, or the scheduled resync (`{"resync": true}`), carried out by
//! core's controller over the ECS, EBS and DynamoDB adapters.
//!
//! SQS delivers at least once and EventBridge may deliver an event twice:
//! the controller drops a redelivered event by its id and a stale one by
//! its `detail.version` (both in the ledger), so duplicates and two
//! concurrent invocations on one event change nothing. A record that fails
//! with an error a retry can help is reported in `batchItemFailures`, so
//! SQS redelivers only it (the queue's dead-letter queue takes it after
//! five tries); a record that can never succeed (not JSON, not an event)
//! is logged and dropped. A snapshot still pending never holds an
//! invocation: the claim waits in its handoff and the next resync (each
//! minute) looks again.
//!
//! The resync also auto-scales the services that have a policy (core's
//! target tracking on Container Insights' readings, the count kept in the
//! ledger), creates missing claims (once per desired count), takes the
//! next step of a deployment under way, sweeps orphans, and runs the
//! services' backup policies (`crate::backup`).
//! After the events, every invocation brings the target group in line
//! with the claims' running tasks (`berth_core::targets`).

use std::collections::BTreeSet;

use berth_core::autoscale::{ScalingPolicy, TaskUsage};
use berth_core::controller::{Controller, Due, EventOutcome, Inline, Reconciled, Shell, SystemClock};
use berth_core::scope::Scope;
use berth_core::targets;
use berth_core::ClaimName;
use berth_core::{Ledger, Runtime, TaskDefinition, TaskStateChange};
use serde::Serialize;
use serde_json::{json, Value};

use crate::ebs::EbsVolumes;
use crate::ecs::EcsRuntime;
use crate::elb::TargetGroup;
use crate::insights::ContainerInsights;
use crate::settings::{AwsAutoscaling, AwsSettings};
use crate::DynamoLedger;

/// The controller over AWS, as one invocation uses it.
pub type AwsController = Controller<EcsRuntime, EbsVolumes, DynamoLedger>;

/// What the handler did with one invocation (its answer, and the log line).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// SQS's partial batch response: the records to deliver again.
    pub batch_item_failures: Vec<ItemFailure>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resync: Option<ResyncReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<TargetReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemFailure {
    pub item_identifier: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ResyncReport {
    pub failed: Vec<String>,
    /// Each auto-scaled service's decision ("files: cpu 140.0% … → scale out 2 → 4").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub autoscaling: Vec<String>,
    pub backups: crate::backup::BackupReport,
    pub swept_volumes: usize,
    pub swept_snapshots: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct TargetReport {
    pub registered: Vec<String>,
    pub deregistered: Vec<String>,
}

/// The stack's adapters, made once per Lambda instance.
pub struct Handler {
    pub controller: AwsController,
    pub targets: Option<TargetGroup>,
    pub backups: Vec<crate::backup::Backup>,
    pub insights: ContainerInsights,
    pub autoscaling: Vec<AwsAutoscaling>,
    /// Each service's task definition as the stack registered it (the
    /// revision from `task_definition_arn`): a new one is a deployment.
    configured: Vec<(String, TaskDefinition)>,
}

impl Handler {
    /// The handler for `settings`, with SDK clients from `config`.
    pub fn new(settings: AwsSettings, config: &aws_config::SdkConfig, table: &str) -> Self {
        let runtime = EcsRuntime::new(aws_sdk_ecs::Client::new(config), settings.clone());
        let volumes = EbsVolumes::new(aws_sdk_ec2::Client::new(config), &settings.cluster);
        let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(config), table);
        let scope = Scope {
            clusters: vec![settings.cluster.clone()],
            services: Vec::new(),
            families: settings.services.iter().map(|s| s.definition.family.clone()).collect(),
        };
        let targets = settings
            .target_group_arn
            .as_ref()
            .map(|arn| TargetGroup::new(aws_sdk_elasticloadbalancingv2::Client::new(config), arn));
        let backups =
            settings.backups.iter().map(|b| crate::backup::Backup::new(b.clone(), config, &settings.cluster)).collect();
        let controller = Controller::new(
            "berth-lambda",
            runtime,
            volumes,
            ledger,
            settings.services.clone(),
            scope,
            Box::new(SystemClock),
        );
        let insights = ContainerInsights::new(aws_sdk_cloudwatch::Client::new(config), &settings.cluster);
        let configured = settings.services.iter().map(|s| (s.name.clone(), s.definition.clone())).collect();
        Self { controller, targets, backups, insights, autoscaling: settings.autoscaling, configured }
    }

    /// Handles one invocation's payload.
    pub async fn handle(&self, payload: &Value) -> Report {
        let mut report = Report::default();
        self.follow_registered().await;
        if let Some(records) = payload.get("Records").and_then(Value::as_array) {
            for record in records {
                let id = record.get("messageId").and_then(Value::as_str).unwrap_or_default().to_owned();
                let body = record.get("body").and_then(Value::as_str).unwrap_or_default();
                match self.on_message(body).await {
                    Ok(outcome) => report.outcomes.push(outcome),
                    Err(Retry(why)) => {
                        tracing::warn!(message = %id, error = %why, "event failed; SQS delivers it again");
                        report.outcomes.push(format!("retry: {why}"));
                        report.batch_item_failures.push(ItemFailure { item_identifier: id });
                    }
                }
            }
        } else if payload.get("resync").and_then(Value::as_bool) == Some(true)
            || payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
        {
            report.resync = Some(self.resync().await);
        } else {
            tracing::error!(payload = %payload, "neither an SQS batch nor a resync: ignored");
            report.outcomes.push("ignored: neither an SQS batch nor a resync".into());
        }
        report.targets = self.sync_targets().await;
        report
    }

    /// A message body: an EventBridge event, or a resync request sent
    /// through the queue.
    async fn on_message(&self, body: &str) -> Result<String, Retry> {
        let Ok(value) = serde_json::from_str::<Value>(body) else {
            tracing::error!(body, "an SQS message that is not JSON: dropped");
            return Ok("dropped: not JSON".into());
        };
        if value.get("resync").and_then(Value::as_bool) == Some(true) {
            let r = self.resync().await;
            return Ok(format!("resync ({} failed)", r.failed.len()));
        }
        // From the value already parsed: the body is read once.
        let event = match TaskStateChange::from_ecs_value(value) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "an SQS message that is not a task state change: dropped");
                return Ok(format!("dropped: {e}"));
            }
        };
        match self.controller.on_event(&event).await {
            Ok(outcome) => Ok(describe(&outcome)),
            Err(e) if e.is_retryable() => Err(Retry(e.to_string())),
            Err(e) => {
                tracing::error!(error = %e, task = %event.detail.task_arn, "event failed for good: dropped");
                Ok(format!("failed: {e}"))
            }
        }
    }

    /// The scheduled resync: core's pass with every part due (see
    /// [`berth_core::controller::Due`] for its order), on Container
    /// Insights' readings for auto scaling, reconciling claims inline and
    /// running the services' EBS backups.
    pub async fn resync(&self) -> ResyncReport {
        let mut report = ResyncReport::default();
        let due = Due::all(self.readings(&mut report).await);
        let shell =
            LambdaShell { handler: self, backups: std::sync::Mutex::new(crate::backup::BackupReport::default()) };
        let pass = self.controller.pass(&due, &shell).await;
        report.backups = shell.backups.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        report.failed.extend(pass.refused);
        report.failed.extend(pass.failed);
        report.failed.append(&mut report.backups.failed);
        report.autoscaling = pass.autoscaling;
        (report.swept_volumes, report.swept_snapshots) = (pass.swept_volumes, pass.swept_snapshots);
        report
    }

    /// Each auto-scaled service's policy with its family's newest Container
    /// Insights readings, for the pass's target-tracking decisions.
    async fn readings(&self, report: &mut ResyncReport) -> Vec<(String, ScalingPolicy, Vec<TaskUsage>)> {
        let now = self.controller.now();
        let mut readings = Vec::new();
        for a in &self.autoscaling {
            let Some(spec) = self.controller.services().into_iter().find(|s| s.name == a.service) else { continue };
            match self.insights.usage(&spec.definition.family, now).await {
                Ok(u) => readings.push((a.service.clone(), a.policy.clone(), u.into_iter().collect())),
                Err(e) => report.failed.push(format!("autoscaling of {}: {e}", a.service)),
            }
        }
        readings
    }

    /// Brings each service's record in line with the revision the stack
    /// registered (a new one starts a deployment, one claim at a time) and
    /// gives the controller the service's revisions from the ledger.
    async fn follow_registered(&self) {
        for (service, definition) in &self.configured {
            let timeout = berth_core::deploy::DEFAULT_TIMEOUT;
            match self.controller.follow_registered(service, definition, timeout).await {
                Ok(Some(to)) => tracing::info!(service, revision = to, "deploying a newly registered revision"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, service, "could not read or follow the service's revisions"),
            }
        }
    }

    /// Registers the running claims' tasks with the target group and
    /// deregisters the rest.
    pub async fn sync_targets(&self) -> Option<TargetReport> {
        let group = self.targets.as_ref()?;
        let result = async {
            let claims = self.controller.ledger.claims().await.map_err(|e| e.to_string())?;
            let tasks = self.controller.runtime.tasks().await.map_err(|e| e.to_string())?;
            let registered: BTreeSet<String> = group.registered().await.map_err(|e| e.to_string())?;
            let plan = targets::plan(&claims, &tasks, &registered);
            group.apply(&plan).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(TargetReport { registered: plan.register, deregistered: plan.deregister })
        }
        .await;
        match result {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "could not bring the target group in line; the next invocation tries again");
                None
            }
        }
    }
}

/// An error a later delivery can get past.
struct Retry(String);

fn describe(outcome: &EventOutcome) -> String {
    match outcome {
        EventOutcome::OutOfScope => "out-of-scope".into(),
        EventOutcome::Stale => "stale".into(),
        EventOutcome::Unclaimed => "unclaimed".into(),
        EventOutcome::Reconciled(claim, _) => format!("reconciled {claim}"),
    }
}

/// The report as the Lambda's JSON answer.
pub fn answer(report: &Report) -> Value {
    serde_json::to_value(report).unwrap_or_else(|_| json!({ "batchItemFailures": [] }))
}

/// The Lambda's side of a pass: claims reconciled inline, and the
/// services' EBS backup schedules.
struct LambdaShell<'a> {
    handler: &'a Handler,
    backups: std::sync::Mutex<crate::backup::BackupReport>,
}

impl Shell for LambdaShell<'_> {
    async fn reconcile(&self, claims: Vec<ClaimName>) -> Reconciled {
        Inline(&self.handler.controller).reconcile(claims).await
    }

    async fn back_up(&self) -> Vec<String> {
        let mut report = crate::backup::BackupReport::default();
        for backup in &self.handler.backups {
            backup.pass(&self.handler.controller, &mut report).await;
        }
        *self.backups.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = report;
        Vec::new()
    }
}
