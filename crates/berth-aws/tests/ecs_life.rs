//! A claim's whole life on AWS's APIs, emulated by moto on loopback: the
//! Lambda handler over the ECS runtime, the EBS volumes, the DynamoDB
//! ledger and the ALB target group.
//!
//! moto runs tasks but ignores RunTask's `volumeConfigurations` (and
//! `clientToken`), sets no `stopCode`, and advances a task one state per
//! DescribeTasks unless told otherwise; so the test holds tasks where they
//! are and plays ECS's part: it makes each task's EBS volume through EC2
//! with the tags RunTask's `tagSpecifications` would give it, and it
//! writes the EventBridge event ECS would publish for a stop.

mod moto;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetTypeEnum};
use berth_aws::handler::Handler;
use berth_aws::{tags, AwsSettings, DynamoLedger};
use berth_core::retention::KeepPolicy;
use berth_core::{ClaimName, Generation, Ledger};
use serde_json::{json, Value};

const CLUSTER: &str = "berth-test";
const TABLE: &str = "berth-ledger";

struct Stack {
    moto: moto::Moto,
    config: aws_config::SdkConfig,
    ec2: aws_sdk_ec2::Client,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    settings: AwsSettings,
}

impl Stack {
    /// The blog's stack in miniature: a VPC with DNS hostnames, a subnet,
    /// a security group, the cluster, the task definition, the target
    /// group and the ledger table.
    async fn new() -> Self {
        let moto = moto::Moto::start();
        moto.hold_ecs_tasks();
        let config = moto.sdk_config();
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let ecs = aws_sdk_ecs::Client::new(&config);
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&config);
        let (vpc, subnet, sg) = moto::network(&ec2).await;
        ecs.create_cluster().cluster_name(CLUSTER).send().await.unwrap();
        let group = elb
            .create_target_group()
            .name("berth-files")
            .protocol(ProtocolEnum::Http)
            .port(5000)
            .vpc_id(&vpc)
            .target_type(TargetTypeEnum::Ip)
            .health_check_path("/health")
            .send()
            .await
            .unwrap();
        let group = group.target_groups()[0].target_group_arn().unwrap().to_owned();
        DynamoLedger::create_table(&aws_sdk_dynamodb::Client::new(&config), TABLE).await.unwrap();
        let mut settings = moto::files_settings(CLUSTER, subnet, sg);
        settings.target_group_arn = Some(group);
        let stack = Self { moto, config, ec2, ecs, elb, settings };
        assert_eq!(stack.register_revision("berth:test").await, 1);
        stack
    }

    /// The Lambda's handler, signing as the controller (see `moto::permissions`).
    fn handler(&self) -> Handler {
        Handler::new(self.settings.clone(), &self.moto.controller_config(), TABLE)
    }

    /// Every call the controller made in this test is one the stack's IAM
    /// policy for the Lambda's role allows (issue 25: no AccessDenied on
    /// the first deployment).
    fn assert_permitted(&self) {
        moto::permissions::assert_allowed(&self.moto, "dynamodb:GetItem");
    }

    fn ledger(&self) -> DynamoLedger {
        DynamoLedger::new(aws_sdk_dynamodb::Client::new(&self.config), TABLE)
    }

    async fn claim(&self) -> berth_core::ClaimRecord {
        self.ledger().claim(&ClaimName::parse("files-0").unwrap()).await.unwrap().expect("claim files-0")
    }

    /// ECS's part of RunTask that moto skips: the generation's volume,
    /// from the handoff's snapshot, with RunTask's tags.
    async fn make_task_volume(&self, generation: u64, snapshot: Option<&str>) -> String {
        let mut tagging = TagSpecification::builder().resource_type(ResourceType::Volume);
        for (k, v) in [
            (tags::CLUSTER, CLUSTER.to_owned()),
            (tags::CLAIM, "files-0".to_owned()),
            (tags::GENERATION, generation.to_string()),
            ("AmazonECSCreated", "true".to_owned()),
            ("AmazonECSManaged", "true".to_owned()),
        ] {
            tagging = tagging.tags(Tag::builder().key(k).value(v).build());
        }
        let v = self
            .ec2
            .create_volume()
            .availability_zone("us-east-1a")
            .size(10)
            .volume_type(aws_sdk_ec2::types::VolumeType::Gp3)
            .set_snapshot_id(snapshot.map(str::to_owned))
            .tag_specifications(tagging.build())
            .send()
            .await
            .unwrap();
        v.volume_id().unwrap().to_owned()
    }

    /// berth's tasks of one generation, as ECS lists them.
    async fn tasks_of(&self, generation: u64) -> Vec<aws_sdk_ecs::types::Task> {
        let started = format!("berth/files-0/{generation}");
        let mut arns = Vec::new();
        for status in [aws_sdk_ecs::types::DesiredStatus::Running, aws_sdk_ecs::types::DesiredStatus::Stopped] {
            let list = self
                .ecs
                .list_tasks()
                .cluster(CLUSTER)
                .started_by(&started)
                .desired_status(status)
                .send()
                .await
                .unwrap();
            arns.extend(list.task_arns().iter().cloned());
        }
        if arns.is_empty() {
            return Vec::new();
        }
        let d = self.ecs.describe_tasks().cluster(CLUSTER).set_tasks(Some(arns)).send().await.unwrap();
        d.tasks().to_vec()
    }

    /// The task's private address, as the target group should hold it.
    fn address(task: &aws_sdk_ecs::types::Task) -> String {
        let detail = berth_aws::detail_of(task);
        berth_aws::ecs_task::task_info(&detail, 5000, chrono::Utc::now()).endpoint.unwrap()
    }

    async fn targets(&self) -> BTreeSet<String> {
        berth_aws::TargetGroup::new(self.elb.clone(), self.settings.target_group_arn.clone().unwrap())
            .registered()
            .await
            .unwrap()
    }

    /// The volumes berth tagged in this stack, by generation.
    async fn volumes(&self) -> Vec<(u64, String, Option<String>)> {
        let mut out = Vec::new();
        let d = self.ec2.describe_volumes().send().await.unwrap();
        for v in d.volumes() {
            if let Some(info) = berth_aws::volume_info(v) {
                out.push((info.generation.unwrap().0, info.id.0, info.source_snapshot.map(|s| s.0)));
            }
        }
        out.sort();
        out
    }

    /// Stops a task as ECS would for `stop_code` (moto stops it, and sets
    /// no code), and returns the SQS batch EventBridge would deliver.
    async fn stop_as_ecs(&self, task: &aws_sdk_ecs::types::Task, stop_code: &str, event_id: &str) -> Value {
        self.ecs.stop_task().cluster(CLUSTER).task(task.task_arn().unwrap()).reason("world").send().await.unwrap();
        let stopped =
            self.ecs.describe_tasks().cluster(CLUSTER).tasks(task.task_arn().unwrap()).send().await.unwrap().tasks()[0]
                .clone();
        let mut detail = serde_json::to_value(berth_aws::detail_of(&stopped)).unwrap();
        detail["stopCode"] = json!(stop_code);
        detail["version"] = json!(detail["version"].as_u64().unwrap_or(1) + 10);
        let event = json!({
            "version": "0",
            "id": event_id,
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": "123456789012",
            "time": "2026-12-02T12:00:00Z",
            "region": "us-east-1",
            "resources": [stopped.task_arn().unwrap()],
            "detail": detail,
        });
        json!({ "Records": [{ "messageId": format!("m-{event_id}"), "body": event.to_string() }] })
    }
}

