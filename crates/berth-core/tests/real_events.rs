//! The held-out realism check: berth's event parser against "ECS Task State
//! Change" events exactly as AWS documentation and public projects published
//! them (`tests/fixtures/ecs-events/`, sources in its README.md).
//!
//! Every fixture is parsed, round-tripped and turned into a `TaskInfo` by
//! `ecs_task::task_info`; each has a row of values read by hand from the
//! file, so a field the parser loses or misreads fails here. A fixture added
//! to the folder is parsed automatically and must also get a row.

use std::collections::BTreeSet;
use std::path::PathBuf;

use berth_core::ecs_task::{ebs_volume_id, task_info};
use berth_core::event::EBS_ATTACHMENT;
use berth_core::{Health, StopCode, TaskStateChange, TaskStatus};
use chrono::{DateTime, TimeZone, Utc};

const PORT: u16 = 8080;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ecs-events")
}

fn load(name: &str) -> TaskStateChange {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    TaskStateChange::parse(&text).unwrap_or_else(|e| panic!("{name} does not parse: {e}"))
}

/// A fixed "observed" time, far from every fixture's own timestamps, so a
/// `created_at` taken from the event is told apart from the fallback.
fn observed() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 1, 1, 0, 0, 0).unwrap()
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

/// What one fixture says, read from the file by hand.
struct Expect {
    file: &'static str,
    task_arn: &'static str,
    last: TaskStatus,
    desired: TaskStatus,
    stop_code: Option<StopCode>,
    stopped_reason: Option<&'static str>,
    version: Option<u64>,
    /// `privateIPv4Address` of the network attachment, with `PORT`.
    endpoint: Option<&'static str>,
    started_by: Option<&'static str>,
    group: Option<&'static str>,
    created_at: Option<&'static str>,
    stopped_at: Option<&'static str>,
    /// The task definition revision (after the last `:` of its ARN).
    revision: Option<u32>,
    attachment_types: &'static [&'static str],
    containers: usize,
}

