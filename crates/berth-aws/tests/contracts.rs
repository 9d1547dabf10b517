//! The port contracts (`berth_core::contract`) against the AWS adapters on
//! moto: the ECS runtime and the EBS volumes. The same checks run against
//! the in-memory fakes (berth-core) and the local adapters (berth-local).
//!
//! What moto cannot show is left out, and said here:
//! - a stopped task's `stopCode` and `stoppedAt`: moto sets neither, so
//!   `a_stop_ends_in_stopped_with_its_code` does not run on it (ECS sets
//!   `UserInitiated` for every StopTask; the Lambda's events carry the code);
//! - StopTask of a task ECS never knew: ECS answers
//!   InvalidParameterException, which the runtime takes as stopped; moto
//!   answers a server error, so `stopping_again_or_an_unknown_task_succeeds`
//!   does not run on it;
//! - a volume's blocks: moto keeps no data, so the volume filler models
//!   EBS's data plane with a tag (a snapshot holds its volume's marker, a
//!   volume made from a snapshot holds the snapshot's).
//!
//! Every call the adapters make here is also checked against the stack's
//! IAM policy (`moto::permissions`).

mod moto;

use std::time::Duration;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use berth_aws::{tags, EbsVolumes, EcsRuntime};
use berth_core::contract::{runtime, volumes};
use berth_core::ports::{VolumeInfo, VolumeSource};
use berth_core::{ClaimName, Generation, LaunchRequest, LaunchVolume};

const CLUSTER: &str = "berth-contract";
/// Where the volume filler keeps the marker EBS would keep in blocks.
const MARKER: &str = "contract:marker";

#[tokio::test(flavor = "multi_thread")]
async fn the_ecs_runtime_keeps_the_runtime_contract_on_moto() {
    let moto = moto::Moto::start();
    // A task stays RUNNING until it is stopped, as on ECS (moto's default
    // walks it to STOPPED, one state per DescribeTasks).
    moto.hold_ecs_tasks();
    let config = moto.sdk_config();
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let ecs = aws_sdk_ecs::Client::new(&config);
    let (_vpc, subnet, sg) = moto::network(&ec2).await;
    ecs.create_cluster().cluster_name(CLUSTER).send().await.unwrap();
    assert_eq!(moto::register_files_revision(&ecs, "berth:contract").await, 1);
    let controller = aws_sdk_ecs::Client::new(&moto.controller_config());
    let runtime = EcsRuntime::new(controller, moto::files_settings(CLUSTER, subnet, sg));
    let launches = runtime::Launches {
        request: |claim: &ClaimName, generation: Generation| LaunchRequest {
            service: "files".into(),
            claim: claim.clone(),
            generation,
            volume: LaunchVolume::Create(VolumeSource::Empty),
            definition: moto::files_definition(),
            client_token: LaunchRequest::token_for(claim, generation),
            canary: false,
        },
        pause: || tokio::time::sleep(Duration::from_millis(5)),
    };
    runtime::a_launch_runs_the_requests_task(&runtime, &launches).await;
    runtime::one_client_token_starts_one_task(&runtime, &launches).await;
    moto::permissions::assert_allowed(&moto, "ecs:RunTask");
}

/// The volume's tags as RunTask's `tagSpecifications` give them.
fn task_volume_tags(claim: &ClaimName, generation: Generation, marker: Option<String>) -> TagSpecification {
    let mut tagging = TagSpecification::builder().resource_type(ResourceType::Volume);
    let mut pairs = vec![
        (tags::CLUSTER, CLUSTER.to_owned()),
        (tags::CLAIM, claim.to_string()),
        (tags::GENERATION, generation.to_string()),
        ("AmazonECSCreated", "true".to_owned()),
        ("AmazonECSManaged", "true".to_owned()),
    ];
    pairs.extend(marker.map(|m| (MARKER, m)));
    for (k, v) in pairs {
        tagging = tagging.tags(Tag::builder().key(k).value(v).build());
    }
    tagging.build()
}

fn marker_of(tags: &[Tag]) -> Option<String> {
    tags.iter().find(|t| t.key() == Some(MARKER)).and_then(|t| t.value()).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn ebs_volumes_keep_the_volumes_contract_on_moto() {
    let moto = moto::Moto::start();
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let store = EbsVolumes::new(aws_sdk_ec2::Client::new(&moto.controller_config()), CLUSTER);
    let fill = volumes::Fill {
        // ECS's part of RunTask: the task's volume, empty or from a snapshot.
        make: |claim: ClaimName, generation: Generation, source: VolumeSource, marker: Option<String>| {
            let ec2 = ec2.clone();
            async move {
                let snapshot = match source {
                    VolumeSource::Snapshot(id) => Some(id.0),
                    _ => None,
                };
                let made = ec2
                    .create_volume()
                    .availability_zone("us-east-1a")
                    .size(10)
                    .volume_type(aws_sdk_ec2::types::VolumeType::Gp3)
                    .set_snapshot_id(snapshot)
                    .tag_specifications(task_volume_tags(&claim, generation, marker))
                    .send()
                    .await
                    .unwrap();
                let id = made.volume_id().unwrap();
                let d = ec2.describe_volumes().volume_ids(id).send().await.unwrap();
                berth_aws::volume_info(&d.volumes()[0]).expect("a volume tagged for berth reads as one")
            }
        },
        // A volume's blocks: its own marker, or its snapshot's volume's.
        read: |volume: VolumeInfo| {
            let ec2 = ec2.clone();
            async move {
                let d = ec2.describe_volumes().volume_ids(&volume.id.0).send().await.unwrap();
                let v = &d.volumes()[0];
                if let Some(m) = marker_of(v.tags()) {
                    return Some(m);
                }
                let snapshot = v.snapshot_id().filter(|s| !s.is_empty())?;
                let s = ec2.describe_snapshots().snapshot_ids(snapshot).send().await.unwrap();
                let source = s.snapshots()[0].volume_id()?.to_owned();
                let filter = Filter::builder().name("volume-id").values(source).build();
                let d = ec2.describe_volumes().filters(filter).send().await.unwrap();
                d.volumes().first().and_then(|v| marker_of(v.tags()))
            }
        },
    };
    volumes::run_all(&store, &fill).await;
    moto::permissions::assert_allowed(&moto, "ec2:CreateSnapshot");
}