/// The snapshot a generation's handoff restores from, per the ledger.
async fn handoff_snapshot(stack: &Stack) -> String {
    let c = stack.claim().await;
    c.handoff.and_then(|h| h.snapshot).expect("a handoff with a snapshot").0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claims_whole_life_on_ecs_ebs_dynamodb_and_the_alb() {
    let stack = Stack::new().await;
    let handler = stack.handler();

    // First resync: the claim is made and its first task started.
    let report = handler.handle(&json!({ "resync": true })).await;
    assert!(report.resync.as_ref().unwrap().failed.is_empty(), "{report:?}");
    let first = stack.tasks_of(1).await;
    assert_eq!(first.len(), 1, "one task for generation 1");
    assert_eq!(stack.claim().await.generation, Generation(1));
    // ECS makes the volume; until then the claim waits in its handoff.
    assert!(stack.claim().await.handoff.is_some());
    let v1 = stack.make_task_volume(1, None).await;
    handler.handle(&json!({ "resync": true })).await;
    let c = stack.claim().await;
    assert!(c.handoff.is_none(), "{:?}", c.handoff);
    assert_eq!(c.volume.as_ref().map(|v| v.0.as_str()), Some(v1.as_str()));
    assert_eq!(c.task.as_ref().map(|t| t.0.as_str()), first[0].task_arn());
    assert_eq!(stack.targets().await, BTreeSet::from([Stack::address(&first[0])]));

    // A Spot interruption: snapshot of the stopped task's volume, a
    // replacement from it, the old volume deleted, the target moved.
    let batch = stack.stop_as_ecs(&first[0], "SpotInterruption", "e-1").await;
    let report = handler.handle(&batch).await;
    assert!(report.batch_item_failures.is_empty(), "{report:?}");
    assert_eq!(stack.claim().await.generation, Generation(2));
    let snap = handoff_snapshot(&stack).await;
    let second = stack.tasks_of(2).await;
    assert_eq!(second.len(), 1);
    let v2 = stack.make_task_volume(2, Some(&snap)).await;
    handler.handle(&json!({ "resync": true })).await;
    let c = stack.claim().await;
    assert!(c.handoff.is_none(), "{:?}", c.handoff);
    assert_eq!(c.head_snapshot.as_ref().map(|s| s.0.as_str()), Some(snap.as_str()));
    assert_eq!(stack.volumes().await, vec![(2, v2.clone(), Some(snap.clone()))], "the old volume is gone");
    let s = stack.ec2.describe_snapshots().snapshot_ids(&snap).send().await.unwrap();
    let record = berth_aws::snapshot_record(&s.snapshots()[0]).unwrap();
    assert_eq!((record.claim.unwrap().as_str(), record.generation), ("files-0", Some(Generation(1))));
    assert_eq!(record.kind, Some(berth_core::SnapshotKind::OnStop));
    assert_eq!(s.snapshots()[0].volume_id(), Some(v1.as_str()));
    let generations = stack.ledger().generations(&ClaimName::parse("files-0").unwrap()).await.unwrap();
    assert_eq!(generations.len(), 2);
    assert_eq!(generations[0].stop_snapshot.as_ref().map(|s| s.0.as_str()), Some(snap.as_str()));
    assert_eq!(generations[1].source_snapshot.as_ref().map(|s| s.0.as_str()), Some(snap.as_str()));
    assert_eq!(stack.targets().await, BTreeSet::from([Stack::address(&second[0])]));

    // The same delivery again: dropped as seen.
    let again = handler.handle(&batch).await;
    assert_eq!(again.outcomes, vec!["stale".to_string()], "{again:?}");

    // A crash, delivered twice at once to two Lambda instances: one snapshot, one replacement.
    let batch = stack.stop_as_ecs(&second[0], "EssentialContainerExited", "e-2").await;
    let other = stack.handler();
    let (a, b) = tokio::join!(handler.handle(&batch), other.handle(&batch));
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty(), "{a:?} {b:?}");
    for _ in 0..3 {
        handler.handle(&json!({ "resync": true })).await;
    }
    assert_eq!(stack.claim().await.generation, Generation(3));
    assert_eq!(stack.tasks_of(3).await.len(), 1, "one replacement");
    let snaps = stack.ec2.describe_snapshots().owner_ids("self").send().await.unwrap();
    let of_two: Vec<_> = snaps
        .snapshots()
        .iter()
        .filter_map(berth_aws::snapshot_record)
        .filter(|s| s.generation == Some(Generation(2)))
        .collect();
    assert_eq!(of_two.len(), 1, "one stop snapshot of generation 2: {of_two:?}");
    let snap = handoff_snapshot(&stack).await;
    stack.make_task_volume(3, Some(&snap)).await;
    handler.handle(&json!({ "resync": true })).await;
    assert!(stack.claim().await.handoff.is_none());

    // A stale event (an older version of the first task) changes nothing.
    let mut detail = serde_json::to_value(berth_aws::detail_of(&first[0])).unwrap();
    detail["version"] = json!(1);
    let stale = json!({ "id": "e-old", "detail-type": "ECS Task State Change", "source": "aws.ecs", "detail": detail });
    let report = handler.handle(&json!({ "Records": [{ "messageId": "m-old", "body": stale.to_string() }] })).await;
    assert_eq!(report.outcomes, vec!["stale".to_string()], "{report:?}");
    assert_eq!(stack.claim().await.generation, Generation(3));

    // A dropped event: the task stops and nobody hears; the resync finds it.
    let third = stack.tasks_of(3).await;
    stack.ecs.stop_task().cluster(CLUSTER).task(third[0].task_arn().unwrap()).send().await.unwrap();
    handler.handle(&json!({ "resync": true })).await;
    assert_eq!(stack.claim().await.generation, Generation(4), "the resync replaced the stopped task");
    assert_eq!(stack.tasks_of(4).await.len(), 1);

    let snap = handoff_snapshot(&stack).await;
    stack.make_task_volume(4, Some(&snap)).await;
    handler.handle(&json!({ "resync": true })).await;
    assert!(stack.claim().await.handoff.is_none());

    // A deployment (as `berth deploy` records it): the resync moves the
    // claim to the new revision through a handoff, with its data.
    assert_eq!(stack.register_revision("berth:test2").await, 2);
    let ledger = stack.ledger();
    let mut record = ledger.service("files").await.unwrap().expect("the Lambda recorded the service when it scaled");
    let mut next = stack.settings.services[0].definition.clone();
    next.env.insert("RELEASE".into(), "2".into());
    let version = record.version;
    assert_eq!(record.deploy(next, Duration::from_secs(600), chrono::Utc::now()).unwrap(), 2);
    ledger.put_service(&record, berth_core::Expect::Version(version)).await.unwrap();
    handler.handle(&json!({ "resync": true })).await;
    assert_eq!(stack.claim().await.revision, 2, "the rollout moved the claim");
    assert_eq!(stack.claim().await.generation, Generation(5));
    let fifth = stack.tasks_of(5).await;
    assert_eq!(fifth.len(), 1);
    assert!(fifth[0].task_definition_arn().unwrap().ends_with("files:2"), "{:?}", fifth[0].task_definition_arn());
    let snap = handoff_snapshot(&stack).await;
    stack.make_task_volume(5, Some(&snap)).await;
    for _ in 0..3 {
        handler.handle(&json!({ "resync": true })).await;
    }
    let record = ledger.service("files").await.unwrap().unwrap();
    let state = record.deployment.as_ref().map(|d| d.state.as_str());
    assert_eq!(state, Some("completed"), "{:?}", record.deployment);

    // Not an event at all: dropped, not retried forever.
    let report = handler.handle(&json!({ "Records": [{ "messageId": "m-x", "body": "not json" }] })).await;
    assert!(report.batch_item_failures.is_empty());

    operator_reads_the_claims_life_from_the_dynamodb_ledger(&stack);
    stack.assert_permitted();
    drop(stack.moto);
}