fn expectations() -> Vec<Expect> {
    vec![
        Expect {
            file: "aws-docs-fargate-running.json",
            task_arn: "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad",
            last: TaskStatus::Running,
            desired: TaskStatus::Running,
            stop_code: None,
            stopped_reason: None,
            version: Some(4),
            endpoint: Some("10.0.0.139:8080"),
            started_by: None,
            group: Some("family:sample-fargate"),
            created_at: Some("2020-01-23T17:57:34.402Z"),
            stopped_at: None,
            revision: Some(1),
            attachment_types: &["eni"],
            containers: 1,
        },
        Expect {
            file: "aws-docs-spot-interruption.json",
            task_arn: "arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6fEXAMPLE",
            last: TaskStatus::Running,
            desired: TaskStatus::Stopped,
            stop_code: Some(StopCode::SpotInterruption),
            stopped_reason: Some("Your Spot Task was interrupted."),
            version: None,
            endpoint: None,
            started_by: None,
            group: None,
            created_at: Some("2016-12-06T16:41:05.702Z"),
            stopped_at: None,
            revision: None,
            attachment_types: &[],
            containers: 0,
        },
        Expect {
            file: "aws-docs-ec2-running-2016.json",
            task_arn: "arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6f1cebef",
            last: TaskStatus::Running,
            desired: TaskStatus::Running,
            stop_code: None,
            stopped_reason: None,
            version: Some(4),
            endpoint: None,
            started_by: Some("ecs-svc/9223370556150183303"),
            group: Some("task-group"),
            created_at: Some("2016-12-06T16:41:05.702Z"),
            stopped_at: None,
            revision: Some(2),
            attachment_types: &[],
            containers: 1,
        },
        Expect {
            file: "elb-health-check-stopped.json",
            task_arn: "arn:aws:ecs:ap-northeast-2:653734769926:task/sin-web_cluster-dev/7e12d648155541fbb8a922c39b586f82",
            last: TaskStatus::Stopped,
            desired: TaskStatus::Stopped,
            stop_code: Some(StopCode::ServiceSchedulerInitiated),
            stopped_reason: Some(
                "Task failed ELB health checks in (target-group \
                 arn:aws:elasticloadbalancing:ap-northeast-2:653734769926:targetgroup/sin-web-target-dev/ccb1c7ee670051a0)",
            ),
            version: Some(6),
            endpoint: Some("10.102.0.134:8080"),
            started_by: Some("ecs-svc/5211643699352071000"),
            group: Some("service:sin-web_service-dev"),
            created_at: Some("2022-08-08T05:04:15.061Z"),
            stopped_at: Some("2022-08-08T05:07:23.184Z"),
            revision: Some(26),
            attachment_types: &["eni"],
            containers: 1,
        },
        Expect {
            file: "arkime-fargate-running.json",
            task_arn: "arn:aws:ecs:us-east-2:XXXXXXXXXXXX:task/DemoTrafficGen01-ClusterEB0386A7-sCRgDrfn5BP9/c50e321c974248dbaf4ae2cfa1662986",
            last: TaskStatus::Running,
            desired: TaskStatus::Running,
            stop_code: None,
            stopped_reason: None,
            version: Some(3),
            endpoint: Some("10.0.215.105:8080"),
            started_by: Some("ecs-svc/8646900195280463695"),
            group: Some("service:DemoTrafficGen01-ServiceD69D759B-EfyMIBhdCKVk"),
            created_at: Some("2023-05-02T14:19:14.98Z"),
            stopped_at: None,
            revision: Some(10),
            attachment_types: &["eni"],
            containers: 1,
        },
        Expect {
            file: "arkime-fargate-scaling-stopped.json",
            task_arn: "arn:aws:ecs:us-east-2:XXXXXXXXXXXX:task/DemoTrafficGen01-ClusterEB0386A7-sCRgDrfn5BP9/c50e321c974248dbaf4ae2cfa1662986",
            last: TaskStatus::Stopped,
            desired: TaskStatus::Stopped,
            stop_code: Some(StopCode::ServiceSchedulerInitiated),
            stopped_reason: Some("Scaling activity initiated by (deployment ecs-svc/8646900195280463695)"),
            version: Some(6),
            endpoint: Some("10.0.215.105:8080"),
            started_by: Some("ecs-svc/8646900195280463695"),
            group: Some("service:DemoTrafficGen01-ServiceD69D759B-EfyMIBhdCKVk"),
            created_at: Some("2023-05-02T14:19:14.98Z"),
            stopped_at: Some("2023-05-02T15:29:11.177Z"),
            revision: Some(10),
            attachment_types: &["eni"],
            containers: 1,
        },
        Expect {
            file: "arkime-ec2-running.json",
            task_arn: "arn:aws:ecs:us-east-2:XXXXXXXXXXXX:task/DemoTrafficGen01-EcsCluster97242B84-u8PnqOAmk1tO/5f9900fd646345e9ab339c0e66e305a0",
            last: TaskStatus::Running,
            desired: TaskStatus::Running,
            stop_code: None,
            stopped_reason: None,
            version: Some(2),
            endpoint: None,
            started_by: Some("ecs-svc/9909299324976484585"),
            group: Some("service:DemoTrafficGen01-EcsService81FC6EF6-1MxpQy4jk934"),
            created_at: Some("2023-05-03T15:18:01.844Z"),
            stopped_at: None,
            revision: Some(1),
            attachment_types: &[],
            containers: 1,
        },
        Expect {
            file: "defra-sdi-attachment-running.json",
            task_arn: "arn:aws:ecs:eu-west-2:332499610595:task/dev-ecs-public/f8bec92bed774ee4b27711702a862de5",
            last: TaskStatus::Running,
            desired: TaskStatus::Running,
            stop_code: None,
            stopped_reason: None,
            version: Some(5),
            endpoint: Some("10.249.47.254:8080"),
            started_by: Some("ecs-svc/7617799119934277582"),
            group: Some("service:cdp-demo-test-15"),
            created_at: Some("2023-11-24T11:08:45.576Z"),
            stopped_at: None,
            revision: Some(1),
            attachment_types: &["sdi", "eni"],
            containers: 4,
        },
        Expect {
            file: "user-initiated-stopped.json",
            task_arn: "arn:aws:ecs:eu-west-1:<ACCOUNT_ID_REDACTED>:task/default/8993cbec849642b8a9e00da5a620c3fe",
            last: TaskStatus::Stopped,
            desired: TaskStatus::Stopped,
            stop_code: Some(StopCode::UserInitiated),
            stopped_reason: Some("Task stopped by user"),
            version: Some(6),
            endpoint: Some("172.31.20.20:8080"),
            started_by: Some("ecs-svc/0068978569384120015"),
            group: Some("service:nginx-service"),
            created_at: Some("2020-10-08T14:25:20.227Z"),
            stopped_at: Some("2020-10-08T14:27:07.323Z"),
            revision: Some(1),
            attachment_types: &["eni"],
            containers: 1,
        },
        Expect {
            file: "aws-cli-runtask-ebs-provisioning.json",
            task_arn: "arn:aws:ecs:us-west-2:123456789012:task/default/7f1fbd3629434cc4b82d72d2f09b67c9",
            last: TaskStatus::Provisioning,
            desired: TaskStatus::Running,
            stop_code: None,
            stopped_reason: None,
            version: Some(1),
            endpoint: None,
            started_by: None,
            group: Some("family:mytaskdef"),
            created_at: Some("2025-01-23T16:29:46.650Z"),
            stopped_at: None,
            revision: Some(4),
            attachment_types: &["ElasticNetworkInterface", EBS_ATTACHMENT],
            containers: 1,
        },
    ]
}

