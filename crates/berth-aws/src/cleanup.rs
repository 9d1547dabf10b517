//! What a berth stack leaves behind in EC2, and removing berth's own part
//! of it: the blog's clean-up section as one command (`berth-aws cleanup`).
//!
//! Volumes and snapshots berth made carry `berth:cluster`; security groups
//! the stack made carry CloudFormation's `aws:cloudformation:stack-name`.
//! Only berth's own orphans are deleted: volumes no task has attached
//! (`available`) and snapshots, never a pinned one unless asked. Security
//! groups belong to the stack: they are listed, and `cdk destroy` removes
//! them (one left over is usually held by a network interface still being
//! deleted).

use aws_sdk_ec2::types::{Filter, VolumeState};
use berth_core::{PortError, SnapshotId, VolumeId, Volumes};
use serde::Serialize;

use crate::ebs::EbsVolumes;
use crate::sdk::port_error;
use crate::tags;

/// One resource left behind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Leftover {
    /// `volume`, `snapshot` or `security-group`.
    pub kind: &'static str,
    pub id: String,
    pub claim: Option<String>,
    /// `available`, `in-use`, `completed`, `pinned`, … as EC2 reports it.
    pub state: String,
    pub size_gib: Option<i32>,
    /// Whether `--delete` removes it.
    pub deletable: bool,
}

/// What to look for.
#[derive(Clone, Debug)]
pub struct Scope {
    pub cluster: String,
    pub stack: Option<String>,
    pub include_pinned: bool,
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Every leftover of the stack, berth's volumes first.
pub async fn survey(ec2: &aws_sdk_ec2::Client, scope: &Scope) -> Result<Vec<Leftover>, PortError> {
    let mut out = Vec::new();
    let by_cluster = filter(&format!("tag:{}", tags::CLUSTER), &scope.cluster);
    let mut pages = ec2.describe_volumes().filters(by_cluster.clone()).into_paginator().send();
    while let Some(page) = pages.next().await {
        for v in page.map_err(|e| port_error("DescribeVolumes", e))?.volumes() {
            let state = v.state().map_or("unknown", |s| s.as_str()).to_owned();
            out.push(Leftover {
                kind: "volume",
                id: v.volume_id().unwrap_or_default().to_owned(),
                claim: tag(v.tags().iter().map(|t| (t.key(), t.value())), tags::CLAIM),
                deletable: v.state() == Some(&VolumeState::Available),
                state,
                size_gib: v.size(),
            });
        }
    }
    let mut pages = ec2.describe_snapshots().owner_ids("self").filters(by_cluster).into_paginator().send();
    while let Some(page) = pages.next().await {
        for s in page.map_err(|e| port_error("DescribeSnapshots", e))?.snapshots() {
            let pinned = tag(s.tags().iter().map(|t| (t.key(), t.value())), tags::PIN).as_deref() == Some("true");
            let state = s.state().map_or("unknown", |x| x.as_str());
            out.push(Leftover {
                kind: "snapshot",
                id: s.snapshot_id().unwrap_or_default().to_owned(),
                claim: tag(s.tags().iter().map(|t| (t.key(), t.value())), tags::CLAIM),
                state: if pinned { format!("{state}, pinned") } else { state.to_owned() },
                size_gib: s.volume_size(),
                deletable: !pinned || scope.include_pinned,
            });
        }
    }
    if let Some(stack) = &scope.stack {
        let answer = ec2
            .describe_security_groups()
            .filters(filter("tag:aws:cloudformation:stack-name", stack))
            .send()
            .await
            .map_err(|e| port_error("DescribeSecurityGroups", e))?;
        for g in answer.security_groups() {
            out.push(Leftover {
                kind: "security-group",
                id: g.group_id().unwrap_or_default().to_owned(),
                claim: None,
                state: g.group_name().unwrap_or_default().to_owned(),
                size_gib: None,
                deletable: false,
            });
        }
    }
    Ok(out)
}

fn tag<'a>(pairs: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>, key: &str) -> Option<String> {
    tags::map(pairs).remove(key)
}

/// Deletes the deletable leftovers; returns the ids deleted. One already
/// gone counts as deleted.
pub async fn delete(ec2: &aws_sdk_ec2::Client, leftovers: &[Leftover]) -> Result<Vec<String>, PortError> {
    // The store's own deletes: the same calls, and "already gone" is done.
    // The store's cluster scope plays no part in deleting by id.
    let store = EbsVolumes::new(ec2.clone(), "");
    let mut deleted = Vec::new();
    for l in leftovers.iter().filter(|l| l.deletable) {
        match l.kind {
            "volume" => store.delete(&VolumeId(l.id.clone())).await?,
            "snapshot" => store.delete_snapshots(&[SnapshotId(l.id.clone())]).await?,
            _ => continue,
        }
        deleted.push(l.id.clone());
    }
    Ok(deleted)
}
