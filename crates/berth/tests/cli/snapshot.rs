//! `berth snapshot …` end to end: the real binary, a real repository on
//! disk, and the real restic CLI reading what berth wrote.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::{SmallDisk, BERTH};

/// A state folder and repository for one test.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn repo(&self) -> PathBuf {
        self.state().join("repository")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BERTH);
        c.arg("snapshot")
            .args(args)
            .env("BERTH_STATE", self.state())
            .env("BERTH_PASSWORD", "correct horse")
            .env_remove("BERTH_REPOSITORY")
            .env_remove("BERTH_PASSWORD_FILE");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "berth snapshot {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// A volume folder with a few kinds of entries.
    fn volume(&self, name: &str) -> PathBuf {
        let v = self.dir.path().join(name);
        fs::create_dir_all(v.join("sub/deeper")).unwrap();
        fs::write(v.join("a.txt"), "alpha").unwrap();
        fs::write(v.join("empty"), "").unwrap();
        fs::write(v.join("sub/deeper/b.bin"), (0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()).unwrap();
        fs::set_permissions(v.join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(v.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("a.txt", v.join("link")).unwrap();
        v
    }
}

/// (relative path, kind, size, mode, mtime, content hash or link target) of every entry.
fn tree(root: &Path) -> Vec<(String, String, u64, u32, i64, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String, u64, u32, i64, String)>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let m = fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let (kind, content) = if m.file_type().is_symlink() {
                ("link", fs::read_link(e.path()).unwrap().display().to_string())
            } else if m.is_dir() {
                ("dir", String::new())
            } else {
                ("file", crate::util::sha256(&fs::read(e.path()).unwrap()))
            };
            let mtime = if kind == "dir" { 0 } else { m.mtime() };
            out.push((rel, kind.into(), if kind == "dir" { 0 } else { m.size() }, m.mode() & 0o7777, mtime, content));
            if kind == "dir" {
                walk(root, &e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn create_list_restore_roundtrip() {
    let env = Env::new();
    let vol = env.volume("vol");
    let created =
        env.json(&["create", vol.to_str().unwrap(), "--claim", "web-0", "--generation", "3", "--tag", "release-1"]);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["claim"], "web-0");
    assert_eq!(created["generation"], 3);
    assert_eq!(created["kind"], "manual");

    env.ok(&["create", vol.to_str().unwrap(), "--claim", "db-0", "--kind", "scheduled", "--pin"]);
    let all = env.json(&["list"]);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let web = env.json(&["list", "--claim", "web-0"]);
    assert_eq!(web.as_array().unwrap().len(), 1);
    assert!(web[0]["tags"].as_array().unwrap().iter().any(|t| t == "release-1"));
    assert_eq!(env.json(&["list", "--tag", "pin"]).as_array().unwrap().len(), 1);
    assert_eq!(env.json(&["list", "--since", "1h"]).as_array().unwrap().len(), 2);
    assert_eq!(env.json(&["list", "--until", "2000-01-01T00:00:00Z"]).as_array().unwrap().len(), 0);
    let table = env.ok(&["list"]);
    assert!(table.starts_with("ID") && table.contains("web-0") && table.contains("2 snapshots"), "{table}");

    let target = env.dir.path().join("restored");
    env.ok(&["restore", &id[..8], target.to_str().unwrap()]);
    assert_eq!(tree(&target), tree(&vol));

    // A non-empty target is refused and left as it was.
    let out = env.run(&["restore", &id, target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not empty") && err.contains("--force"), "{err}");
    fs::write(target.join("extra"), "x").unwrap();
    env.ok(&["restore", &id, target.to_str().unwrap(), "--force"]);
    assert_eq!(tree(&target), tree(&vol), "--force replaces the content");
    let stray: Vec<_> = fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("berth-restore") || n.contains("berth-old"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn restore_latest_takes_the_newest_selected_snapshot() {
    let env = Env::new();
    let vol = env.volume("vol");
    let v = vol.to_str().unwrap();
    let target = |name: &str| env.dir.path().join(name).to_str().unwrap().to_owned();
    let out = env.run(&["restore", "latest", &target("none")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no snapshot repository") && err.contains("snapshot create"), "{err}");

    env.ok(&["create", v, "--claim", "web-0"]);
    fs::write(vol.join("a.txt"), "second").unwrap();
    let web_second = env.json(&["create", v, "--claim", "web-0"]);
    fs::write(vol.join("a.txt"), "other claim").unwrap();
    env.ok(&["create", v, "--claim", "db-0"]);

    // Plain `latest` is the newest of all; --claim narrows it to that claim's.
    env.ok(&["restore", "latest", &target("all")]);
    assert_eq!(fs::read_to_string(env.dir.path().join("all/a.txt")).unwrap(), "other claim");
    let restored = env.json(&["restore", "LATEST", &target("web"), "--claim", "web-0"]);
    assert_eq!(restored["snapshot"], web_second["id"], "{restored}");
    assert_eq!(fs::read_to_string(env.dir.path().join("web/a.txt")).unwrap(), "second");

    let out = env.run(&["restore", "latest", &target("x"), "--claim", "nobody-0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot matches"));
    let out = env.run(&["restore", web_second["id"].as_str().unwrap(), &target("x"), "--claim", "web-0"]);
    assert_eq!(out.status.code(), Some(1), "a filter with an explicit id is refused, not ignored");
    assert!(!env.dir.path().join("x").exists());

    // A repository whose only snapshot was forgotten has nothing to restore.
    let empty = target("empty-repo");
    let only = env.json(&["create", v, "--claim", "web-0", "--repo", &empty]);
    env.ok(&["forget", only["id"].as_str().unwrap(), "--repo", &empty]);
    let out = env.run(&["restore", "latest", &target("x"), "--repo", &empty]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no snapshots yet"), "{err}");
}

#[test]
fn restic_reads_what_berth_wrote() {
    let env = Env::new();
    let vol = env.volume("vol");
    let created = env.json(&["create", vol.to_str().unwrap(), "--claim", "web-1", "--generation", "7"]);
    let id = created["id"].as_str().unwrap();
    let restic = |args: &[&str]| {
        let out = Command::new("restic")
            .args(["-r", env.repo().to_str().unwrap(), "--no-cache"])
            .args(args)
            .env("RESTIC_PASSWORD", "correct horse")
            .output()
            .expect("restic is installed (apt-get install restic; .ci/run does)");
        assert!(out.status.success(), "restic {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let listed: Value = serde_json::from_str(&restic(&["snapshots", "--json"])).unwrap();
    assert_eq!(listed[0]["id"], id);
    let tags: Vec<&str> = listed[0]["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    for t in ["claim=web-1", "generation=7", "kind=manual"] {
        assert!(tags.contains(&t), "{tags:?}");
    }
    let by_restic = env.dir.path().join("by-restic");
    restic(&["restore", id, "--target", by_restic.to_str().unwrap()]);
    let by_berth = env.dir.path().join("by-berth");
    env.ok(&["restore", id, by_berth.to_str().unwrap()]);
    // restic restores the snapshot's stored path below the target.
    let stored = listed[0]["paths"][0].as_str().unwrap().trim_start_matches('/');
    assert_eq!(tree(&by_restic.join(stored)), tree(&by_berth));
    assert_eq!(tree(&by_berth), tree(&vol));
    restic(&["check"]);
}

#[test]
fn forget_keeps_pinned_and_dry_run_changes_nothing() {
    let env = Env::new();
    let vol = env.volume("vol");
    let pinned = env.json(&["create", vol.to_str().unwrap(), "--claim", "web-0", "--pin"]);
    for i in 0..3 {
        fs::write(vol.join("counter"), i.to_string()).unwrap();
        env.ok(&["create", vol.to_str().unwrap(), "--claim", "web-0"]);
    }
    env.ok(&["create", vol.to_str().unwrap(), "--claim", "other-0"]);

    let plan = env.json(&["forget", "--keep-last", "1", "--dry-run"]);
    assert_eq!(plan["forgotten"].as_array().unwrap().len(), 2);
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 5, "dry run forgets nothing");

    let out = env.run(&["forget"]);
    assert_eq!(out.status.code(), Some(1), "no policy is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--keep-"));

    let done = env.json(&["forget", "--keep-last", "1", "--claim", "web-0", "--prune"]);
    let verdicts = done["plans"]["web-0"].as_array().unwrap();
    let pinned_verdict = verdicts.iter().find(|v| v["id"] == pinned["id"]).unwrap();
    assert_eq!(pinned_verdict["keep"], true);
    assert_eq!(pinned_verdict["reasons"][0], "pinned");
    let left = env.json(&["list"]);
    assert_eq!(left.as_array().unwrap().len(), 3, "pinned + newest web-0 + other-0: {left}");
    env.ok(&["check", "--read-data"]);
    let target = env.dir.path().join("r");
    env.ok(&["restore", pinned["id"].as_str().unwrap(), target.to_str().unwrap()]);
    assert!(!target.join("counter").exists());
}

#[test]
fn locked_snapshots_survive_forget_prune_and_force() {
    let env = Env::new();
    let vol = env.volume("vol");
    let v = vol.to_str().unwrap();
    let compliance = env.json(&["create", v, "--claim", "web-0", "--lock", "compliance", "--lock-for", "1h"]);
    let governance = env.json(&["create", v, "--claim", "web-0", "--lock", "governance", "--lock-for", "1h"]);
    for i in 0..2 {
        fs::write(vol.join("counter"), i.to_string()).unwrap();
        env.ok(&["create", v, "--claim", "web-0"]);
    }
    let (c, g) = (compliance["id"].as_str().unwrap(), governance["id"].as_str().unwrap());
    assert_eq!(compliance["lock"]["mode"], "compliance", "{compliance:#}");

    // Retention keeps both locks, and says why.
    let done = env.json(&["forget", "--keep-last", "1", "--prune"]);
    let verdicts = done["plans"]["web-0"].as_array().unwrap();
    let reasons = |id: &str| verdicts.iter().find(|v| v["id"] == id).unwrap()["reasons"].clone();
    assert_eq!(reasons(c)[0], "locked-compliance");
    assert_eq!(reasons(g)[0], "locked-governance");
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 3, "two locked + the newest");

    // By id: refused, with or without --force, for compliance; governance
    // yields to --bypass-governance only.
    for args in [vec!["forget", c], vec!["forget", c, "--force"], vec!["forget", c, "--bypass-governance", "--force"]] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("compliance lock") && err.contains("cannot be lifted"), "{err}");
    }
    let out = env.run(&["forget", g]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bypass-governance"));
    env.ok(&["forget", g, "--bypass-governance"]);
    env.ok(&["prune"]);
    let left: Vec<String> =
        env.json(&["list"]).as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    assert!(left.iter().any(|id| id == c) && !left.iter().any(|id| id == g), "{left:?}");
    // The locked snapshot still restores whole after the prunes.
    let target = env.dir.path().join("r");
    env.ok(&["restore", c, target.to_str().unwrap()]);
    env.ok(&["check", "--read-data"]);
    let out = env.run(&["create", v, "--claim", "web-0", "--lock", "forever"]);
    assert_eq!(out.status.code(), Some(2), "a bad lock mode is a usage error");
}

#[test]
fn errors_are_one_clear_line() {
    let env = Env::new();
    let vol = env.volume("vol");
    // Nothing there yet.
    let out = env.run(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("berth: error:") && err.lines().count() == 1, "{err}");

    env.ok(&["create", vol.to_str().unwrap(), "--claim", "web-0"]);
    let out = env.cmd(&["list"]).env("BERTH_PASSWORD", "wrong").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("password") && err.lines().count() == 1, "{err}");

    let out = env.run(&["create", "/nonexistent/folder", "--claim", "web-0"]);
    assert_eq!(out.status.code(), Some(1));
    let out = env.run(&["create", vol.to_str().unwrap(), "--claim", "Bad,Name"]);
    assert_eq!(out.status.code(), Some(2), "bad claim is a usage error");
    let out = env.run(&["restore", "ffffffff", env.dir.path().join("t").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!env.dir.path().join("t").exists(), "nothing created for a failed restore");
}

#[test]
fn password_comes_from_a_key_file_when_not_given() {
    let env = Env::new();
    let vol = env.volume("vol");
    let run = |args: &[&str]| {
        let out = env.cmd(args).env_remove("BERTH_PASSWORD").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["create", vol.to_str().unwrap(), "--claim", "web-0"]);
    let key = env.state().join("repository.key");
    assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    run(&["list"]);
    // The key file works with restic too.
    let out = Command::new("restic")
        .args(["-r", env.repo().to_str().unwrap(), "--no-cache", "--password-file", key.to_str().unwrap(), "snapshots"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn copy_to_a_second_repository() {
    let env = Env::new();
    let vol = env.volume("vol");
    env.ok(&["create", vol.to_str().unwrap(), "--claim", "web-0"]);
    env.ok(&["create", vol.to_str().unwrap(), "--claim", "db-0"]);
    let second = env.dir.path().join("dr-copy");
    let copied = env.json(&["copy", "--to", second.to_str().unwrap(), "--claim", "web-0"]);
    assert_eq!(copied.as_array().unwrap().len(), 1);
    let again = env.json(&["copy", "--to", second.to_str().unwrap()]);
    assert_eq!(again.as_array().unwrap().len(), 1, "only db-0 is new");
    let listed = env.json(&["list", "--repo", second.to_str().unwrap()]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let web = listed.as_array().unwrap().iter().find(|s| s["claim"] == "web-0").unwrap();
    let target = env.dir.path().join("from-copy");
    env.ok(&["restore", "--repo", second.to_str().unwrap(), web["id"].as_str().unwrap(), target.to_str().unwrap()]);
    assert_eq!(tree(&target), tree(&vol));
}

#[test]
fn damaged_pack_is_reported_by_check_and_restore() {
    let env = Env::new();
    let vol = env.dir.path().join("vol");
    fs::create_dir_all(&vol).unwrap();
    // Incompressible so the pack holds these very bytes.
    let data: Vec<u8> = (0..2_000_000u64).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    fs::write(vol.join("data.bin"), &data).unwrap();
    let snap = env.json(&["create", vol.to_str().unwrap(), "--claim", "web-0"]);
    let id = snap["id"].as_str().unwrap();
    // Flip bytes in the middle of the largest pack file.
    let mut packs: Vec<PathBuf> = Vec::new();
    for sub in fs::read_dir(env.repo().join("data")).unwrap() {
        for f in fs::read_dir(sub.unwrap().path()).unwrap() {
            packs.push(f.unwrap().path());
        }
    }
    packs.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let victim = packs.last().unwrap();
    let mut bytes = fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xff;
    }
    fs::write(victim, bytes).unwrap();

    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let target = env.dir.path().join("t");
    let out = env.run(&["restore", id, target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&id[..8]), "the error names the snapshot: {err}");
    assert!(!target.exists(), "no half-restored target");
}

/// Issue 20, defect 4: with every pack overwritten by random bytes,
/// `berth snapshot check` printed rustic_core's tree loaders' `SendError`
/// panics before its (correct) summary. It reports the damage, and only that.
#[test]
fn check_of_packs_overwritten_with_random_bytes_reports_without_a_panic() {
    let env = Env::new();
    let vol = env.dir.path().join("vol");
    // Many snapshots of different trees: their roots are loaded at once,
    // so the loader threads are busy when the first damaged one ends the check.
    for n in 0..12 {
        for i in 0..10 {
            let dir = vol.join(format!("d{i}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("f"), format!("file {i} of snapshot {n}")).unwrap();
        }
        env.ok(&["create", vol.to_str().unwrap(), "--claim", &format!("web-{n}")]);
    }
    let mut rng = fastrand::Rng::with_seed(4);
    for sub in fs::read_dir(env.repo().join("data")).unwrap() {
        for f in fs::read_dir(sub.unwrap().path()).unwrap() {
            let path = f.unwrap().path();
            let mut junk = vec![0u8; fs::metadata(&path).unwrap().len() as usize];
            rng.fill(&mut junk);
            fs::write(&path, junk).unwrap();
        }
    }
    for args in [&["check"][..], &["check", "--read-data"][..]] {
        let out = env.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("SendError"), "{args:?}: {err}");
    }
}

/// A restore onto a full disk (a 1 MiB tmpfs) fails with one line and
/// leaves nothing behind: no target, no staging folder.
#[test]
fn restore_onto_a_full_disk_leaves_nothing() {
    let env = Env::new();
    let vol = env.dir.path().join("vol");
    fs::create_dir_all(&vol).unwrap();
    let data: Vec<u8> = (0..3_000_000u64).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    fs::write(vol.join("big"), data).unwrap();
    let snap = env.json(&["create", vol.to_str().unwrap(), "--claim", "web-0"]);
    let disk = SmallDisk::mount();
    let mnt = disk.path();
    let target = mnt.join("restored");
    let out = env.run(&["restore", snap["id"].as_str().unwrap(), target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().count() == 1 && err.contains("space"), "{err}");
    let left: Vec<_> = fs::read_dir(mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "nothing half-written: {left:?}");
}

#[test]
fn concurrent_snapshots_of_two_claims() {
    let env = Env::new();
    let a = env.volume("a");
    let b = env.volume("b");
    env.ok(&["create", a.to_str().unwrap(), "--claim", "init-0"]); // create the repository first
    let mut ca = env.cmd(&["create", a.to_str().unwrap(), "--claim", "web-0"]).spawn().unwrap();
    let mut cb = env.cmd(&["create", b.to_str().unwrap(), "--claim", "web-1"]).spawn().unwrap();
    assert!(ca.wait().unwrap().success());
    assert!(cb.wait().unwrap().success());
    let listed = env.json(&["list"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    env.ok(&["check"]);
}

#[test]
fn kill_9_during_create_leaves_a_checkable_repository() {
    let env = Env::new();
    let vol = env.dir.path().join("vol");
    fs::create_dir_all(&vol).unwrap();
    env.ok(&["create", vol.to_str().unwrap(), "--claim", "web-0"]);
    for i in 0..8 {
        let data: Vec<u8> = (0..8_000_000u64).map(|j| ((j + i).wrapping_mul(2654435761) >> 11) as u8).collect();
        fs::write(vol.join(format!("f{i}")), data).unwrap();
    }
    let mut child = env.cmd(&["create", vol.to_str().unwrap(), "--claim", "web-0"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    env.ok(&["check"]);
    env.ok(&["create", vol.to_str().unwrap(), "--claim", "web-0"]);
    env.ok(&["check", "--read-data"]);
    assert!(env.json(&["list"]).as_array().unwrap().len() >= 2);
}

#[test]
fn kill_9_during_forget_and_prune_leaves_a_checkable_repository() {
    let env = Env::new();
    let vol = env.dir.path().join("vol");
    fs::create_dir_all(&vol).unwrap();
    for round in 0..4u64 {
        let data: Vec<u8> = (0..4_000_000u64).map(|j| ((j + round * 7).wrapping_mul(2654435761) >> 11) as u8).collect();
        fs::write(vol.join("data"), data).unwrap();
        env.ok(&["create", vol.to_str().unwrap(), "--claim", "web-0"]);
    }
    for args in [&["forget", "--keep-last", "2"][..], &["prune"][..]] {
        let mut child = env.cmd(args).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150));
        let _ = child.kill();
        let _ = child.wait();
        env.ok(&["check"]);
    }
    env.ok(&["forget", "--keep-last", "2", "--prune"]);
    env.ok(&["check", "--read-data"]);
    env.ok(&["create", vol.to_str().unwrap(), "--claim", "web-0"]);
    let newest = env.json(&["list"]).as_array().unwrap().last().unwrap()["id"].as_str().unwrap().to_owned();
    let target = env.dir.path().join("t");
    env.ok(&["restore", &newest, target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("data")).unwrap(), fs::read(vol.join("data")).unwrap());
}

#[test]
fn volume_commands_adopt_or_restore() {
    let env = Env::new();
    let vjson = |args: &[&str]| -> Value {
        let out = Command::new(BERTH)
            .arg("volume")
            .args(args)
            .arg("--json")
            .env("BERTH_STATE", env.state())
            .env("BERTH_PASSWORD", "correct horse")
            .output()
            .unwrap();
        assert!(out.status.success(), "berth volume {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v1 = vjson(&["create", "--claim", "web-0", "--generation", "1"]);
    let loc1 = PathBuf::from(v1["location"].as_str().unwrap());
    fs::write(loc1.join("doc"), "v1 data").unwrap();
    let s1 = vjson(&["snapshot", v1["id"].as_str().unwrap()]);
    assert_eq!(s1["kind"], "on-stop");
    assert_eq!(s1["generation"], 1);
    let v2 = vjson(&[
        "create",
        "--claim",
        "web-0",
        "--generation",
        "2",
        "--from",
        s1["id"].as_str().unwrap(),
        "--adopt",
        v1["id"].as_str().unwrap(),
    ]);
    assert_eq!(v2["adopted_from"], v1["id"]);
    let loc2 = PathBuf::from(v2["location"].as_str().unwrap());
    assert_eq!(fs::read_to_string(loc2.join("doc")).unwrap(), "v1 data");
    // Touched after its snapshot: the next generation is restored instead.
    let s2 = vjson(&["snapshot", v2["id"].as_str().unwrap()]);
    fs::write(loc2.join("doc"), "unsnapshotted").unwrap();
    let v3 = vjson(&[
        "create",
        "--claim",
        "web-0",
        "--from",
        s2["id"].as_str().unwrap(),
        "--adopt",
        v2["id"].as_str().unwrap(),
    ]);
    assert!(v3["adopted_from"].is_null());
    assert_eq!(fs::read_to_string(PathBuf::from(v3["location"].as_str().unwrap()).join("doc")).unwrap(), "v1 data");
    let list = vjson(&["list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    vjson(&["delete", v2["id"].as_str().unwrap()]);
    assert_eq!(vjson(&["list"]).as_array().unwrap().len(), 1);
}
