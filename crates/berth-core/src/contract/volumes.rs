//! The volumes contract: behaviour every `Volumes` adapter must show.
//!
//! As the ledger's ([`crate::ledger::contract`]): each check is a public
//! async function that panics naming the broken promise; [`run_all`] runs
//! them all on one store, each with claims of its own. A store whose
//! volumes come with their task (EBS on Fargate, `made_at_launch`) is
//! given its volumes by the caller ([`Fill`]'s `make`), as RunTask would
//! make them; every other store is asked to `create` them.

use std::future::Future;

use crate::claim::{ClaimName, Generation};
use crate::ports::{VolumeId, VolumeInfo, VolumeSource, Volumes};
use crate::snapshot::{SnapshotKind, SnapshotRequest};

/// What the checks need besides the store.
pub struct Fill<M, W> {
    /// Makes a volume of `claim` at `generation` the way the store's
    /// volumes come into being, and writes `content` into it (a marker the
    /// store cannot see, so a restore is told from an empty volume by the
    /// caller's `read`).
    pub make: M,
    /// Reads back the marker of a volume (`None`: no marker in it).
    pub read: W,
}

/// The two things a check asks of its [`Fill`].
pub trait Filler {
    fn make(
        &self,
        claim: ClaimName,
        generation: Generation,
        source: VolumeSource,
        marker: Option<String>,
    ) -> impl Future<Output = VolumeInfo>;
    fn read(&self, volume: VolumeInfo) -> impl Future<Output = Option<String>>;
}

impl<M, MF, W, WF> Filler for Fill<M, W>
where
    M: Fn(ClaimName, Generation, VolumeSource, Option<String>) -> MF,
    MF: Future<Output = VolumeInfo>,
    W: Fn(VolumeInfo) -> WF,
    WF: Future<Output = Option<String>>,
{
    fn make(
        &self,
        claim: ClaimName,
        generation: Generation,
        source: VolumeSource,
        marker: Option<String>,
    ) -> impl Future<Output = VolumeInfo> {
        (self.make)(claim, generation, source, marker)
    }

    fn read(&self, volume: VolumeInfo) -> impl Future<Output = Option<String>> {
        (self.read)(volume)
    }
}

/// Runs every check on `store`.
pub async fn run_all<V: Volumes>(store: &V, fill: &impl Filler) {
    a_volume_is_listed_with_its_claim_and_generation(store, fill).await;
    a_snapshot_names_its_claim_generation_kind_and_volume(store, fill).await;
    a_volume_restored_from_a_snapshot_holds_its_data(store, fill).await;
    deleting_twice_succeeds(store, fill).await;
}

fn claim(name: &str) -> ClaimName {
    ClaimName::parse(name).expect("a contract claim name")
}

async fn listed<V: Volumes>(store: &V, id: &VolumeId) -> Option<VolumeInfo> {
    store.list().await.expect("list volumes").into_iter().find(|v| &v.id == id)
}

/// A new volume is listed with its claim and generation, and no source.
pub async fn a_volume_is_listed_with_its_claim_and_generation<V: Volumes>(store: &V, fill: &impl Filler) {
    let v = fill.make(claim("vcontract-1"), Generation(2), VolumeSource::Empty, None).await;
    let seen = listed(store, &v.id).await.expect("the store lists a volume it made");
    assert_eq!(seen.claim, claim("vcontract-1"), "a volume names its claim");
    assert_eq!(seen.generation, Some(Generation(2)), "a volume names its generation");
    assert_eq!(seen.source_snapshot, None, "an empty volume has no source snapshot");
}

/// A snapshot names the claim, generation and kind asked for, and the
/// volume it copies (the identity a stop snapshot is matched by); the
/// store lists it.
pub async fn a_snapshot_names_its_claim_generation_kind_and_volume<V: Volumes>(store: &V, fill: &impl Filler) {
    let name = claim("vcontract-2");
    let v = fill.make(name.clone(), Generation(1), VolumeSource::Empty, Some("one".into())).await;
    let request = SnapshotRequest::new(name.clone(), Some(Generation(1)), SnapshotKind::OnStop);
    let snap = store.snapshot(&v.id, &request).await.expect("snapshot a volume");
    assert_eq!(snap.claim.as_ref(), Some(&name), "a snapshot names its claim");
    assert_eq!(snap.generation, Some(Generation(1)), "a snapshot names its generation");
    assert_eq!(snap.kind, Some(SnapshotKind::OnStop), "a snapshot names its kind");
    assert_eq!(snap.volume.as_ref(), Some(&v.id), "a snapshot names the volume it copies");
    let all = store.snapshots().await.expect("list snapshots");
    let seen = all.iter().find(|s| s.id == snap.id).expect("the store lists a snapshot it took");
    assert_eq!(seen.volume.as_ref(), Some(&v.id), "the listed snapshot names its volume too");
}

/// A volume made from a snapshot holds the snapshot's data and names it
/// as its source.
pub async fn a_volume_restored_from_a_snapshot_holds_its_data<V: Volumes>(store: &V, fill: &impl Filler) {
    let name = claim("vcontract-3");
    let v = fill.make(name.clone(), Generation(1), VolumeSource::Empty, Some("kept".into())).await;
    let request = SnapshotRequest::new(name.clone(), Some(Generation(1)), SnapshotKind::OnStop);
    let snap = store.snapshot(&v.id, &request).await.expect("snapshot a volume");
    let restored = fill.make(name, Generation(2), VolumeSource::Snapshot(snap.id.clone()), None).await;
    assert_ne!(restored.id, v.id, "a restore makes a new volume");
    let seen = listed(store, &restored.id).await.expect("the restored volume is listed");
    assert_eq!(seen.source_snapshot.as_ref(), Some(&snap.id), "a restored volume names its snapshot");
    assert_eq!(fill.read(seen).await.as_deref(), Some("kept"), "a restored volume holds the snapshot's data");
}

/// Deleting a volume or a snapshot removes it; deleting it again succeeds.
pub async fn deleting_twice_succeeds<V: Volumes>(store: &V, fill: &impl Filler) {
    let name = claim("vcontract-4");
    let v = fill.make(name.clone(), Generation(1), VolumeSource::Empty, Some("gone".into())).await;
    let request = SnapshotRequest::new(name, Some(Generation(1)), SnapshotKind::Manual);
    let snap = store.snapshot(&v.id, &request).await.expect("snapshot a volume");
    for _ in 0..2 {
        store.delete(&v.id).await.expect("deleting a volume, again too, succeeds");
        store.delete_snapshots(std::slice::from_ref(&snap.id)).await.expect("deleting a snapshot, again too, succeeds");
    }
    assert!(listed(store, &v.id).await.is_none(), "a deleted volume is not listed");
    let all = store.snapshots().await.expect("list snapshots");
    assert!(!all.iter().any(|s| s.id == snap.id), "a deleted snapshot is not listed");
}