#[test]
fn every_fixture_reads_as_published() {
    for x in expectations() {
        let f = x.file;
        let e = load(f);
        let d = &e.detail;
        assert_eq!(d.task_arn, x.task_arn, "{f}: taskArn");
        assert_eq!(d.last_status.as_ref(), Some(&x.last), "{f}: lastStatus");
        assert_eq!(d.desired_status.as_ref(), Some(&x.desired), "{f}: desiredStatus");
        assert_eq!(d.stop_code, x.stop_code, "{f}: stopCode");
        assert_eq!(d.stopped_reason.as_deref(), x.stopped_reason, "{f}: stoppedReason");
        assert_eq!(d.version, x.version, "{f}: version");
        assert_eq!(d.started_by.as_deref(), x.started_by, "{f}: startedBy");
        assert_eq!(d.group.as_deref(), x.group, "{f}: group");
        assert_eq!(d.created_at, x.created_at.map(at), "{f}: createdAt");
        assert_eq!(d.stopped_at, x.stopped_at.map(at), "{f}: stoppedAt");
        let kinds: Vec<_> = d.attachments.iter().map(|a| a.kind.as_deref().unwrap_or("?")).collect();
        assert_eq!(kinds, x.attachment_types, "{f}: attachment types");
        assert_eq!(d.containers.len(), x.containers, "{f}: containers");
        // None of the published events carries task health or a capacity
        // provider (see the fixtures' README).
        assert_eq!(d.health_status, None, "{f}: healthStatus");
        assert_eq!(d.capacity_provider_name, None, "{f}: capacityProviderName");

        let t = task_info(d, PORT, observed());
        assert_eq!(t.arn.0, x.task_arn, "{f}: TaskInfo.arn");
        assert_eq!(t.last_status, x.last, "{f}: TaskInfo.last_status");
        assert_eq!(t.desired_status, x.desired, "{f}: TaskInfo.desired_status");
        assert_eq!(t.stop_code, x.stop_code, "{f}: TaskInfo.stop_code");
        assert_eq!(t.version, x.version.unwrap_or(0), "{f}: TaskInfo.version");
        assert_eq!(t.endpoint.as_deref(), x.endpoint, "{f}: TaskInfo.endpoint");
        assert_eq!(t.health, Health::Unknown, "{f}: TaskInfo.health");
        assert!(!t.has_health_check, "{f}: no healthStatus, so no health check as far as the event says");
        assert_eq!(t.created_at, x.created_at.map(at).unwrap_or(observed()), "{f}: TaskInfo.created_at");
        assert_eq!(t.stopped_at, x.stopped_at.map(at), "{f}: TaskInfo.stopped_at");
        assert_eq!(t.revision(), x.revision, "{f}: TaskInfo.revision()");
        assert_eq!(t.is_stopped(), x.last == TaskStatus::Stopped, "{f}: is_stopped");
        // None of these tasks was started by berth.
        assert_eq!((t.claim, t.service, t.generation), (None, None, None), "{f}: not berth's");
    }
}

