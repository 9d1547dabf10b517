//! Interoperability with the real restic CLI: what berth writes, restic
//! reads, and restic's own snapshots are recognised as foreign.
//!
//! These tests need `restic` (0.14 or later) on the PATH and fail, not
//! skip, without it: interoperability is a promise of the format.

mod common;

use std::{fs, path::Path, process::Command};

use berth_repo::{RepoError, SnapshotKind, SnapshotMeta, VOLUME_PATH};
use common::{digest, new_repo, write_random, PASSWORD};

fn restic(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("restic")
        .arg("--repo")
        .arg(repo)
        .arg("--no-cache")
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .unwrap_or_else(|err| panic!("cannot run restic ({err}); install it with `apt-get install restic`"));
    assert!(output.status.success(), "restic {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn restic_lists_checks_and_restores_berth_snapshots() {
    let (dir, repo) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    fs::create_dir(vol.path().join("sub")).unwrap();
    write_random(&vol.path().join("sub/data"), 3 << 20, 40);
    fs::write(vol.path().join("note"), "hello restic").unwrap();
    fs::write(vol.path().join("log.txt"), "GET /files/a 200\n".repeat(4000)).unwrap();
    let meta = SnapshotMeta { generation: Some(2), ..SnapshotMeta::new("web-0", SnapshotKind::Manual) };
    let snap = repo.snapshot(vol.path(), &meta).unwrap();

    let json = restic(dir.path(), &["snapshots", "--json", "--tag", "claim=web-0"]);
    let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{json}");
    assert_eq!(listed[0]["id"], snap.id.as_str());
    assert_eq!(listed[0]["paths"][0], VOLUME_PATH);
    let tags: Vec<_> = listed[0]["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    assert_eq!(tags, snap.tags);

    restic(dir.path(), &["check", "--read-data"]);

    // The random file's blobs did not shrink and are stored as they are,
    // the text's compressed: restic's index says which is which.
    let (mut plain, mut compressed) = (0, 0);
    for index in restic(dir.path(), &["list", "index"]).lines() {
        let index: serde_json::Value = serde_json::from_str(&restic(dir.path(), &["cat", "index", index])).unwrap();
        for blob in index["packs"].as_array().unwrap().iter().flat_map(|p| p["blobs"].as_array().unwrap()) {
            if blob["type"] == "data" {
                // rustic writes `null` where restic leaves the field out.
                if blob["uncompressed_length"].is_null() {
                    plain += 1;
                } else {
                    compressed += 1;
                }
            }
        }
    }
    assert!(
        plain >= 2,
        "the 3 MiB of random data should be stored uncompressed ({plain} plain, {compressed} compressed)"
    );
    assert!(compressed >= 1, "the text should be stored compressed ({plain} plain, {compressed} compressed)");

    let target = tempfile::tempdir().unwrap();
    restic(dir.path(), &["restore", &snap.id, "--target", target.path().to_str().unwrap()]);
    // restic restores the stored path under the target.
    let restored = target.path().join(VOLUME_PATH.trim_start_matches('/'));
    let contents = |d: &Path| digest(d).into_iter().map(|(p, e)| (p, e.kind, e.content, e.size)).collect::<Vec<_>>();
    assert_eq!(contents(&restored), contents(vol.path()));
}

#[test]
fn snapshots_written_by_restic_are_listed_but_not_restored_as_volumes() {
    let (dir, repo) = new_repo();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), "from restic").unwrap();
    restic(dir.path(), &["backup", "--tag", "other", src.path().to_str().unwrap()]);

    let listed = repo.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].claim, None);
    assert_eq!(listed[0].tags, ["other"]);

    let target = tempfile::tempdir().unwrap();
    let err = repo.restore(&listed[0].id, target.path()).unwrap_err();
    assert!(matches!(err, RepoError::NotAVolume { .. }), "{err}");
    assert!(repo.check(true).unwrap().is_ok());
}