/// `berth` beside `berth-aws` (a workspace build has both), run with the
/// AWS ledger on moto.
fn berth(stack: &Stack, args: &[&str]) -> (bool, String, String) {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_berth-aws")).with_file_name("berth");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo test --workspace` builds it (or cargo build -p berth)",
        bin.display()
    );
    let out = std::process::Command::new(&bin)
        .args(args)
        .env("BERTH_AWS_ENDPOINT", stack.moto.url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("BERTH_STATE")
        .env_remove("BERTH_LEDGER")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// An operator of the AWS stack reads what the controller did with the
/// CLI's own commands, as `berth up` users do: claims, a claim's
/// generations with their stop codes, snapshots and RTO, and the events.
fn operator_reads_the_claims_life_from_the_dynamodb_ledger(stack: &Stack) {
    let ledger = format!("dynamodb://{TABLE}?region=us-east-1");
    let (ok, out, err) = berth(stack, &["claims", "--ledger", &ledger, "--json"]);
    assert!(ok, "{err}");
    let claims: Vec<berth_core::ClaimRecord> = serde_json::from_str(&out).unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].generation, Generation(5));

    let (ok, out, err) = berth(stack, &["claim", "history", "files-0", "--ledger", &ledger]);
    assert!(ok, "{err}");
    // The table as locally: each generation with its stop snapshot (1 to
    // 4) and the RTO of the handoff that started it (2 to 5). (moto sets
    // no stopCode on DescribeTasks, so the STOP-CODE column stays empty
    // here; ECS reports it.)
    let rows: Vec<Vec<&str>> =
        out.lines().skip(1).take_while(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 5, "{out}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], (i + 1).to_string(), "{out}");
        assert_eq!(row[7].starts_with("snap-"), i < 4, "stop snapshot of generation {}:\n{out}", i + 1);
        assert_eq!(row[8] != "-", i > 0, "RTO of generation {}:\n{out}", i + 1);
    }
    let (ok, out, err) = berth(stack, &["claim", "history", "files-0", "--ledger", &ledger, "--json"]);
    assert!(ok, "{err}");
    let history: berth_core::ledger::read::ClaimHistory = serde_json::from_str(&out).unwrap();
    assert_eq!(history.generations.len(), 5);
    assert!(history.generations[1].rto_ms.is_some(), "a handoff's RTO is measured: {:?}", history.generations[1]);
    assert!(history.snapshots.iter().any(|s| s.kind == Some(berth_core::SnapshotKind::OnStop)));

    let (ok, out, err) = berth(stack, &["events", "--ledger", &ledger, "--claim", "files-0", "--json"]);
    assert!(ok, "{err}");
    let events: Vec<berth_core::ledger::EventRecord> = serde_json::from_str(&out).unwrap();
    assert!(events.iter().any(|e| e.kind == "handoff-done"), "{events:?}");

    // Read only, and clear about what it cannot do.
    let (ok, _, err) = berth(stack, &["claim", "history", "files-9", "--ledger", &ledger]);
    assert!(!ok && err.contains("no claim files-9"), "{err}");
    let (ok, _, err) = berth(stack, &["scale", "files", "3", "--ledger", &ledger]);
    assert!(!ok && err.contains("read only"), "{err}");
    let (ok, _, err) = berth(stack, &["claims", "--ledger", "dynamodb://x"]);
    assert!(!ok && (err.contains("is not dynamodb://TABLE") || err.contains("table name")), "{err}");
}