#[test]
fn every_file_in_the_folder_parses_and_has_a_row() {
    let listed: BTreeSet<_> = expectations().iter().map(|x| x.file).collect();
    let readme = std::fs::read_to_string(fixtures().join("README.md")).unwrap();
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let e = load(&name);
        let d = &e.detail;
        assert!(d.task_arn.starts_with("arn:aws:ecs:") && d.task_arn.contains(":task/"), "{name}: {}", d.task_arn);
        if let Some(kind) = &e.detail_type {
            assert_eq!(kind, "ECS Task State Change", "{name}");
        }
        if let Some(source) = &e.source {
            assert_eq!(source, "aws.ecs", "{name}");
        }
        // Real events use codes and states berth knows by name; an `Other`
        // here is a value AWS sends that berth should learn.
        for status in [&d.last_status, &d.desired_status].into_iter().flatten() {
            assert!(!matches!(status, TaskStatus::Other(_)), "{name}: unnamed task status {status:?}");
        }
        assert!(!matches!(d.stop_code, Some(StopCode::Other(_))), "{name}: unnamed stop code {:?}", d.stop_code);
        // Serialising and parsing again loses nothing berth reads.
        let again = TaskStateChange::parse(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), serde_json::to_value(&e).unwrap(), "{name}: round trip");
        assert!(listed.contains(name.as_str()), "{name} has no row in expectations()");
        assert!(readme.contains(&format!("`{name}`")), "{name} is not listed in the fixtures' README.md");
        seen.insert(name);
    }
    let seen: BTreeSet<_> = seen.iter().map(String::as_str).collect();
    assert_eq!(seen, listed, "every row has its file");
    assert!(seen.len() >= 6, "at least six real events");
}

#[test]
fn the_documented_spot_interruption_names_the_stop_code_but_no_capacity_provider() {
    let e = load("aws-docs-spot-interruption.json");
    let d = &e.detail;
    // The notice comes while the task still runs: two minutes before it stops.
    assert_eq!(d.last_status, Some(TaskStatus::Running));
    assert_eq!(d.desired_status, Some(TaskStatus::Stopped));
    assert_eq!(d.stop_code, Some(StopCode::SpotInterruption));
    assert!(!d.is_stopped());
    // No `capacityProviderName` in the event, so `on_spot()` cannot tell:
    // the stop code is what marks a Spot interruption.
    assert_eq!(d.capacity_provider_name, None);
    assert!(!d.on_spot());
    assert_eq!(e.resources, ["arn:aws:ecs:us-east-1:111122223333:task/b99d40b3-5176-4f71-9a52-9dbd6f1cebef"]);
    assert_eq!(e.time, None, "the published snippet has no time");
}

#[test]
fn health_check_stops_carry_their_reason_and_exit_code() {
    let e = load("elb-health-check-stopped.json");
    let d = &e.detail;
    assert!(d.stopped_reason.as_deref().unwrap().starts_with("Task failed ELB health checks in (target-group arn:"));
    assert_eq!(d.containers[0].name.as_deref(), Some("sin-web_container-dev"));
    assert_eq!(d.containers[0].last_status.as_deref(), Some("STOPPED"));
    assert_eq!(d.containers[0].exit_code, Some(143));
    assert_eq!(d.stopping_at, Some(at("2022-08-08T05:06:48.601Z")));
    assert_eq!(d.execution_stopped_at, Some(at("2022-08-08T05:07:00.61Z")));
    assert_eq!(d.availability_zone.as_deref(), Some("ap-northeast-2a"));
    assert_eq!(e.time, Some(at("2022-08-08T05:07:23Z")));
    assert_eq!(e.region.as_deref(), Some("ap-northeast-2"));
    // A stopped task's network interface is DELETED yet still names its IP,
    // and task_info still turns it into an endpoint.
    assert_eq!(d.attachments[0].status.as_deref(), Some("DELETED"));
    assert_eq!(task_info(d, PORT, observed()).endpoint.as_deref(), Some("10.102.0.134:8080"));
}

