//! A lost ledger (issue 20, defect 1): `berth up` refuses a deleted or
//! emptied ledger beside volumes and snapshots, `berth ledger rebuild`
//! writes it back from them, and no acknowledged upload is lost on the way
//! or at the handoffs after it.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::site::*;
use crate::util::BERTH;

/// `berth ledger ARGS` on the site's state folder and configuration.
fn ledger(site: &Site, args: &[&str]) -> Output {
    Command::new(BERTH)
        .arg("ledger")
        .args(args)
        .arg("--state")
        .arg(&site.state)
        .arg("--config")
        .arg(&site.config)
        .env_remove("BERTH_STATE")
        .env_remove("BERTH_CONFIG")
        .env("BERTH_PASSWORD", "test")
        .stdin(Stdio::null())
        .output()
        .expect("run berth ledger")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `berth up` on a ledger behind its stores exits at once, says so in one
/// line naming the command that rebuilds it, and touches no volume.
fn assert_refused(site: &Site, volumes_before: &[String]) {
    let mut up = site.up(&[]);
    let status = up.wait_exit(DEADLINE);
    let log = std::fs::read_to_string(&up.log).unwrap();
    assert!(!status.success(), "berth up must refuse a lost ledger: {status:?}\n{log}");
    let line = log.lines().find(|l| l.contains("berth: error:")).unwrap_or_else(|| panic!("no error line:\n{log}"));
    assert!(line.contains("the ledger is empty") && line.contains("berth ledger rebuild"), "{line}");
    assert!(line.contains("files-0 at generation") && line.contains("files-1 at generation"), "{line}");
    assert_eq!(site.volume_dirs(), volumes_before, "no volume may be made or deleted");
}

/// Checks, plans, rebuilds; then `berth up` brings both claims back with
/// `files` (one map per claim) and returns it running.
fn rebuild_and_up(site: &Site, files: &[&BTreeMap<String, Vec<u8>>; 2]) -> Up {
    let check = ledger(site, &["check"]);
    assert!(!check.status.success(), "check must fail on a lost ledger: {}", stdout(&check));
    assert!(stdout(&check).contains("the ledger is empty"), "{}", stdout(&check));

    let dry = ledger(site, &["rebuild", "--dry-run", "--json"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan["dry_run"], true);
    let planned: Vec<&str> = plan["claims"].as_array().unwrap().iter().map(|c| c["claim"].as_str().unwrap()).collect();
    assert_eq!(planned, ["files-0", "files-1"], "{plan:#}");
    for c in plan["claims"].as_array().unwrap() {
        assert!(c["volume"].is_string(), "each claim comes back on its volume: {plan:#}");
    }
    assert!(!ledger(site, &["check"]).status.success(), "a dry run writes nothing");

    let done = ledger(site, &["rebuild"]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(stdout(&done).contains("rebuilt files-0"), "{}", stdout(&done));
    let check = ledger(site, &["check"]);
    assert!(check.status.success(), "{}{}", stdout(&check), stderr(&check));

    let up = site.up(&[]);
    for (claim, files) in ["files-0", "files-1"].iter().zip(files) {
        let t = site.wait_serving(claim, None);
        assert_files(&endpoint(&t), files);
    }
    up
}

#[test]
fn a_deleted_or_emptied_ledger_loses_no_acknowledged_upload() {
    let site = Site::new(TWO_CLAIMS);
    let mut up = site.up(&[]);
    let t0 = site.wait_serving("files-0", Some(1));
    let t1 = site.wait_serving("files-1", Some(1));
    let mut files0 = random_files("zero", &[200 * 1024, 10]);
    let files1 = random_files("one", &[300 * 1024, 1]);
    upload(&endpoint(&t0), &files0);
    upload(&endpoint(&t1), &files1);
    site.ok(&["down"]);
    assert_eq!(up.wait_exit(DEADLINE).code(), Some(0));
    drop(up);

    // Deleted: the ledger and its journal files are gone.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(site.state.join(format!("ledger.sqlite{suffix}")));
    }
    let volumes = site.volume_dirs();
    assert_eq!(volumes.len(), 2, "{volumes:?}");
    assert_refused(&site, &volumes);
    let mut up = rebuild_and_up(&site, &[&files0, &files1]);

    // New uploads are acknowledged, then a Spot stop of files-0: its stop
    // snapshot must be this generation's, not the old ledger's snapshot
    // of the same number, so the replacement holds old and new files.
    let t0 = site.wait_serving("files-0", None);
    let generation = t0["generation"].as_u64().unwrap();
    let new0 = random_files("after-rebuild", &[100 * 1024, 5, 7]);
    upload(&endpoint(&t0), &new0);
    files0.extend(new0);
    site.ok(&["stop-task", t0["arn"].as_str().unwrap(), "--reason", "spot"]);
    let t0 = site.wait_serving("files-0", Some(generation + 1));
    assert_files(&endpoint(&t0), &files0);
    site.ok(&["down"]);
    assert_eq!(up.wait_exit(DEADLINE).code(), Some(0));
    drop(up);

    // Emptied: truncated to 0 bytes, which SQLite opens as a new database.
    std::fs::File::create(site.state.join("ledger.sqlite")).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(site.state.join(format!("ledger.sqlite{suffix}")));
    }
    let volumes = site.volume_dirs();
    assert_refused(&site, &volumes);
    let _up = rebuild_and_up(&site, &[&files0, &files1]);
}

/// A `berth up` on `site` that must refuse to start: its exit and log.
fn refused_start(site: &Site) -> String {
    let mut up = site.up(&[]);
    let status = up.wait_exit(DEADLINE);
    assert!(!status.success(), "berth up started on damaged state");
    std::fs::read_to_string(&up.log).unwrap()
}

/// A site that ran once and went down cleanly: a ledger, a repository
/// with stop snapshots, volumes.
fn ran_once() -> Site {
    let site = Site::new(ONE_CLAIM);
    let mut up = site.up(&[]);
    site.wait_serving("files-0", Some(1));
    site.ok(&["down"]);
    assert!(up.wait_exit(DEADLINE).success());
    site
}

#[test]
fn a_damaged_ledgers_error_says_its_damage_once() {
    let site = ran_once();
    // Four pages of garbage in the middle of the file, as a bad disk would.
    let path = site.state.join("ledger.sqlite");
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 7 * 4096, "a ledger of a few pages");
    for b in &mut bytes[3 * 4096..7 * 4096] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    std::fs::write(&path, bytes).unwrap();
    let log = refused_start(&site);
    let line = log.lines().find(|l| l.contains("berth: error:")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("berth ledger rebuild"), "one line, naming the way out: {line}");
    assert_eq!(line.matches("ledger is damaged").count(), 1, "said once: {line}");
}

#[test]
fn a_damaged_repository_config_is_reported_as_damage_not_as_something_to_retry() {
    let site = ran_once();
    std::fs::write(site.state.join("repository/config"), b"not a config").unwrap();
    let log = refused_start(&site);
    let line = log.lines().find(|l| l.contains("berth: error:")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("config file of the snapshot repository") && line.contains("is damaged"), "{line}");
    assert!(!line.contains("retry"), "no retry reads a damaged file: {line}");
    assert_eq!(line.matches("is damaged").count(), 1, "said once: {line}");
}