#[test]
fn the_permission_check_refuses_what_the_stacks_policy_does_not_allow() {
    let asked = |actions: &[&str]| moto::permissions::denied(&actions.iter().map(|a| a.to_string()).collect());
    assert_eq!(asked(&["ecs:StopTask", "ec2:CreateSnapshot", "dynamodb:PutItem"]), Vec::<String>::new());
    let denied = asked(&["ec2:RunInstances", "ecs:CreateCluster"]);
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(denied[0].contains("no statement allows it"), "{denied:?}");
}

#[test]
fn the_request_check_refuses_what_the_service_models_refuse() {
    // Two requests as moto's recorder keeps them: a RunTask with a launch
    // type ECS does not have and a volume without its role, and a
    // CreateSnapshot without its volume.
    let auth = |service: &str| {
        format!("AWS4-HMAC-SHA256 Credential=x/20261208/us-east-1/{service}/aws4_request, SignedHeaders=h, Signature=s")
    };
    let run_task = json!({ "taskDefinition": "files:1", "launchType": "SPOT",
        "volumeConfigurations": [{ "name": "data", "managedEBSVolume": { "sizeInGiB": 10 } }] });
    let lines = [
        json!({ "headers": { "Authorization": auth("ecs"), "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.RunTask" },
            "method": "POST", "url": "/", "body": run_task.to_string(), "body_encoded": false }),
        json!({ "headers": { "Authorization": auth("ec2") }, "method": "POST", "url": "/",
            "body": "Action=CreateSnapshot&Version=2016-11-15&Description=x", "body_encoded": false }),
    ];
    let recorded: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (ok, said) = moto::permissions::check_requests(&recorded);
    assert!(!ok, "{said}");
    assert!(said.contains("ecs:RunTask: launchType: 'SPOT' is not one of"), "{said}");
    assert!(said.contains("managedEBSVolume.roleArn: required, missing"), "{said}");
    assert!(said.contains("ec2:CreateSnapshot: VolumeId: required, missing"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_ebs_snapshots_keep_their_retention_and_are_copied_to_the_replica_region() {
    let mut stack = Stack::new().await;
    stack.settings.backups = vec![berth_aws::AwsBackup {
        service: "files".into(),
        interval: Duration::from_millis(1200),
        retention: KeepPolicy { last: Some(1), ..Default::default() },
        lock: Some(berth_core::backup::LockPolicy {
            mode: berth_core::LockMode::Governance,
            duration: Duration::from_millis(500),
        }),
        replica_region: Some("us-west-2".into()),
        replica_retention: Some(KeepPolicy { last: Some(2), ..Default::default() }),
    }];
    let handler = stack.handler();
    handler.handle(&json!({ "resync": true })).await;
    stack.make_task_volume(1, None).await;

    let mut taken = Vec::new();
    for _ in 0..4 {
        let report = handler.handle(&json!({ "resync": true })).await;
        let resync = report.resync.unwrap();
        assert!(resync.failed.is_empty(), "{resync:?}");
        taken.extend(resync.backups.snapshots.clone());
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    assert!(taken.len() >= 3, "a scheduled snapshot each interval: {taken:?}");

    let scheduled = |ec2: aws_sdk_ec2::Client| async move {
        let d = ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(aws_sdk_ec2::types::Filter::builder().name("tag:berth:kind").values("scheduled").build())
            .send()
            .await
            .unwrap();
        d.snapshots().to_vec()
    };
    // Retention before each snapshot keeps one, then the new one is added.
    let primary = scheduled(stack.ec2.clone()).await;
    assert_eq!(primary.len(), 2, "{primary:?}");
    let newest = taken.last().unwrap();
    assert!(primary.iter().any(|s| s.snapshot_id() == Some(newest.as_str())));
    let record = berth_aws::snapshot_record(&primary[0]).unwrap();
    assert_eq!(record.consistency, Some(berth_core::Consistency::Crash), "the Lambda cannot quiesce a task");
    assert_eq!(record.lock.map(|l| l.mode), Some(berth_core::LockMode::Governance));

    // The replica region holds copies (tagged with their source), the
    // newest included, and its own retention of two.
    let west = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&stack.config).region(aws_sdk_ec2::config::Region::new("us-west-2")).build(),
    );
    let copies = scheduled(west).await;
    let sources: Vec<String> = copies
        .iter()
        .map(|s| {
            let tags = berth_aws::tags::map(s.tags().iter().map(|t| (t.key(), t.value())));
            tags.get(berth_aws::tags::SOURCE).cloned().expect("a copy names its source")
        })
        .collect();
    assert_eq!(copies.len(), 2, "replica retention keeps two: {sources:?}");
    assert!(sources.contains(newest), "the newest snapshot is replicated: {sources:?} / {newest}");
    assert!(sources.iter().all(|s| taken.contains(s)), "{sources:?} / {taken:?}");
    stack.assert_permitted();
}

/// Container Insights' part, played by the test: one minute's datapoint
/// of a family's summed use and reservation, `ago` before now.
async fn publish_insights(stack: &Stack, ago: i64, cpu: (f64, f64), memory: (f64, f64)) {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let cw = aws_sdk_cloudwatch::Client::new(&stack.config);
    let at = aws_smithy_types::DateTime::from_secs(chrono::Utc::now().timestamp() - ago);
    let mut put = cw.put_metric_data().namespace(berth_aws::insights::NAMESPACE);
    for (name, value) in
        [("CpuUtilized", cpu.0), ("CpuReserved", cpu.1), ("MemoryUtilized", memory.0), ("MemoryReserved", memory.1)]
    {
        put = put.metric_data(
            MetricDatum::builder()
                .metric_name(name)
                .dimensions(Dimension::builder().name("ClusterName").value(CLUSTER).build())
                .dimensions(Dimension::builder().name("TaskDefinitionFamily").value("files").build())
                .timestamp(at)
                .value(value)
                .build(),
        );
    }
    put.send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn container_insights_readings_scale_claims_out_and_in_with_the_count_in_the_ledger() {
    use berth_core::autoscale::ScalingPolicy;
    let mut stack = Stack::new().await;
    stack.settings.autoscaling = vec![berth_aws::AwsAutoscaling {
        service: "files".into(),
        policy: ScalingPolicy {
            min_capacity: 1,
            max_capacity: 3,
            scale_out_cooldown: Duration::from_secs(600),
            scale_in_cooldown: Duration::from_secs(0),
            ..Default::default()
        },
    }];
    let handler = stack.handler();
    let resync = || async { handler.handle(&json!({ "resync": true })).await.resync.unwrap() };
    let started = |claim: &'static str| {
        let ecs = stack.ecs.clone();
        async move {
            let list = ecs.list_tasks().cluster(CLUSTER).started_by(format!("berth/{claim}/1")).send().await.unwrap();
            list.task_arns().len()
        }
    };

    // No reading yet (tasks starting): the count holds at the configured 1.
    let r = resync().await;
    assert!(r.failed.is_empty(), "{r:?}");
    assert!(r.autoscaling[0].contains("no usage readings"), "{r:?}");
    assert_eq!(started("files-0").await, 1);

    // 230 of 256 CPU units busy (90 %, target 70 %): two tasks.
    publish_insights(&stack, 150, (230.0, 256.0), (100.0, 512.0)).await;
    let r = resync().await;
    assert!(r.failed.is_empty(), "{r:?}");
    assert!(r.autoscaling[0].contains("scale out 1 → 2"), "{r:?}");
    let record = stack.ledger().service("files").await.unwrap().unwrap();
    assert_eq!(record.autoscaled_count, Some(2));
    assert_eq!(started("files-1").await, 1, "the new claim's task is started in the same resync");

    // A new Lambda instance reads the count and the cooldown from the
    // ledger: still busy, but within the scale-out cooldown it holds.
    let fresh = stack.handler();
    let r = fresh.handle(&json!({ "resync": true })).await.resync.unwrap();
    assert!(r.autoscaling[0].contains("scale-out cooldown"), "{r:?}");
    assert_eq!(stack.ledger().claims().await.unwrap().len(), 2);

    // Quiet (a newer minute): back to one, the highest claim parked.
    publish_insights(&stack, 10, (10.0, 512.0), (20.0, 1024.0)).await;
    let r = fresh.handle(&json!({ "resync": true })).await.resync.unwrap();
    assert!(r.autoscaling[0].contains("scale in 2 → 1"), "{r:?}");
    let parked = stack.ledger().claim(&ClaimName::parse("files-1").unwrap()).await.unwrap().unwrap();
    assert_eq!(parked.desired, berth_core::intent::DesiredState::Parked);
    let kept = stack.ledger().claim(&ClaimName::parse("files-0").unwrap()).await.unwrap().unwrap();
    assert_eq!(kept.desired, berth_core::intent::DesiredState::Running);
    let events = stack.ledger().events(0, None, 100).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "autoscale").count(), 2, "{events:?}");
    stack.assert_permitted();
}

