//! `berth-aws cleanup` against moto's EC2: it lists berth's leftovers of
//! one cluster (and the stack's security groups) and nothing else, deletes
//! only berth's own unpinned orphans unless told more, and `--verify` exits
//! non-zero while anything is left.

mod moto;

use std::process::Command;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use serde_json::Value;

fn tagging(kind: ResourceType, pairs: &[(&str, &str)]) -> TagSpecification {
    let mut t = TagSpecification::builder().resource_type(kind);
    for (k, v) in pairs {
        t = t.tags(Tag::builder().key(*k).value(*v).build());
    }
    t.build()
}

async fn volume(ec2: &aws_sdk_ec2::Client, pairs: &[(&str, &str)]) -> String {
    let v = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(4)
        .tag_specifications(tagging(ResourceType::Volume, pairs))
        .send()
        .await
        .unwrap();
    v.volume_id().unwrap().to_owned()
}

async fn snapshot(ec2: &aws_sdk_ec2::Client, of: &str, pairs: &[(&str, &str)]) -> String {
    let s = ec2
        .create_snapshot()
        .volume_id(of)
        .tag_specifications(tagging(ResourceType::Snapshot, pairs))
        .send()
        .await
        .unwrap();
    s.snapshot_id().unwrap().to_owned()
}

fn cleanup(moto: &moto::Moto, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_berth-aws"))
        .args(["cleanup", "--endpoint", &moto.url()])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ids(doc: &Value, key: &str) -> Vec<String> {
    let mut v: Vec<String> = doc[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x["id"].as_str().unwrap().to_owned()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_lists_and_removes_only_berths_own_orphans() {
    let moto = moto::Moto::start();
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let mine = [("berth:cluster", "prod"), ("berth:claim", "files-0")];
    let v1 = volume(&ec2, &mine).await;
    let v2 = volume(&ec2, &[("berth:cluster", "prod"), ("berth:claim", "files-1")]).await;
    let other_cluster = volume(&ec2, &[("berth:cluster", "staging")]).await;
    let untagged = volume(&ec2, &[("team", "data")]).await;
    let s1 = snapshot(&ec2, &v1, &[("berth:cluster", "prod"), ("berth:claim", "files-0")]).await;
    let pinned =
        snapshot(&ec2, &v1, &[("berth:cluster", "prod"), ("berth:claim", "files-0"), ("berth:pin", "true")]).await;
    let foreign = snapshot(&ec2, &untagged, &[("team", "data")]).await;
    let vpc =
        ec2.create_vpc().cidr_block("10.1.0.0/16").send().await.unwrap().vpc().unwrap().vpc_id().unwrap().to_owned();
    let sg = ec2.create_security_group().group_name("alb").description("alb").vpc_id(&vpc).send().await.unwrap();
    let sg = sg.group_id().unwrap().to_owned();
    ec2.create_tags()
        .resources(&sg)
        .tags(Tag::builder().key("aws:cloudformation:stack-name").value("BerthStack").build())
        .send()
        .await
        .unwrap();

    // Listing: berth's of this cluster and the stack's group, nothing else.
    let (code, out, err) = cleanup(&moto, &["--cluster", "prod", "--stack", "BerthStack", "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let mut want = vec![v1.clone(), v2.clone(), s1.clone(), pinned.clone(), sg.clone()];
    want.sort();
    assert_eq!(ids(&doc, "left"), want);
    let pinned_row = doc["left"].as_array().unwrap().iter().find(|l| l["id"] == pinned.as_str()).unwrap();
    assert_eq!(pinned_row["deletable"], false);
    assert!(ids(&doc, "deleted").is_empty(), "listing deletes nothing");

    // --verify fails while anything is left; a table by default.
    let (code, out, _) = cleanup(&moto, &["--cluster", "prod", "--verify"]);
    assert_eq!(code, 1);
    assert!(out.contains(&v1) && out.contains("KIND"), "{out}");

    // --delete removes the unpinned orphans only.
    let (code, out, err) =
        cleanup(&moto, &["--cluster", "prod", "--stack", "BerthStack", "--delete", "--verify", "--json"]);
    assert_eq!(code, 1, "the pinned snapshot and the group are left: {err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let mut gone = vec![v1.clone(), v2.clone(), s1.clone()];
    gone.sort();
    assert_eq!(ids(&doc, "deleted"), gone);
    let mut left = vec![pinned.clone(), sg.clone()];
    left.sort();
    assert_eq!(ids(&doc, "left"), left);
    let vols = ec2.describe_volumes().send().await.unwrap();
    let still: Vec<&str> = vols.volumes().iter().filter_map(|v| v.volume_id()).collect();
    assert!(still.contains(&other_cluster.as_str()) && still.contains(&untagged.as_str()), "{still:?}");
    let snaps = ec2.describe_snapshots().owner_ids("self").send().await.unwrap();
    assert!(snaps.snapshots().iter().any(|s| s.snapshot_id() == Some(foreign.as_str())));

    // Pinned ones go only when asked; then nothing of berth's is left.
    let (code, _, err) = cleanup(&moto, &["--cluster", "prod", "--delete", "--include-pinned", "--verify"]);
    assert_eq!(code, 0, "{err}");

    // A missing argument is one clear usage error.
    let (code, _, err) = cleanup(&moto, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--cluster"), "{err}");
}