#[test]
fn two_versions_of_one_task_order_by_detail_version() {
    let running = load("arkime-fargate-running.json");
    let stopped = load("arkime-fargate-scaling-stopped.json");
    assert_eq!(running.detail.task_arn, stopped.detail.task_arn);
    let (old, new) = (task_info(&running.detail, PORT, observed()), task_info(&stopped.detail, PORT, observed()));
    assert!(old.version < new.version, "{} < {}", old.version, new.version);
    assert!(!old.is_stopped() && new.is_stopped());
    assert_eq!(stopped.detail.containers[0].exit_code, Some(137));
    assert_eq!(running.detail.containers[0].exit_code, None);
    // Same task, same start: the later event does not move it.
    assert_eq!(old.created_at, new.created_at);
    assert_eq!(old.started_at, new.started_at);
    assert_eq!(new.started_at, Some(at("2023-05-02T14:19:34.52Z")));
}

#[test]
fn an_unknown_attachment_type_is_kept_and_skipped_for_the_endpoint() {
    let e = load("defra-sdi-attachment-running.json");
    let sdi = &e.detail.attachments[0];
    assert_eq!(sdi.kind.as_deref(), Some("sdi"));
    assert_eq!(sdi.status.as_deref(), Some("ATTACHED"));
    assert_eq!(sdi.id.as_deref(), Some("c46d7066-32b4-4efa-8ca0-81315a4b9ab6"));
    assert!(sdi.details.is_empty());
    let names: Vec<_> = e.detail.containers.iter().filter_map(|c| c.name.as_deref()).collect();
    assert_eq!(
        names,
        ["cdp-demo-test-15_log_router", "cdp-demo-test-15_ssl", "cdp-demo-test-15", "cdp-demo-test-15_cwagent"]
    );
    assert_eq!(task_info(&e.detail, PORT, observed()).endpoint.as_deref(), Some("10.249.47.254:8080"));
}

#[test]
fn tasks_without_a_task_ip_have_no_endpoint() {
    // EC2 bridge networking: an empty attachment list, and none at all in 2016.
    let bridge = load("arkime-ec2-running.json");
    assert!(bridge.detail.attachments.is_empty());
    assert_eq!(task_info(&bridge.detail, PORT, observed()).endpoint, None);
    let old = load("aws-docs-ec2-running-2016.json");
    assert!(old.detail.attachments.is_empty());
    assert_eq!(old.detail.containers[0].last_status.as_deref(), Some("STOPPED"));
    assert_eq!(old.detail.containers[0].exit_code, Some(0));
    assert_eq!(old.detail.started_at, Some(at("2016-12-06T16:41:06.8Z")));
    assert_eq!(task_info(&old.detail, PORT, observed()).endpoint, None);
}

#[test]
fn a_user_stop_is_user_initiated() {
    let e = load("user-initiated-stopped.json");
    assert_eq!(e.detail.stop_code, Some(StopCode::UserInitiated));
    assert_eq!(e.detail.execution_stopped_at, Some(at("2020-10-08T14:26:44Z")));
    assert_eq!(e.account.as_deref(), Some("<ACCOUNT_ID_REDACTED>"));
    assert_eq!(e.id.as_deref(), Some("ba5eb4e7-60be-82a2-621a-4a1b11112b5b"));
}

#[test]
fn the_documented_ebs_attachment_names_no_volume_id() {
    let e = load("aws-cli-runtask-ebs-provisioning.json");
    let d = &e.detail;
    let ebs = d.attachments.iter().find(|a| a.kind.as_deref() == Some(EBS_ATTACHMENT)).unwrap();
    assert_eq!(ebs.status.as_deref(), Some("CREATED"));
    let details: Vec<_> = ebs.details.iter().map(|n| (n.name.as_str(), n.value.as_deref())).collect();
    assert_eq!(
        details,
        [
            ("roleArn", Some("arn:aws:iam::123456789012:role/ecsInfrastructureRole")),
            ("volumeName", Some("myEBSVolume")),
            ("deleteOnTermination", Some("true")),
        ]
    );
    assert_eq!(d.ebs_volume_id(), None);
    assert_eq!(ebs_volume_id(d), None);
    // The network interface is not made yet: a subnet, no address.
    assert_eq!(d.attachments[0].status.as_deref(), Some("PRECREATED"));
    assert_eq!(task_info(d, PORT, observed()).endpoint, None);
    // `createdAt` with an offset is read as the same instant in UTC.
    assert_eq!(d.created_at, Some(at("2025-01-23T10:29:46.650000-06:00")));
    assert_eq!(e.detail_type, None, "wrapped in a minimal envelope: only `detail`");
}