impl Stack {
    /// Registers the next revision of the `files` family, as a `cdk deploy`
    /// with a changed task definition does; returns its number. moto needs
    /// the container's own memory (task-level alone gives HTTP 500).
    async fn register_revision(&self, image: &str) -> u32 {
        moto::register_files_revision(&self.ecs, image).await
    }
}

fn revision_of(task: &aws_sdk_ecs::types::Task) -> u32 {
    task.task_definition_arn().unwrap().rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revision_the_stack_registers_is_run_under_ecs_number_and_deployed_when_it_changes() {
    let mut stack = Stack::new().await;
    // The stack's task definition is at revision 2 when berth first runs.
    let first = stack.register_revision("berth:v2").await;
    assert_eq!(first, 2);
    stack.settings.services[0].definition.revision = first;
    let handler = stack.handler();
    handler.handle(&json!({ "resync": true })).await;
    let tasks = stack.tasks_of(1).await;
    assert_eq!(tasks.iter().map(revision_of).collect::<Vec<_>>(), vec![2], "ECS's number, not a count of berth's");
    stack.make_task_volume(1, None).await;
    handler.handle(&json!({ "resync": true })).await;
    let record = stack.ledger().service("files").await.unwrap().unwrap();
    assert_eq!((record.active, record.deployment.is_none()), (2, true), "the first record deploys nothing");
    assert!(stack.claim().await.healthy_since.is_some(), "running, no check defined: ready");

    // cdk deploy registers revision 3 and hands the Lambda its ARN.
    let next = stack.register_revision("berth:v3").await;
    stack.settings.task_definition_arn =
        Some(format!("arn:aws:ecs:us-east-1:123456789012:task-definition/files:{next}"));
    let settings = AwsSettings::parse(&serde_json::to_string(&stack.settings).unwrap()).unwrap();
    assert_eq!(settings.services[0].definition.revision, 3);
    let deployer = Handler::new(settings, &stack.config, TABLE);
    let report = deployer.handle(&json!({ "resync": true })).await;
    assert!(report.resync.as_ref().unwrap().failed.is_empty(), "{report:?}");
    let record = stack.ledger().service("files").await.unwrap().unwrap();
    let d = record.deployment.clone().expect("a deployment");
    assert_eq!((d.from, d.to, record.active), (2, 3, 3));
    let claim = stack.claim().await;
    assert_eq!(claim.revision, 3, "the claim is moved");
    assert!(claim.stop_order.is_some() || claim.handoff.is_some(), "its revision-2 task is being replaced: {claim:?}");

    // ECS reports the stop berth asked for; the replacement runs revision 3.
    let batch = stack.stop_as_ecs(&tasks[0], "ServiceSchedulerInitiated", "d-1").await;
    let report = deployer.handle(&batch).await;
    assert!(report.batch_item_failures.is_empty(), "{report:?}");
    let snap = handoff_snapshot(&stack).await;
    let replaced = stack.tasks_of(2).await;
    assert_eq!(replaced.iter().map(revision_of).collect::<Vec<_>>(), vec![3], "{report:?}");
    stack.make_task_volume(2, Some(&snap)).await;
    for _ in 0..2 {
        deployer.handle(&json!({ "resync": true })).await;
    }
    let record = stack.ledger().service("files").await.unwrap().unwrap();
    assert_eq!(record.deployment.map(|d| d.state), Some(berth_core::deploy::RolloutState::Completed));
    // The same settings again change nothing (no second deployment).
    deployer.handle(&json!({ "resync": true })).await;
    let events = stack.ledger().events(0, None, 200).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "deploy-started").count(), 1, "{events:?}");
    stack.assert_permitted();
}
