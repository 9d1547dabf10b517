//! End-to-end tests of the snapshot repository on temporary folders.

mod common;

use std::{
    fs,
    os::unix::fs::{symlink, PermissionsExt},
    path::Path,
    time::{Duration, SystemTime},
};

use berth_repo::{Progress, Repo, RepoError, SnapshotKind, SnapshotMeta, VOLUME_PATH};
use common::{digest, disk_usage, meta, new_repo, open, packs, write_random, PASSWORD};

const MIB: usize = 1 << 20;

#[test]
fn tags_are_stored_and_parsed_back() {
    let (_dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    fs::write(vol.path().join("a.txt"), "hello").unwrap();
    let meta = SnapshotMeta {
        claim: "web-0".into(),
        generation: Some(3),
        kind: SnapshotKind::Scheduled,
        pinned: true,
        extra_tags: vec!["reason=test".into()],
        ..SnapshotMeta::new("web-0", SnapshotKind::Scheduled)
    };
    let taken = repo.snapshot(vol.path(), &meta).unwrap();
    assert_eq!(taken.id.len(), 64);
    assert_eq!(taken.files, 1);
    assert_eq!(taken.bytes, 5);

    let listed = repo.list().unwrap();
    assert_eq!(listed.len(), 1);
    let info = &listed[0];
    assert_eq!(info, &taken);
    assert_eq!(info.claim.as_deref(), Some("web-0"));
    assert_eq!(info.generation, Some(3));
    assert_eq!(info.kind.as_deref(), Some("scheduled"));
    assert!(info.pinned);
    assert_eq!(info.tags, ["claim=web-0", "generation=3", "kind=scheduled", "pin", "reason=test"]);
    assert!(info.time.ends_with('Z'), "{}", info.time);
    assert!(info.unix_time > 1_700_000_000);
}

#[test]
fn every_snapshot_stores_the_volume_path_and_restores_into_the_target() {
    let (_dir, repo) = new_repo();
    // Generations of one claim live in differently named folders.
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    fs::create_dir(first.path().join("sub")).unwrap();
    fs::write(first.path().join("sub/f"), "one").unwrap();
    fs::create_dir(second.path().join("sub")).unwrap();
    fs::write(second.path().join("sub/f"), "two").unwrap();

    let a = repo.snapshot(first.path(), &meta("web-0")).unwrap();
    let b = repo.snapshot(second.path(), &meta("web-0")).unwrap();
    assert_eq!(a.paths, [VOLUME_PATH]);
    assert_eq!(b.paths, [VOLUME_PATH]);
    assert_eq!(b.parent.as_deref(), Some(a.id.as_str()));

    let target = tempfile::tempdir().unwrap();
    let stats = repo.restore(&a.id[..8], target.path()).unwrap();
    assert_eq!(fs::read_to_string(target.path().join("sub/f")).unwrap(), "one");
    assert!(!target.path().join("volume").exists());
    assert_eq!((stats.files, stats.dirs, stats.bytes), (1, 1, 3));
    assert_eq!(stats.snapshot, a.id);
}

#[test]
fn an_unchanged_volume_adds_no_data() {
    let (_dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    for i in 0..4 {
        write_random(&vol.path().join(format!("f{i}")), 50 * MIB, i);
    }
    let first = repo.snapshot(vol.path(), &meta("db-0")).unwrap();
    assert!(first.data_added >= 200 * MIB as u64, "{first:?}");
    assert_eq!(first.parent, None);

    // Another claim in between must not become the parent.
    let other = tempfile::tempdir().unwrap();
    fs::write(other.path().join("x"), "x").unwrap();
    repo.snapshot(other.path(), &meta("db-1")).unwrap();

    let second = repo.snapshot(vol.path(), &meta("db-0")).unwrap();
    assert_eq!(second.parent.as_deref(), Some(first.id.as_str()));
    assert_eq!(second.files, 4);
    assert_eq!(second.bytes, 200 * MIB as u64);
    // Only a tree blob may be new (the snapshot time is not in it, so not
    // even that); no file data.
    assert!(second.data_added < 64 * 1024, "{second:?}");
}

/// The first snapshot of a restored volume read every file again: a
/// restored file has a new inode and ctime, and rustic_core's `ignore_inode`
/// was inverted, so inodes were compared. A 1 GiB failover on the restore
/// path spent 2 of its 3 seconds there.
#[test]
fn a_restored_volumes_first_snapshot_reads_only_what_changed_since_the_restore() {
    let (_dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    for i in 0..3 {
        write_random(&vol.path().join(format!("f{i}")), 4 * MIB, i);
    }
    let first = repo.snapshot(vol.path(), &meta("db-0")).unwrap();
    let target = tempfile::tempdir().unwrap();
    let restored_dir = target.path().join("v");
    fs::create_dir(&restored_dir).unwrap();
    repo.restore(&first.id, &restored_dir).unwrap();
    let restored = berth_repo::Restored::of(&first.id, &restored_dir).unwrap();

    // Untouched since the restore: nothing is read again.
    let second = repo.snapshot_restored(&restored_dir, &meta("db-0"), Some(&restored)).unwrap();
    assert_eq!(second.parent.as_deref(), Some(first.id.as_str()));
    assert_eq!(second.files_unmodified, 3, "{second:?}");

    // Changed in place with its size and mtime kept: read again, and the
    // snapshot holds the new bytes.
    let f1 = restored_dir.join("f1");
    let mtime = fs::metadata(&f1).unwrap().modified().unwrap();
    let mut data = fs::read(&f1).unwrap();
    data[MIB] ^= 0xff;
    fs::write(&f1, &data).unwrap();
    fs::File::options().write(true).open(&f1).unwrap().set_modified(mtime).unwrap();
    let third = repo.snapshot_restored(&restored_dir, &meta("db-0"), Some(&restored)).unwrap();
    assert_eq!(third.parent.as_deref(), Some(second.id.as_str()));
    assert_eq!(third.files_unmodified, 2, "{third:?}");
    let back = tempfile::tempdir().unwrap();
    let back_dir = back.path().join("v");
    fs::create_dir(&back_dir).unwrap();
    repo.restore(&third.id, &back_dir).unwrap();
    assert_eq!(fs::read(back_dir.join("f1")).unwrap(), data);

    // With the restore's own snapshot no longer the parent, the rule does
    // not apply: the same change made again is still found.
    data[2 * MIB] ^= 0xff;
    fs::write(&f1, &data).unwrap();
    fs::File::options().write(true).open(&f1).unwrap().set_modified(mtime).unwrap();
    let fourth = repo.snapshot_restored(&restored_dir, &meta("db-0"), Some(&restored)).unwrap();
    assert_eq!(fourth.files_unmodified, 2, "{fourth:?}");
}

#[test]
fn a_changed_file_stores_only_the_chunks_around_the_change() {
    let (_dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    for name in ["in-place", "inserted", "truncated"] {
        write_random(&vol.path().join(name), 40 * MIB, name.len() as u64);
    }
    let first = repo.snapshot(vol.path(), &meta("db-0")).unwrap();

    // One MiB rewritten in the middle, three bytes inserted, the tail cut.
    let path = vol.path().join("in-place");
    let mut bytes = fs::read(&path).unwrap();
    bytes[20 * MIB..21 * MIB].iter_mut().for_each(|b| *b = !*b);
    fs::write(&path, &bytes).unwrap();
    let path = vol.path().join("inserted");
    let mut bytes = fs::read(&path).unwrap();
    bytes.splice(7 * MIB..7 * MIB, [1, 2, 3]);
    fs::write(&path, &bytes).unwrap();
    let path = vol.path().join("truncated");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..25 * MIB + 77]).unwrap();

    let second = repo.snapshot(vol.path(), &meta("db-0")).unwrap();
    assert_eq!(second.parent.as_deref(), Some(first.id.as_str()));
    assert!(second.data_added < 12 * MIB as u64, "a few chunks per file, not the files: {second:?}");
    let target = tempfile::tempdir().unwrap();
    repo.restore(&second.id, target.path()).unwrap();
    assert_eq!(digest(target.path()), digest(vol.path()));

    // The same bytes chunked without a parent give the same chunks, so a
    // snapshot of them under another claim stores no file data.
    let third = repo.snapshot(vol.path(), &meta("db-1")).unwrap();
    assert_eq!(third.parent, None);
    assert!(third.data_added < 64 * 1024, "parent-guided and plain chunking agree: {third:?}");
}

#[test]
fn consecutive_snapshots_through_one_handle_deduplicate() {
    let (dir, repo) = new_repo();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_random(&a.path().join("data"), 30 * MIB, 7);
    fs::copy(a.path().join("data"), b.path().join("data")).unwrap();

    repo.snapshot(a.path(), &meta("web-0")).unwrap();
    let before = disk_usage(dir.path());
    let second = repo.snapshot(b.path(), &meta("web-1")).unwrap();
    let grown = disk_usage(dir.path()) - before;
    assert!(grown < MIB as u64, "repository grew by {grown} bytes");
    assert!(second.data_added < 64 * 1024, "{second:?}");
}

#[test]
fn restore_reproduces_contents_modes_times_and_links() {
    let (_dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    let v = vol.path();
    fs::create_dir_all(v.join("deep/er")).unwrap();
    fs::create_dir(v.join("private")).unwrap();
    write_random(&v.join("big.bin"), 9 * MIB + 123, 1);
    write_random(&v.join("deep/er/small.bin"), 1000, 2);
    fs::write(v.join("empty"), "").unwrap();
    fs::write(v.join("secret"), "s").unwrap();
    fs::write(v.join("script.sh"), "#!/bin/sh\n").unwrap();
    fs::write(v.join("private/x"), "x").unwrap();
    symlink("deep/er/small.bin", v.join("link")).unwrap();
    symlink("/nonexistent/target", v.join("dangling")).unwrap();
    fs::hard_link(v.join("secret"), v.join("deep/secret-link")).unwrap();
    fs::set_permissions(v.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(v.join("script.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(v.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    // Distinct, old mtimes (with nanoseconds) so a restore that forgot
    // them would show.
    let old = SystemTime::UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
    for (i, name) in ["big.bin", "empty", "secret", "script.sh", "deep/er/small.bin"].iter().enumerate() {
        let f = fs::File::options().write(true).open(v.join(name)).unwrap();
        f.set_modified(old + Duration::from_secs(i as u64 * 60)).unwrap();
    }
    // Directory mtimes last: creating entries changes them.
    for (i, dir) in ["deep/er", "deep", "private"].iter().enumerate() {
        let f = fs::File::open(v.join(dir)).unwrap();
        f.set_modified(old + Duration::from_secs(3600 + i as u64)).unwrap();
    }
    let expected = digest(v);

    let snap = repo.snapshot(v, &meta("web-0")).unwrap();
    let target = tempfile::tempdir().unwrap();
    let stats = repo.restore(&snap.id, target.path()).unwrap();
    let actual = digest(target.path());
    for (path, want) in &expected {
        assert_eq!(actual.get(path), Some(want), "{}", path.display());
    }
    assert_eq!(actual.len(), expected.len());
    assert_eq!(stats.bytes, 9 * MIB as u64 + 123 + 1000 + 1 + 10 + 1);
    // The hard link is a link again, not a copy.
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    assert_eq!(ino(&target.path().join("secret")), ino(&target.path().join("deep/secret-link")));
}

#[test]
fn an_empty_volume_round_trips() {
    let (_dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    let snap = repo.snapshot(vol.path(), &meta("web-0")).unwrap();
    assert_eq!(snap.files, 0);
    let target = tempfile::tempdir().unwrap();
    let stats = repo.restore(&snap.id, target.path()).unwrap();
    assert_eq!(stats.files, 0);
    assert_eq!(fs::read_dir(target.path()).unwrap().count(), 0);
}

#[test]
fn restore_refuses_a_non_empty_target_and_unknown_ids() {
    let (_dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    fs::write(vol.path().join("f"), "f").unwrap();
    let snap = repo.snapshot(vol.path(), &meta("web-0")).unwrap();

    let target = tempfile::tempdir().unwrap();
    fs::write(target.path().join("precious"), "keep me").unwrap();
    let err = repo.restore(&snap.id, target.path()).unwrap_err();
    assert!(matches!(err, RepoError::TargetNotEmpty { .. }), "{err}");
    assert_eq!(fs::read_to_string(target.path().join("precious")).unwrap(), "keep me");

    let empty = tempfile::tempdir().unwrap();
    let missing = if snap.id.starts_with('0') { "1" } else { "0" }.repeat(64);
    let err = repo.restore(&missing, empty.path()).unwrap_err();
    assert!(matches!(err, RepoError::SnapshotNotFound { .. }), "{err}");
    let err = repo.restore("xyz", empty.path()).unwrap_err();
    assert!(matches!(err, RepoError::InvalidInput { .. }), "{err}");
}

#[test]
fn a_damaged_pack_is_reported_by_check_and_restore() {
    let (dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    write_random(&vol.path().join("data"), 6 * MIB, 3);
    let snap = repo.snapshot(vol.path(), &meta("web-0")).unwrap();
    assert!(repo.check(true).unwrap().is_ok());

    // The largest pack holds the file data; flip bytes in its middle.
    let pack = &packs(dir.path())[0];
    let mut bytes = fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xff;
    }
    let mut perms = fs::metadata(pack).unwrap().permissions();
    perms.set_mode(0o644);
    fs::set_permissions(pack, perms).unwrap();
    fs::write(pack, bytes).unwrap();

    let report = repo.check(true).unwrap();
    assert!(!report.is_ok(), "{report:?}");
    assert!(report.errors.iter().any(|e| e.contains("pack")), "{report:?}");

    let target = tempfile::tempdir().unwrap();
    match repo.restore(&snap.id, target.path()) {
        Err(RepoError::Corrupt { snapshot, detail }) => {
            assert_eq!(snapshot.as_deref(), Some(snap.id.as_str()), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // No partial volume is left behind.
    assert_eq!(fs::read_dir(target.path()).unwrap().count(), 0);
}

#[test]
fn wrong_password_and_missing_repository_are_told_apart() {
    let (dir, _repo) = new_repo();
    let location = dir.path().to_str().unwrap();
    let err = Repo::open(location, "not the password", Progress::Hidden).unwrap_err();
    assert!(matches!(err, RepoError::WrongPassword { .. }), "{err}");
    let err = Repo::open_or_init(location, "not the password", Progress::Hidden).unwrap_err();
    assert!(matches!(err, RepoError::WrongPassword { .. }), "{err}");
    assert!(Repo::open(location, PASSWORD, Progress::Hidden).is_ok());

    let nowhere = dir.path().join("nowhere");
    let err = Repo::open(nowhere.to_str().unwrap(), PASSWORD, Progress::Hidden).unwrap_err();
    assert!(matches!(err, RepoError::NotFound { .. }), "{err}");
    assert!(!nowhere.exists(), "open must not create anything");

    if cfg!(feature = "s3") {
        // A URL that fails to parse: a valid one would reach for AWS (S3
        // itself is tested against moto in tests/s3.rs).
        let err = Repo::open("s3://bucket/berth?endpoint=ftp://host", PASSWORD, Progress::Hidden).unwrap_err();
        assert!(matches!(err, RepoError::InvalidInput { .. }), "{err}");
    } else {
        let err = Repo::open("s3://bucket/berth", PASSWORD, Progress::Hidden).unwrap_err();
        assert!(err.to_string().contains("S3 repositories need the s3 feature; not built"));
    }
}

#[test]
fn open_or_init_refuses_a_folder_with_other_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = Repo::open_or_init(dir.path().to_str().unwrap(), PASSWORD, Progress::Hidden).unwrap_err();
    assert!(matches!(err, RepoError::NotARepository { .. }), "{err}");
}

#[test]
fn open_or_init_recovers_from_an_interrupted_init() {
    // What a crash between writing the key and the config leaves behind.
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    drop(first);
    fs::remove_file(dir.path().join("config")).unwrap();
    assert_eq!(fs::read_dir(dir.path().join("keys")).unwrap().count(), 1);

    let repo = open(dir.path());
    let vol = tempfile::tempdir().unwrap();
    fs::write(vol.path().join("f"), "f").unwrap();
    repo.snapshot(vol.path(), &meta("web-0")).unwrap();
    assert!(Repo::open(dir.path().to_str().unwrap(), PASSWORD, Progress::Hidden).is_ok());
}

#[test]
fn concurrent_snapshots_of_two_claims_both_land() {
    // Both handles race to create the repository, too.
    let dir = tempfile::tempdir().unwrap();
    let vols: Vec<_> = (0..2u64)
        .map(|i| {
            let vol = tempfile::tempdir().unwrap();
            write_random(&vol.path().join("data"), 8 * MIB, 10 + i);
            vol
        })
        .collect();
    let taken: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = vols
            .iter()
            .enumerate()
            .map(|(i, vol)| {
                let path = dir.path();
                s.spawn(move || {
                    let repo = open(path);
                    repo.snapshot(vol.path(), &meta(&format!("web-{i}"))).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let repo = open(dir.path());
    let listed = repo.list().unwrap();
    assert_eq!(listed.len(), 2);
    for snap in &taken {
        assert!(listed.iter().any(|l| l.id == snap.id));
    }
    assert!(repo.check(true).unwrap().is_ok());
    for (i, snap) in taken.iter().enumerate() {
        let target = tempfile::tempdir().unwrap();
        repo.restore(&snap.id, target.path()).unwrap();
        assert_eq!(digest(target.path()), digest(vols[i].path()));
    }
}

#[test]
fn forget_and_prune_keep_the_rest_restorable() {
    let (_dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    write_random(&vol.path().join("keep"), 3 * MIB, 20);
    write_random(&vol.path().join("drop"), 5 * MIB, 21);
    let old = repo.snapshot(vol.path(), &meta("web-0")).unwrap();
    fs::remove_file(vol.path().join("drop")).unwrap();
    let kept = repo.snapshot(vol.path(), &meta("web-0")).unwrap();

    let err = repo.forget(&["f".repeat(64)]).unwrap_err();
    assert!(matches!(err, RepoError::SnapshotNotFound { .. }), "{err}");
    repo.forget(std::slice::from_ref(&old.id)).unwrap();
    let ids: Vec<_> = repo.list().unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, std::slice::from_ref(&kept.id));

    let plan = repo.prune(true).unwrap();
    assert!(plan.dry_run);
    assert!(plan.bytes.unused >= 5 * MIB as u64, "{plan:?}");
    let done = repo.prune(false).unwrap();
    assert_eq!(done.bytes.unused, plan.bytes.unused);
    let report = repo.check(true).unwrap();
    assert!(report.is_ok(), "{report:?}");

    // Marked packs wait 23 hours before a prune deletes them.
    let again = repo.prune(false).unwrap();
    assert!(again.packs.marked_waiting > 0, "{again:?}");
    assert!(repo.check(true).unwrap().is_ok());

    let target = tempfile::tempdir().unwrap();
    repo.restore(&kept.id, target.path()).unwrap();
    assert_eq!(digest(target.path()), digest(vol.path()));
}

#[test]
fn copy_to_copies_each_snapshot_once_with_its_tags() {
    let (_src_dir, src) = new_repo();
    let (_dst_dir, dst) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    write_random(&vol.path().join("data"), 4 * MIB, 30);
    let mut m = meta("db-0");
    m.generation = Some(9);
    m.pinned = true;
    let a = src.snapshot(vol.path(), &m).unwrap();
    fs::write(vol.path().join("more"), "more").unwrap();
    let b = src.snapshot(vol.path(), &meta("db-0")).unwrap();

    let copied = dst.copy_to(&src, &[]).unwrap();
    assert!(copied.is_empty());
    let copied = src.copy_to(&dst, std::slice::from_ref(&a.id)).unwrap();
    assert_eq!(copied.len(), 1);
    assert_eq!(copied[0].tags, a.tags);
    assert_eq!(copied[0].time, a.time);
    assert_eq!(copied[0].paths, a.paths);

    let copied = src.copy_to(&dst, &[a.id.clone(), b.id.clone()]).unwrap();
    assert_eq!(copied.len(), 1, "only b is new: {copied:?}");
    assert_eq!(copied[0].tags, b.tags);
    assert!(src.copy_to(&dst, &[a.id.clone(), b.id]).unwrap().is_empty());

    let listed = dst.list().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].generation, Some(9));
    assert!(listed[0].pinned);
    assert!(dst.check(true).unwrap().is_ok());
    let target = tempfile::tempdir().unwrap();
    dst.restore(&listed[1].id, target.path()).unwrap();
    assert_eq!(digest(target.path()), digest(vol.path()));

    let err = src.copy_to(&src, &[a.id]).unwrap_err();
    assert!(matches!(err, RepoError::InvalidInput { .. }), "{err}");
}

#[test]
fn prune_removes_half_written_packs_a_day_old() {
    let (dir, repo) = new_repo();
    let sub = dir.path().join("data/ab");
    let old = sub.join(format!("{}-tmp-", "ab".repeat(32)));
    let young = sub.join(format!("{}-tmp-", "ac".repeat(32)));
    fs::write(&old, vec![0u8; 1000]).unwrap();
    fs::write(&young, vec![0u8; 10]).unwrap();
    let day_ago = SystemTime::now() - Duration::from_secs(25 * 3600);
    fs::File::options().write(true).open(&old).unwrap().set_modified(day_ago).unwrap();

    let plan = repo.prune(true).unwrap();
    assert_eq!((plan.tmp_files, plan.bytes_tmp_files), (1, 1000));
    assert!(old.exists());
    let done = repo.prune(false).unwrap();
    assert_eq!((done.tmp_files, done.bytes_tmp_files), (1, 1000));
    assert!(!old.exists());
    assert!(young.exists(), "a running writer may still own it");
    assert!(repo.check(false).unwrap().is_ok());
}

/// A small tmpfs, unmounted when dropped. Mounting needs root, as the
/// tests and CI run.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs (the tests run as root, as CI does)");
        assert!(status.success(), "mounting a tmpfs needs root");
        Self(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_is_no_space_for_snapshot_and_restore() {
    let vol = tempfile::tempdir().unwrap();
    write_random(&vol.path().join("data"), 12 * MIB, 50);

    let small = Tmpfs::mount("6m");
    let repo = open(&small.path().join("repo"));
    let err = repo.snapshot(vol.path(), &meta("web-0")).unwrap_err();
    assert!(matches!(err, RepoError::NoSpace { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(repo.list().unwrap().is_empty());

    let (_dir, repo) = new_repo();
    let snap = repo.snapshot(vol.path(), &meta("web-0")).unwrap();
    let target = Tmpfs::mount("6m");
    let err = repo.restore(&snap.id, target.path()).unwrap_err();
    assert!(matches!(err, RepoError::NoSpace { .. }), "{err}");
    assert_eq!(fs::read_dir(target.path()).unwrap().count(), 0);
}

#[test]
fn a_damaged_snapshot_file_fails_list_but_not_new_snapshots() {
    let (dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    fs::write(vol.path().join("f"), "f").unwrap();
    let first = repo.snapshot(vol.path(), &meta("web-0")).unwrap();
    let file = dir.path().join("snapshots").join(&first.id);
    let mut perms = fs::metadata(&file).unwrap().permissions();
    perms.set_mode(0o644);
    fs::set_permissions(&file, perms).unwrap();
    fs::write(&file, b"garbage").unwrap();

    match repo.list() {
        Err(RepoError::Corrupt { snapshot, .. }) => assert_eq!(snapshot, Some(first.id.clone())),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Taking snapshots must go on: the damaged one only loses its role as
    // a parent.
    let second = repo.snapshot(vol.path(), &meta("web-0")).unwrap();
    assert_eq!(second.parent, None);
}

#[test]
fn sparse_files_stay_sparse() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let (_dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    let file = fs::File::create(vol.path().join("sparse")).unwrap();
    file.set_len(64 * MIB as u64).unwrap();
    file.write_all_at(b"end", 64 * MIB as u64 - 3).unwrap();
    drop(file);
    let snap = repo.snapshot(vol.path(), &meta("db-0")).unwrap();

    let target = tempfile::tempdir().unwrap();
    repo.restore(&snap.id, target.path()).unwrap();
    let restored = fs::metadata(target.path().join("sparse")).unwrap();
    assert_eq!(restored.len(), 64 * MIB as u64);
    assert!(restored.blocks() * 512 < 16 * MIB as u64, "{} blocks", restored.blocks());
    assert_eq!(digest(target.path()), digest(vol.path()));
}

/// The repository's key is re-written with restic's scrypt cost (N=2^15)
/// instead of rustic's fixed 2^17, and still opens with the password only.
#[test]
fn key_uses_restics_scrypt_cost() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("repo");
    let loc = location.to_str().unwrap();
    Repo::open_or_init(loc, "pw", Progress::Hidden).unwrap();
    let keys: Vec<_> = std::fs::read_dir(location.join("keys")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key: serde_json::Value = serde_json::from_slice(&std::fs::read(&keys[0]).unwrap()).unwrap();
    assert_eq!((key["N"].as_u64(), key["r"].as_u64(), key["p"].as_u64()), (Some(32768), Some(8), Some(1)));
    // Its name is the SHA-256 of its bytes, as restic checks.
    use sha2::Digest;
    let name = keys[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(name, hex::encode(sha2::Sha256::digest(std::fs::read(&keys[0]).unwrap())));
    Repo::open(loc, "pw", Progress::Hidden).unwrap();
    assert!(matches!(Repo::open(loc, "not-pw", Progress::Hidden), Err(RepoError::WrongPassword { .. })));
}

/// A large file mixing incompressible data, a run of zeros and
/// compressible text, of a length that is no multiple of any block, comes
/// back byte for byte: its blobs are written in runs whose aligned middles
/// go past the page cache, and whose zero blobs stay holes.
#[test]
fn large_mixed_files_restore_exactly() {
    use std::io::Write;
    let (_dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(11);
    let mut data = vec![0u8; 7 * MIB];
    rng.fill(&mut data);
    data.resize(13 * MIB, 0);
    while data.len() < 21 * MIB {
        let line = format!("{} INFO request {} took {} ms\n", rng.u32(..), rng.u16(..), rng.u8(..));
        data.extend_from_slice(line.as_bytes());
    }
    let mut tail = vec![0u8; 4097];
    rng.fill(&mut tail);
    data.extend_from_slice(&tail);
    fs::File::create(vol.path().join("mixed")).unwrap().write_all(&data).unwrap();
    write_random(&vol.path().join("just-over-a-run"), 4 * MIB + 1, 12);
    write_random(&vol.path().join("just-under-direct"), MIB - 1, 13);

    let snap = repo.snapshot(vol.path(), &meta("db-0")).unwrap();
    let target = tempfile::tempdir().unwrap();
    let stats = repo.restore(&snap.id, target.path()).unwrap();
    assert_eq!(fs::read(target.path().join("mixed")).unwrap(), data);
    assert_eq!(digest(target.path()), digest(vol.path()));
    assert_eq!(stats.bytes, data.len() as u64 + 5 * MIB as u64);
}
