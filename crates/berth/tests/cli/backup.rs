//! Backups and disaster recovery end to end: scheduled snapshots under a
//! short schedule, point-in-time restores (from the primary and from a
//! replica), quiesced snapshots that never hold a torn upload, DR drills
//! after the primary repository is deleted, and restore verification
//! finding a damaged pack in a replica. Real `berth up`, real `berth serve`
//! tasks, real repositories.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::site::*;
use crate::util::{client, sha256, BERTH};

/// One claim of `berth serve`, backed up every `interval` into the state
/// folder's repository and copied to the replica `dr` at `replica`.
fn backed_up(count: u32, interval: &str, replica: &Path, extra: &str) -> String {
    format!(
        r#"
[[service]]
name = "files"
desired_count = {count}
stop_timeout = "5s"

[service.health_check]
interval = "300ms"
timeout = "2s"
retries = 2
start_period = "3s"

[service.autoscaling]
enabled = false

[service.backup]
interval = "{interval}"
quiesce_timeout = "10s"
{extra}

[service.backup.objectives]
rpo = "30s"
rto = "60s"

[[service.backup.replica]]
name = "dr"
repo = "{}"
"#,
        replica.display()
    )
}

/// The names the task at `endpoint` lists.
fn listed(endpoint: &str) -> BTreeSet<String> {
    let list: Value = client()
        .get(format!("http://{endpoint}/files"))
        .header(LOCAL_SCOPE.0, LOCAL_SCOPE.1)
        .send()
        .unwrap()
        .json()
        .unwrap();
    list["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_owned()).collect()
}

/// The claim's line of `berth backup status`.
fn status_of(site: &Site, claim: &str) -> Option<Value> {
    site.try_json(&["backup", "status"])?.as_array()?.iter().find(|c| c["claim"] == claim).cloned()
}

/// Waits for a scheduled snapshot of `claim` newer than `after` (RFC 3339)
/// that the replica `dr` has too; returns the snapshot line.
fn wait_backed_up(site: &Site, claim: &str, after: &str) -> Value {
    site.wait_until(&format!("a scheduled snapshot of {claim} after {after}, replicated"), || {
        let c = status_of(site, claim)?;
        let newest = c["newest_snapshot"].clone();
        let time = newest["time"].as_str()?;
        let replica_newest = c["replicas"]["dr"]["state"]["replica_newest"].as_str()?;
        (newest["kind"] == "scheduled" && time > after && replica_newest >= time).then_some(newest)
    })
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[test]
fn scheduled_snapshots_restore_to_each_point_from_the_primary_and_the_replica() {
    let site_dir = tempfile::tempdir().unwrap();
    let replica = site_dir.path().join("dr-repo");
    let lock = "[service.backup.lock]\nmode = \"governance\"\nduration = \"1h\"\n";
    let site = Site::new(&backed_up(1, "2s", &replica, lock));
    let _up = site.up(&[]);
    let t = site.wait_serving("files-0", Some(1));

    // Write data over time; after each write, wait for the schedule to
    // take a snapshot, and remember what the volume held at that point.
    let mut points: Vec<(String, BTreeSet<String>)> = Vec::new();
    let mut all = BTreeMap::new();
    for i in 0..3 {
        let files = random_files(&format!("p{i}"), &[100_000 + i * 1000, 5000]);
        upload(&endpoint(&t), &files);
        all.extend(files);
        let snap = wait_backed_up(&site, "files-0", &now_rfc3339());
        assert_eq!(snap["consistency"], "application", "berth serve quiesces for a scheduled snapshot: {snap:#}");
        points.push((snap["time"].as_str().unwrap().to_owned(), listed(&endpoint(&t))));
    }
    assert_eq!(points.last().unwrap().1.len(), 6);

    // The schedule's snapshots carry their kind, consistency and lock as restic tags.
    let repo = site.state.join("repository");
    let snaps = snapshot_list(&repo);
    let scheduled: Vec<&Value> = snaps.iter().filter(|s| s["kind"] == "scheduled").collect();
    assert!(scheduled.len() >= 3, "{snaps:#?}");
    assert!(scheduled.iter().all(|s| s["lock"]["mode"] == "governance"), "{scheduled:#?}");
    assert!(scheduled.iter().all(|s| s["tags"].as_array().unwrap().iter().any(|t| t == "consistency=application")));

    // Back to each point in turn: exactly that point's files.
    for (i, (time, want)) in points.iter().enumerate() {
        let generation = site.claim("files-0")["generation"].as_u64().unwrap();
        site.ok(&["restore", "files-0", "--at", time]);
        let t = site.wait_serving("files-0", Some(generation + 1));
        assert_eq!(&listed(&endpoint(&t)), want, "point {i} at {time}");
        for name in want {
            let body = client()
                .get(format!("http://{}/download/{name}", endpoint(&t)))
                .header(LOCAL_SCOPE.0, LOCAL_SCOPE.1)
                .send()
                .unwrap()
                .bytes()
                .unwrap();
            assert_eq!(sha256(&body), sha256(&all[name]), "{name} at point {i}");
        }
    }

    // The same from the replica: the first point.
    let generation = site.claim("files-0")["generation"].as_u64().unwrap();
    let restored = site.json(&["restore", "files-0", "--at", &points[0].0, "--from", "dr"]);
    assert!(restored["snapshot"].is_string(), "{restored:#}");
    let t = site.wait_serving("files-0", Some(generation + 1));
    assert_eq!(listed(&endpoint(&t)), points[0].1, "point 0 from the replica");

    // A fork at the second point: a new claim with that point's files,
    // the original left running on its generation.
    let before = site.claim("files-0");
    let forked = site.json(&["fork", "files-0", "--at", &points[1].0, "files-0-fork"]);
    assert_eq!(forked["fork_of"], "files-0", "{forked:#}");
    let f = site.wait_serving("files-0-fork", Some(1));
    assert_eq!(listed(&endpoint(&f)), points[1].1, "the fork holds point 1");
    let after = site.claim("files-0");
    assert_eq!((&after["generation"], &after["task"]), (&before["generation"], &before["task"]), "original untouched");
    assert_eq!(site.claim("files-0-fork")["fork_of"], "files-0");
    let out = site.cli(&["fork", "files-0", "--at", &points[1].0, "files-0-fork"]);
    assert!(!out.status.success() && stderr(&out).contains("exists already"), "{}", stderr(&out));

    // A replica that is not configured is one clear error.
    let out = site.cli(&["restore", "files-0", "--at", &points[0].0, "--from", "nowhere"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no replica nowhere"), "{}", stderr(&out));
}

/// `berth snapshot list --json` of a repository (password `test`).
fn snapshot_list(repo: &Path) -> Vec<Value> {
    let out = std::process::Command::new(BERTH)
        .args(["snapshot", "list", "--json", "--repo"])
        .arg(repo)
        .env("BERTH_PASSWORD", "test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

/// A request body that trickles `data` out in small pieces, so an upload
/// stays in flight for a while.
struct Slow {
    data: Vec<u8>,
    at: usize,
}

impl Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.data.len() {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(15));
        let n = buf.len().min(16 * 1024).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Content derived from the name, so a restored file can be checked alone.
fn content_of(name: &str, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(sha256(name.as_bytes()).bytes().map(u64::from).sum());
    let mut data = vec![0u8; len];
    rng.fill(&mut data);
    data
}

#[test]
fn quiesced_snapshots_hold_uploads_whole_or_not_at_all() {
    let site_dir = tempfile::tempdir().unwrap();
    let replica = site_dir.path().join("dr-repo");
    // A long interval: the test takes its snapshots with `berth backup now`.
    let site = Site::new(&backed_up(1, "1h", &replica, ""));
    let _up = site.up(&[]);
    let t = site.wait_serving("files-0", Some(1));
    let ep = endpoint(&t);

    // Two writers upload slowly (about a second each) without pause.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (stop, ep) = (Arc::clone(&stop), ep.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("w{w}-{n}.bin");
                    let data = content_of(&name, 1_000_000);
                    let r = client()
                        .put(format!("http://{ep}/files/{name}"))
                        .header(LOCAL_SCOPE.0, LOCAL_SCOPE.1)
                        .body(reqwest::blocking::Body::new(Slow { data, at: 0 }))
                        .send()
                        .unwrap();
                    assert!(r.status().is_success(), "upload {name}: {}", r.status());
                    n += 1;
                }
                n
            })
        })
        .collect();

    let mut ids = Vec::new();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(700));
        let outcome = site.json(&["backup", "now", "files-0"]);
        assert_eq!(outcome["consistency"], "application", "{outcome:#}");
        ids.push(outcome["snapshot"].as_str().unwrap().to_owned());
    }
    stop.store(true, Ordering::SeqCst);
    let uploaded: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(uploaded >= 4, "the writers kept uploading during the snapshots ({uploaded})");

    // Every file in every snapshot is a whole upload; nothing else is there
    // (no temporary file of an upload in flight).
    let repo = site.state.join("repository");
    for id in &ids {
        let target = site_dir.path().join(format!("restore-{id}"));
        let out = std::process::Command::new(BERTH)
            .args(["snapshot", "restore", id])
            .arg(&target)
            .arg("--repo")
            .arg(&repo)
            .env("BERTH_PASSWORD", "test")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        for (path, data) in files_under(&target) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if is_service_metadata(&target, &path) {
                continue;
            }
            assert!(name.starts_with('w') && name.ends_with(".bin"), "snapshot {id} holds a stray {path:?}");
            assert_eq!(data.len(), 1_000_000, "snapshot {id}: {name} is torn");
            assert_eq!(sha256(&data), sha256(&content_of(&name, 1_000_000)), "snapshot {id}: {name} differs");
        }
    }
}

