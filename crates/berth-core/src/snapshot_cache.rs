//! The snapshot catalogue as a port wrapper: [`Cached`] is a `Volumes`
//! that remembers every snapshot by claim.
//!
//! The controller reads a claim's snapshots at each step of a handoff;
//! listing a repository (or DescribeSnapshots) each time would be slow. So
//! the list is read in full on [`Cached::refresh`] (each resync) and kept
//! current by the snapshots taken and deleted through this wrapper. It is
//! the controller's view of the store, kept behind the port (STYLE.md point
//! 7), so the controller holds no copy of its own.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::claim::{ClaimName, Generation};
use crate::ports::{PortError, VolumeId, VolumeInfo, VolumeSource, Volumes};
use crate::snapshot::{SnapshotId, SnapshotRecord, SnapshotRequest};

/// `inner`, with its snapshots remembered by claim.
pub struct Cached<V> {
    inner: V,
    by_claim: Mutex<BTreeMap<ClaimName, Vec<SnapshotRecord>>>,
}

impl<V> Cached<V> {
    pub fn new(inner: V) -> Self {
        Self { inner, by_claim: Mutex::new(BTreeMap::new()) }
    }

    /// The port itself.
    pub fn inner(&self) -> &V {
        &self.inner
    }

    /// The snapshots of one claim as last read or made.
    pub fn of(&self, claim: &ClaimName) -> Vec<SnapshotRecord> {
        self.by_claim.lock().expect("snapshot cache lock").get(claim).cloned().unwrap_or_default()
    }

    /// Whether any snapshot of `claim` is still being made (the one change
    /// to a snapshot the cache would otherwise miss).
    pub fn has_pending(&self, claim: &ClaimName) -> bool {
        self.of(claim).iter().any(|s| s.pending)
    }

    /// Every snapshot of every claim.
    pub fn all(&self) -> Vec<SnapshotRecord> {
        self.by_claim.lock().expect("snapshot cache lock").values().flatten().cloned().collect()
    }

    fn remember(&self, record: &SnapshotRecord) {
        if let Some(claim) = &record.claim {
            self.by_claim.lock().expect("snapshot cache lock").entry(claim.clone()).or_default().push(record.clone());
        }
    }

    fn forget(&self, ids: &[SnapshotId]) {
        for list in self.by_claim.lock().expect("snapshot cache lock").values_mut() {
            list.retain(|s| !ids.contains(&s.id));
        }
    }
}

impl<V: Volumes> Cached<V> {
    /// Reads every snapshot from the store again.
    pub async fn refresh(&self) -> Result<(), PortError> {
        let all = self.inner.snapshots().await?;
        let mut by_claim: BTreeMap<ClaimName, Vec<SnapshotRecord>> = BTreeMap::new();
        for s in all {
            if let Some(c) = s.claim.clone() {
                by_claim.entry(c).or_default().push(s);
            }
        }
        *self.by_claim.lock().expect("snapshot cache lock") = by_claim;
        Ok(())
    }
}

impl<V: Volumes> Volumes for Cached<V> {
    fn made_at_launch(&self) -> bool {
        self.inner.made_at_launch()
    }

    async fn create(
        &self,
        claim: &ClaimName,
        generation: Option<Generation>,
        source: &VolumeSource,
    ) -> Result<VolumeInfo, PortError> {
        self.inner.create(claim, generation, source).await
    }

    /// Takes the snapshot and remembers it at once: it is what the next
    /// step finds it by, whatever else fails after.
    async fn snapshot(&self, volume: &VolumeId, request: &SnapshotRequest) -> Result<SnapshotRecord, PortError> {
        let mut record = self.inner.snapshot(volume, request).await?;
        // A store may answer before tagging its record (EBS): the request
        // names the claim.
        record.claim.get_or_insert_with(|| request.claim.clone());
        self.remember(&record);
        Ok(record)
    }

    async fn delete(&self, volume: &VolumeId) -> Result<(), PortError> {
        self.inner.delete(volume).await
    }

    async fn list(&self) -> Result<Vec<VolumeInfo>, PortError> {
        self.inner.list().await
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotRecord>, PortError> {
        self.inner.snapshots().await
    }

    async fn delete_snapshots(&self, ids: &[SnapshotId]) -> Result<(), PortError> {
        self.inner.delete_snapshots(ids).await?;
        self.forget(ids);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeClock, FakeVolumes};
    use crate::snapshot::SnapshotKind;

    #[tokio::test]
    async fn snapshots_taken_and_deleted_through_it_are_known_at_once_and_a_refresh_reads_the_store() {
        let cached = Cached::new(FakeVolumes::new(FakeClock::default(), Default::default()));
        let claim = ClaimName::parse("files-0").unwrap();
        let v = cached.create(&claim, Some(Generation(1)), &VolumeSource::Empty).await.unwrap();
        let request = SnapshotRequest::new(claim.clone(), Some(Generation(1)), SnapshotKind::OnStop);
        let first = cached.snapshot(&v.id, &request).await.unwrap();
        assert_eq!(cached.of(&claim).len(), 1, "known without a listing");
        // Taken behind its back: unknown until a refresh.
        let second = cached.inner().snapshot(&v.id, &request).await.unwrap();
        assert_eq!(cached.of(&claim).len(), 1);
        cached.refresh().await.unwrap();
        assert_eq!(cached.all().len(), 2);
        cached.delete_snapshots(std::slice::from_ref(&first.id)).await.unwrap();
        assert_eq!(cached.of(&claim).iter().map(|s| &s.id).collect::<Vec<_>>(), [&second.id]);
    }
}
