//! The `Volumes` port on EBS. RunTask makes each task's volume (from a
//! snapshot, with berth's tags), so this store is "made at launch": it
//! never creates a volume itself, it finds them by tag (DescribeVolumes),
//! snapshots a stopped task's volume, and deletes volumes and snapshots.
//!
//! CreateSnapshot has no client token: before making a snapshot for a
//! (claim, generation, kind), the store looks for one by tag, so a retried
//! handoff step makes none twice. A snapshot in EC2's `pending` state is
//! reported as pending; the reconciler waits for it (see
//! `berth_core::reconcile`) and never blocks on it here. A snapshot in the
//! `error` state is no snapshot: it is deleted and taken again.

use aws_sdk_ec2::types::{Filter, ResourceType, Snapshot, SnapshotState, Tag, TagSpecification, Volume};
use berth_core::{
    ClaimName, Generation, PortError, SnapshotId, SnapshotKind, SnapshotRecord, SnapshotRequest, VolumeId, VolumeInfo,
    VolumeSource, Volumes,
};
use chrono::Utc;

use crate::sdk::{code, port_error, time};
use crate::tags;

/// berth's EBS volumes and snapshots of one stack.
pub struct EbsVolumes {
    client: aws_sdk_ec2::Client,
    cluster: String,
}

fn filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

impl EbsVolumes {
    pub fn new(client: aws_sdk_ec2::Client, cluster: impl Into<String>) -> Self {
        Self { client, cluster: cluster.into() }
    }

    fn scope(&self) -> Filter {
        filter(&format!("tag:{}", tags::CLUSTER), &self.cluster)
    }

    async fn describe_snapshots(&self, extra: Vec<Filter>) -> Result<Vec<Snapshot>, PortError> {
        let mut pages = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some([vec![self.scope()], extra].concat()))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            out.extend(page.map_err(|e| port_error("DescribeSnapshots", e))?.snapshots().iter().cloned());
        }
        Ok(out)
    }

    /// The store's snapshots with the snapshot each was copied from, if it
    /// is a replica's copy.
    pub async fn copies(&self) -> Result<Vec<(SnapshotRecord, Option<SnapshotId>)>, PortError> {
        Ok(self
            .describe_snapshots(Vec::new())
            .await?
            .iter()
            .filter_map(|s| {
                let tags = tags::map(s.tags().iter().map(|t| (t.key(), t.value())));
                Some((snapshot_record(s)?, tags.get(tags::SOURCE).map(|v| SnapshotId(v.clone()))))
            })
            .collect())
    }

    /// The EC2 client this store uses.
    pub fn client(&self) -> &aws_sdk_ec2::Client {
        &self.client
    }

    /// Copies a snapshot into the region `to` is a client of (a replica for
    /// disaster recovery), with the same tags; returns the copy's id.
    pub async fn copy_to(
        &self,
        to: &aws_sdk_ec2::Client,
        source_region: &str,
        snapshot: &SnapshotId,
    ) -> Result<SnapshotId, PortError> {
        let original = self.describe_snapshots(vec![filter("snapshot-id", &snapshot.0)]).await?;
        let original = original.first().ok_or_else(|| PortError::permanent(format!("no snapshot {snapshot}")))?;
        let mut tagging = TagSpecification::builder().resource_type(ResourceType::Snapshot);
        for t in original.tags().iter().filter(|t| t.key() != Some(tags::SOURCE)) {
            tagging = tagging.tags(t.clone());
        }
        // What the replica pass compares: a copy's own start time is the
        // copy's, not its original's.
        tagging = tagging.tags(Tag::builder().key(tags::SOURCE).value(&snapshot.0).build());
        let answer = to
            .copy_snapshot()
            .source_region(source_region)
            .source_snapshot_id(&snapshot.0)
            .description(format!("berth replica of {snapshot} from {source_region}"))
            .tag_specifications(tagging.build())
            .send()
            .await
            .map_err(|e| port_error("CopySnapshot", e))?;
        let id = answer.snapshot_id().ok_or_else(|| PortError::retryable("CopySnapshot answered with no id"))?;
        Ok(SnapshotId(id.to_owned()))
    }
}

/// Core's view of an EBS snapshot, or `None` for one in the error state.
pub fn snapshot_record(s: &Snapshot) -> Option<SnapshotRecord> {
    if s.state() == Some(&SnapshotState::Error) {
        return None;
    }
    let tags = tags::map(s.tags().iter().map(|t| (t.key(), t.value())));
    Some(SnapshotRecord {
        id: SnapshotId(s.snapshot_id()?.to_owned()),
        time: s.start_time().and_then(time).unwrap_or_else(Utc::now),
        claim: tags.get(tags::CLAIM).and_then(|c| ClaimName::parse(c).ok()),
        generation: tags.get(tags::GENERATION).and_then(|g| g.parse().ok()).map(Generation),
        kind: tags.get(tags::KIND).and_then(|k| SnapshotKind::parse(k)),
        pinned: tags.get(tags::PIN).is_some_and(|p| p == "true"),
        pending: s.state() != Some(&SnapshotState::Completed),
        // berth's own lock tag; EBS's LockSnapshot is not used yet (README).
        lock: tags::lock(&tags),
        consistency: tags::consistency(&tags),
        volume: s.volume_id().filter(|v| !v.is_empty()).map(|v| VolumeId(v.to_owned())),
    })
}