/// Files the file service keeps for itself beside the uploads (its health
/// probe). An upload's temporary file (`.berth-tmp-…`) is not one of them:
/// finding one in a snapshot is what this test is about.
fn is_service_metadata(root: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix(root).unwrap();
    let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
    first.starts_with(".berth") && !first.starts_with(".berth-tmp-")
}

fn files_under(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

#[test]
fn a_drill_recovers_every_claim_from_the_replica_when_the_primary_is_gone_and_damage_is_caught() {
    let site_dir = tempfile::tempdir().unwrap();
    let replica = site_dir.path().join("dr-repo");
    let site = Site::new(&backed_up(2, "1s", &replica, ""));
    let _up = site.up(&[]);
    let mut data = BTreeMap::new();
    for claim in ["files-0", "files-1"] {
        let t = site.wait_serving(claim, Some(1));
        let files = random_files(claim, &[300_000, 2000]);
        upload(&endpoint(&t), &files);
        data.insert(claim, files);
    }
    for claim in ["files-0", "files-1"] {
        wait_backed_up(&site, claim, &now_rfc3339());
    }
    let lag: f64 = ["files-0", "files-1"]
        .iter()
        .map(|c| status_of(&site, c).unwrap()["replicas"]["dr"]["state"]["lag"].as_f64().unwrap())
        .fold(0.0, f64::max);

    // The primary repository is lost.
    std::fs::remove_dir_all(site.state.join("repository")).unwrap();

    for claim in ["files-0", "files-1"] {
        let out = site.cli(&["dr", "drill", claim, "--json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert!(out.status.success(), "drill of {claim}: {}\n{report:#}\n{}", stderr(&out), site.diagnostics());
        assert_eq!(report["source"], "dr");
        assert_eq!(report["passed"], true, "{report:#}");
        assert_eq!(report["healthy"], true, "{report:#}");
        let files = &data[claim];
        let bytes: usize = files.values().map(Vec::len).sum();
        assert!(report["files"].as_u64().unwrap() >= files.len() as u64, "{report:#}");
        assert!(report["bytes"].as_u64().unwrap() >= bytes as u64, "{report:#}");
        // Measured RPO: no more than the backup interval plus the
        // replication lag, plus the time since the last snapshot that
        // this test spent (each snapshot after the primary is gone fails).
        let rpo = report["rpo_seconds"].as_f64().unwrap();
        let since_delete = report["started_at"].as_str().unwrap().to_owned();
        assert!(report["rto_seconds"].as_f64().unwrap() > 0.0);
        assert!(rpo >= 0.0 && rpo < 1.0 + lag + 30.0, "RPO {rpo} s (lag {lag} s) at {since_delete}");
        assert_eq!(report["verdicts"]["rto_met"], true, "{report:#}");
    }
    let report = site.json(&["dr", "report"]);
    assert!(report.as_array().unwrap().iter().all(|c| c["last_drill"]["passed"] == true), "{report:#}");

    // A damaged pack in the replica: verification says which claim and snapshot.
    damage_packs(&replica);
    let out = site.cli(&["backup", "verify", "files-0", "--from", "dr", "--json"]);
    assert!(!out.status.success(), "verification of a damaged replica must fail");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = report["error"].as_str().unwrap_or_default();
    let snapshot = report["snapshot"].as_str().unwrap_or_default();
    assert!(error.contains("files-0"), "{report:#}");
    assert!(error.contains("damaged"), "{report:#}");
    let newest = status_of(&site, "files-0").unwrap()["replicas"]["dr"]["state"]["replica_newest"].clone();
    assert!(
        snapshot.is_empty() || error.contains(&snapshot[..8]),
        "the error names the snapshot: {report:#} ({newest})"
    );
    let out = site.cli(&["doctor"]);
    assert!(!out.status.success(), "doctor reports the failed verification");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("files-0") && text.contains("verification failed"), "{text}");
}

/// Overwrites bytes in the middle of every pack file of the replica, so
/// whatever a restore reads first is damaged.
fn damage_packs(repo: &Path) {
    let packs: Vec<(PathBuf, Vec<u8>)> = files_under(&repo.join("data"));
    assert!(!packs.is_empty(), "the replica has packs");
    for (path, mut bytes) in packs {
        let mid = bytes.len() / 2;
        let end = (mid + 64).min(bytes.len());
        for b in &mut bytes[mid..end] {
            *b ^= 0xff;
        }
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&path, perms).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
}

/// The admin API's `/v1/metrics`, with the state folder's token.
fn metrics(site: &Site) -> String {
    let info: Value = serde_json::from_slice(&std::fs::read(site.state.join("admin.json")).unwrap()).unwrap();
    let token = std::fs::read_to_string(site.state.join("admin.token")).unwrap();
    let url = format!("{}/v1/metrics", info["url"].as_str().unwrap().trim_end_matches('/'));
    let r = client().get(url).bearer_auth(token.trim()).send().unwrap();
    assert_eq!(r.status(), 200);
    r.text().unwrap()
}

#[test]
fn scheduled_verification_passes_then_catches_a_damaged_primary_in_doctor_events_and_metrics() {
    let site_dir = tempfile::tempdir().unwrap();
    let replica = site_dir.path().join("dr-repo");
    let site = Site::new(&backed_up(1, "1s", &replica, "verify_interval = \"2s\""));
    let _up = site.up(&[]);
    let t = site.wait_serving("files-0", Some(1));
    upload(&endpoint(&t), &random_files("v", &[50_000]));
    wait_backed_up(&site, "files-0", &now_rfc3339());
    site.wait_until("a passed scheduled verification", || {
        let c = status_of(&site, "files-0")?;
        (c["verification"]["status"] == "verified").then_some(())
    });
    let out = site.cli(&["doctor"]);
    assert!(out.status.success(), "doctor: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let text = metrics(&site);
    assert!(text.contains("berth_restore_verified{claim=\"files-0\",service=\"files\"} 1"), "{text}");
    assert!(
        text.contains("berth_replication_lag_seconds{claim=\"files-0\",service=\"files\",replica=\"dr\"}"),
        "{text}"
    );

    // Damage the primary: the next scheduled verification fails, and says where.
    damage_packs(&site.state.join("repository"));
    site.wait_until("a failed scheduled verification", || {
        let c = status_of(&site, "files-0")?;
        (c["verification"]["status"] == "failed").then_some(())
    });
    let out = site.cli(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "doctor fails while a verification failed");
    let events = site.json(&["events"]);
    let failed = events.as_array().unwrap().iter().find(|e| e["kind"] == "restore-verify-failed");
    let failed = failed.unwrap_or_else(|| panic!("no restore-verify-failed event in {events:#}"));
    assert!(failed["message"].as_str().unwrap().contains("damaged"), "{failed:#}");
    assert!(metrics(&site).contains("berth_restore_verified{claim=\"files-0\",service=\"files\"} 0"));
}

/// Issue 20, defect 9: `berth down` ended before its last stop snapshots
/// reached the replicas, so losing the primary after a clean stop lost the
/// last writes. They are copied before berth up exits.
#[test]
fn the_last_stop_snapshots_reach_the_replica_before_berth_down_ends() {
    let site_dir = tempfile::tempdir().unwrap();
    let replica = site_dir.path().join("dr-repo");
    let site = Site::new(&backed_up(1, "1h", &replica, ""));
    let mut up = site.up(&[]);
    let t = site.wait_serving("files-0", Some(1));
    upload(&endpoint(&t), &random_files("last", &[10_000]));
    site.ok(&["down"]);
    assert_eq!(up.wait_exit(DEADLINE).code(), Some(0), "{}", tail(&up.log, 20));
    let out = std::process::Command::new(BERTH)
        .args(["snapshot", "list", "--json", "--repo"])
        .arg(&replica)
        .arg("--state")
        .arg(&site.state)
        .env("BERTH_PASSWORD", "test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stop = listed.as_array().unwrap().iter().find(|s| s["claim"] == "files-0" && s["kind"] == "on-stop");
    assert!(stop.is_some_and(|s| s["generation"] == 1), "the replica has generation 1's stop snapshot: {listed:#}");
}

/// The first stop after a large write read every byte written since the
/// last snapshot (3.97 s at 1 GiB). With background snapshots the stop
/// snapshot takes the newest as its parent and reads only what changed
/// since; only the newest background snapshot is kept.
#[test]
fn background_snapshots_leave_the_stop_snapshot_only_what_changed_since() {
    let site =
        Site::new(&ONE_CLAIM.replace("stop_timeout = \"5s\"", "stop_timeout = \"5s\"\nbackground_snapshots = \"1s\""));
    let _up = site.up(&[]);
    let t = site.wait_serving("files-0", Some(1));
    let files = random_files("bg", &[3 << 20, 1000, 70_000]);
    upload(&endpoint(&t), &files);
    let snapshots = || {
        let out = std::process::Command::new(BERTH)
            .args(["snapshot", "list", "--json", "--state"])
            .arg(&site.state)
            .env("BERTH_PASSWORD", "test")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    };
    let background =
        |list: &[Value]| -> Vec<Value> { list.iter().filter(|s| s["kind"] == "background").cloned().collect() };
    // A background snapshot holds the upload; an unchanged volume gets no
    // new one, and older ones are forgotten.
    let holding = site.wait_until("a background snapshot holding the upload", || {
        background(&snapshots()).into_iter().find(|s| s["files"].as_u64() == Some(files.len() as u64))
    });
    let more = random_files("bg2", &[5000]);
    upload(&endpoint(&t), &more);
    let newer = site.wait_until("a background snapshot holding the second upload", || {
        background(&snapshots()).into_iter().find(|s| s["files"].as_u64() == Some(4))
    });
    assert_eq!(newer["parent"], holding["id"], "{newer:#}");
    let list = snapshots();
    assert_eq!(background(&list).len(), 1, "only the newest background snapshot is kept: {list:#?}");

    site.ok(&["stop-task", t["arn"].as_str().unwrap(), "--reason", "spot"]);
    let t2 = site.wait_serving("files-0", Some(2));
    let mut all = files.clone();
    all.extend(more);
    assert_files(&endpoint(&t2), &all);
    let list = snapshots();
    let stop = list
        .iter()
        .find(|s| s["kind"] == "on-stop" && s["generation"] == 1)
        .unwrap_or_else(|| panic!("the stop snapshot of generation 1: {list:#?}"));
    // The volume did not change after the newest background snapshot, so
    // the stop snapshot read none of its files again.
    let parent = list.iter().find(|s| s["id"] == stop["parent"]).expect("the stop snapshot's parent is listed");
    assert_eq!(parent["kind"], "background", "{stop:#}");
    assert_eq!(stop["files_unmodified"], 4, "{stop:#}");
}
