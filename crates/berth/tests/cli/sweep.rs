//! `berth sweep`: the plan first (`--dry-run`), each volume's verdict with
//! its reason, and only volumes the ledger saw die deleted.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::site::*;
use crate::util::BERTH;

/// `berth volume ARGS --json` on the site's state folder.
fn volume(site: &Site, args: &[&str]) -> Value {
    let out = Command::new(BERTH)
        .arg("volume")
        .args(args)
        .args(["--json", "--state"])
        .arg(&site.state)
        .env_remove("BERTH_STATE")
        .env("BERTH_PASSWORD", "test")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "berth volume {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn sweep_plans_first_and_deletes_only_volumes_the_ledger_saw_die() {
    let site = Site::new(ONE_CLAIM);
    let _up = site.up(&[]);
    site.wait_serving("files-0", Some(1));
    // Two volumes no claim references, as a crash between steps leaves
    // them: one whose data a stop snapshot of it holds, one no snapshot holds.
    let saved =
        volume(&site, &["create", "--claim", "files-0", "--generation", "1"])["id"].as_str().unwrap().to_owned();
    let unsaved =
        volume(&site, &["create", "--claim", "files-0", "--generation", "1"])["id"].as_str().unwrap().to_owned();
    volume(&site, &["snapshot", &saved, "--generation", "1"]);

    // Past the grace period, the plan names the unsaved one as kept, with why.
    let plan = site.wait_until("the sweep to plan the unsaved volume", || {
        let plan = site.json(&["sweep", "--dry-run"]);
        let listed = plan["volumes"].as_array()?.iter().any(|v| v["id"] == unsaved.as_str());
        listed.then_some(plan)
    });
    let of = |id: &str| plan["volumes"].as_array().unwrap().iter().find(|v| v["id"] == id).cloned();
    let kept = of(&unsaved).unwrap();
    assert_eq!(kept["deletes"], false, "{plan:#}");
    assert_eq!(kept["reason"], "kept: no stop snapshot of it holds its data", "{plan:#}");
    assert_eq!(kept["claim"], "files-0");
    if let Some(doomed) = of(&saved) {
        assert_eq!(doomed["deletes"], true, "{plan:#}");
        assert!(doomed["reason"].as_str().unwrap().starts_with("its data is in stop snapshot"), "{plan:#}");
    }
    assert!(site.volume_dirs().contains(&unsaved), "a dry run deletes nothing");

    // The resync's sweep deletes the saved one and says why; a sweep now
    // deletes nothing more and keeps the unsaved one.
    site.wait_until("the saved volume to be swept", || (!site.volume_dirs().contains(&saved)).then_some(()));
    let events = site.json(&["events"]);
    let line = format!("deleted orphaned volume {saved}: its data is in stop snapshot");
    assert!(
        events.as_array().unwrap().iter().any(|e| e["message"].as_str().is_some_and(|m| m.starts_with(&line))),
        "{events:#}"
    );
    let now = site.json(&["sweep"]);
    assert_eq!(now["deleted"]["volumes"], 0, "{now:#}");
    assert_eq!(now["totals"]["volumes_kept"], 1, "{now:#}");
    assert!(site.volume_dirs().contains(&unsaved));
    let claim = site.claim("files-0");
    assert!(site.volume_dirs().contains(&claim["volume"].as_str().unwrap().to_owned()), "the claim's own volume stays");
}