/// Core's view of an EBS volume berth tagged (none for an untagged one).
pub fn volume_info(v: &Volume) -> Option<VolumeInfo> {
    let tags = tags::map(v.tags().iter().map(|t| (t.key(), t.value())));
    let id = v.volume_id()?.to_owned();
    Some(VolumeInfo {
        claim: ClaimName::parse(tags.get(tags::CLAIM)?).ok()?,
        generation: tags.get(tags::GENERATION).and_then(|g| g.parse().ok()).map(Generation),
        created: v.create_time().and_then(time).unwrap_or_else(Utc::now),
        source_snapshot: v.snapshot_id().filter(|s| !s.is_empty()).map(|s| SnapshotId(s.to_owned())),
        adopted_from: None,
        location: id.clone(),
        id: VolumeId(id),
    })
}

impl Volumes for EbsVolumes {
    fn made_at_launch(&self) -> bool {
        true
    }

    async fn create(
        &self,
        claim: &ClaimName,
        _generation: Option<Generation>,
        _source: &VolumeSource,
    ) -> Result<VolumeInfo, PortError> {
        Err(PortError::permanent(format!("EBS volumes are made by RunTask with their task, not for {claim} alone")))
    }

    async fn snapshot(&self, volume: &VolumeId, request: &SnapshotRequest) -> Result<SnapshotRecord, PortError> {
        let mut wanted = vec![
            filter(&format!("tag:{}", tags::CLAIM), request.claim.to_string()),
            filter(&format!("tag:{}", tags::KIND), request.kind.as_str()),
            filter("volume-id", &volume.0),
        ];
        if let Some(g) = request.generation {
            wanted.push(filter(&format!("tag:{}", tags::GENERATION), g.0.to_string()));
        }
        for found in self.describe_snapshots(wanted).await? {
            match snapshot_record(&found) {
                // Scheduled and manual snapshots may repeat; a stop snapshot is one per generation.
                Some(record) if request.kind == SnapshotKind::OnStop => return Ok(record),
                Some(_) => {}
                None => {
                    if let Some(id) = found.snapshot_id() {
                        self.delete_snapshots(&[SnapshotId(id.to_owned())]).await?;
                    }
                }
            }
        }
        let mut tagging = TagSpecification::builder().resource_type(ResourceType::Snapshot);
        for (key, value) in tags::snapshot(&self.cluster, request) {
            tagging = tagging.tags(Tag::builder().key(key).value(value).build());
        }
        let generation = request.generation.map_or_else(|| "-".to_owned(), |g| g.0.to_string());
        let answer = self
            .client
            .create_snapshot()
            .volume_id(&volume.0)
            .description(format!(
                "berth {} snapshot of {} generation {generation}",
                request.kind.as_str(),
                request.claim
            ))
            .tag_specifications(tagging.build())
            .send()
            .await
            .map_err(|e| port_error("CreateSnapshot", e))?;
        let id = answer.snapshot_id().ok_or_else(|| PortError::retryable("CreateSnapshot answered with no id"))?;
        Ok(SnapshotRecord {
            id: SnapshotId(id.to_owned()),
            time: answer.start_time().and_then(time).unwrap_or_else(Utc::now),
            claim: Some(request.claim.clone()),
            generation: request.generation,
            kind: Some(request.kind),
            pinned: request.pinned,
            pending: answer.state() != Some(&SnapshotState::Completed),
            lock: request.lock.clone(),
            consistency: request.consistency,
            volume: Some(volume.clone()),
        })
    }

    async fn delete(&self, volume: &VolumeId) -> Result<(), PortError> {
        match self.client.delete_volume().volume_id(&volume.0).send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("InvalidVolume.NotFound") => Ok(()),
            Err(e) => Err(port_error("DeleteVolume", e)),
        }
    }

    async fn list(&self) -> Result<Vec<VolumeInfo>, PortError> {
        let mut pages = self.client.describe_volumes().filters(self.scope()).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error("DescribeVolumes", e))?;
            out.extend(page.volumes().iter().filter_map(volume_info));
        }
        Ok(out)
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotRecord>, PortError> {
        Ok(self.describe_snapshots(Vec::new()).await?.iter().filter_map(snapshot_record).collect())
    }

    async fn delete_snapshots(&self, ids: &[SnapshotId]) -> Result<(), PortError> {
        for id in ids {
            match self.client.delete_snapshot().snapshot_id(&id.0).send().await {
                Ok(_) => {}
                Err(e) if code(&e) == Some("InvalidSnapshot.NotFound") => {}
                Err(e) => return Err(port_error("DeleteSnapshot", e)),
            }
        }
        Ok(())
    }
}
