//! The local `Volumes` adapter against a real repository on disk.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use berth_core::{ClaimName, Generation, SnapshotKind, SnapshotRequest, VolumeSource, Volumes};
use berth_local::{LocalVolumes, StateDir};
use berth_repo::{Progress, Repo};

fn setup() -> (tempfile::TempDir, LocalVolumes) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("state"));
    let repo = Repo::open_or_init(state.repository().to_str().unwrap(), "test-password", Progress::Hidden).unwrap();
    let volumes = LocalVolumes::with_repo(&state, repo).unwrap();
    (dir, volumes)
}

fn fill(root: &Path) {
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("a.txt"), "alpha").unwrap();
    fs::write(root.join("sub/b.bin"), vec![7u8; 100_000]).unwrap();
    fs::set_permissions(root.join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
}

fn request(claim: &ClaimName, generation: u64) -> SnapshotRequest {
    SnapshotRequest::new(claim.clone(), Some(Generation(generation)), SnapshotKind::OnStop)
}

#[tokio::test(flavor = "multi_thread")]
async fn adopt_when_unchanged_restore_otherwise() {
    let (_dir, volumes) = setup();
    let claim = ClaimName::parse("web-0").unwrap();
    let v1 = volumes.create(&claim, Some(Generation(1)), &VolumeSource::Empty).await.unwrap();
    fill(Path::new(&v1.location));
    let s1 = volumes.snapshot(&v1.id, &request(&claim, 1)).await.unwrap();
    assert_eq!(s1.claim.as_ref(), Some(&claim));
    assert_eq!(s1.generation, Some(Generation(1)));
    assert_eq!(s1.kind, Some(SnapshotKind::OnStop));

    // Unchanged since the snapshot: adopted by rename.
    let source = VolumeSource::AdoptOrRestore { volume: v1.id.clone(), snapshot: s1.id.clone() };
    let v2 = volumes.create(&claim, Some(Generation(2)), &source).await.unwrap();
    assert_eq!(v2.adopted_from.as_ref(), Some(&v1.id));
    assert_eq!(v2.source_snapshot.as_ref(), Some(&s1.id));
    assert_eq!(fs::read_to_string(Path::new(&v2.location).join("a.txt")).unwrap(), "alpha");
    let listed = volumes.list().await.unwrap();
    assert_eq!(listed.iter().map(|v| &v.id).collect::<Vec<_>>(), [&v2.id], "the adopted volume is gone");

    // Changed after its snapshot: restored from the snapshot, not adopted.
    let s2 = volumes.snapshot(&v2.id, &request(&claim, 2)).await.unwrap();
    fs::write(Path::new(&v2.location).join("a.txt"), "written after the snapshot").unwrap();
    let source = VolumeSource::AdoptOrRestore { volume: v2.id.clone(), snapshot: s2.id.clone() };
    let v3 = volumes.create(&claim, Some(Generation(3)), &source).await.unwrap();
    assert_eq!(v3.adopted_from, None);
    assert_eq!(fs::read_to_string(Path::new(&v3.location).join("a.txt")).unwrap(), "alpha");
    let mode = fs::metadata(Path::new(&v3.location).join("a.txt")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(fs::read(Path::new(&v3.location).join("sub/b.bin")).unwrap(), vec![7u8; 100_000]);
    // The old volume is left for its owner to delete.
    assert!(Path::new(&v2.location).exists());

    // A seal for another snapshot does not adopt either.
    let source = VolumeSource::AdoptOrRestore { volume: v3.id.clone(), snapshot: s1.id.clone() };
    let v4 = volumes.create(&claim, Some(Generation(4)), &source).await.unwrap();
    assert_eq!(v4.adopted_from, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_delete_list_and_snapshots() {
    let (_dir, volumes) = setup();
    let claim = ClaimName::parse("db-0").unwrap();
    let v1 = volumes.create(&claim, None, &VolumeSource::Empty).await.unwrap();
    fill(Path::new(&v1.location));
    let s1 = volumes.snapshot(&v1.id, &request(&claim, 1)).await.unwrap();
    let v2 = volumes.create(&claim, None, &VolumeSource::Snapshot(s1.id.clone())).await.unwrap();
    assert_eq!(fs::read_to_string(Path::new(&v2.location).join("a.txt")).unwrap(), "alpha");
    assert_eq!(volumes.list().await.unwrap().len(), 2);

    volumes.delete(&v1.id).await.unwrap();
    volumes.delete(&v1.id).await.unwrap(); // idempotent
    assert_eq!(volumes.list().await.unwrap().len(), 1);
    assert!(!Path::new(&v1.location).exists());

    let snaps = volumes.snapshots().await.unwrap();
    assert_eq!(snaps.len(), 1);
    volumes.delete_snapshots(std::slice::from_ref(&s1.id)).await.unwrap();
    assert!(volumes.snapshots().await.unwrap().is_empty());

    // Restoring from a snapshot that is gone fails and leaves no volume behind.
    let err = volumes.create(&claim, None, &VolumeSource::Snapshot(s1.id.clone())).await.unwrap_err();
    assert!(!err.retryable, "{err}");
    assert_eq!(volumes.list().await.unwrap().len(), 1);
    let leftovers: Vec<_> = fs::read_dir(Path::new(&v2.location).parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".creating-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Issue 20, defect 6: after a `kill -9` mid-upload, the stop snapshot held
/// the file service's half-written `.berth-tmp-…` file, and a restore
/// brought it back. Temporary files are left out of every snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn stop_snapshots_leave_out_half_written_uploads() {
    let (_dir, volumes) = setup();
    let claim = ClaimName::parse("files-0").unwrap();
    let v1 = volumes.create(&claim, Some(Generation(1)), &VolumeSource::Empty).await.unwrap();
    let root = Path::new(&v1.location);
    fill(root);
    fs::write(root.join(".berth-tmp-4f2a"), vec![1u8; 64 * 1024]).unwrap();
    fs::write(root.join("sub/.berth-tmp-77"), b"half").unwrap();
    let s1 = volumes.snapshot(&v1.id, &request(&claim, 1)).await.unwrap();
    let v2 = volumes.create(&claim, Some(Generation(2)), &VolumeSource::Snapshot(s1.id.clone())).await.unwrap();
    let restored = Path::new(&v2.location);
    assert_eq!(fs::read_to_string(restored.join("a.txt")).unwrap(), "alpha");
    assert_eq!(fs::read(restored.join("sub/b.bin")).unwrap(), vec![7u8; 100_000]);
    assert!(!restored.join(".berth-tmp-4f2a").exists(), "a temporary file came back");
    assert!(!restored.join("sub/.berth-tmp-77").exists(), "a temporary file came back");
}
