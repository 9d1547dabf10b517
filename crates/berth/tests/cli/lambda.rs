//! `berth lambda decide`: one EventBridge event replayed against a real
//! ledger left by `berth up`, calling no AWS API and writing nothing.

use std::process::Command;

use serde_json::{json, Value};

use crate::site::*;
use crate::util::BERTH;

fn decide(event: &Value, extra: &[&str]) -> (bool, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("event.json");
    std::fs::write(&path, event.to_string()).unwrap();
    let out = Command::new(BERTH)
        .args(["lambda", "decide", "--json", "--event", path.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), json, stderr)
}

/// The claims and the number of events of a SQLite ledger.
fn ledger_state(path: &std::path::Path) -> (String, usize) {
    use berth_core::ledger::Ledger;
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let ledger = berth_local::SqliteLedger::open(path).unwrap();
        let claims = serde_json::to_string(&ledger.claims().await.unwrap()).unwrap();
        (claims, ledger.events(0, None, 100_000).await.unwrap().len())
    })
}

/// A stopped-task event as EventBridge delivers it for a task berth's RunTask started.
fn stopped(task: &str, claim: &str, generation: u64, code: &str, volume: &str) -> Value {
    json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": "000000000000",
        "region": "local",
        "resources": [task],
        "detail": {
            "clusterArn": "arn:aws:ecs:local:000000000000:cluster/berth",
            "taskArn": task,
            "startedBy": format!("berth/{claim}/{generation}"),
            "lastStatus": "STOPPED",
            "desiredStatus": "STOPPED",
            "stopCode": code,
            "stoppedReason": "Your Spot Task was interrupted.",
            "version": 9,
            "attachments": [{"type": "AmazonElasticBlockStorage", "details": [{"name": "volumeId", "value": volume}]}]
        }
    })
}

#[test]
fn decide_replays_an_event_against_a_ledger_without_acting() {
    let site = Site::new(ONE_CLAIM);
    let (arn, volume) = {
        let mut up = site.up(&[]);
        let t = site.wait_serving("files-0", Some(1));
        let c = site.claim("files-0");
        up.kill9();
        (t["arn"].as_str().unwrap().to_owned(), c["volume"].as_str().unwrap().to_owned())
    };
    let ledger = site.state.join("ledger.sqlite");
    let before = ledger_state(&ledger);

    // A Spot interruption of files-0's task: the handoff is claimed, to replace.
    let (ok, v, err) =
        decide(&stopped(&arn, "files-0", 1, "SpotInterruption", &volume), &["--ledger", ledger.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(v["outcome"], "act", "{v:#}");
    assert_eq!(v["claim"], "files-0");
    let steps: Vec<&str> = v["actions"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    // The whole pass up to the first AWS call: claimed, then the snapshot
    // of the stopped task's volume. The generation's mark goes before the
    // claim's write, as the executor runs them.
    assert_eq!(steps[..3], ["mark", "write:claimed", "log"], "{v:#}");
    assert_eq!(steps.last(), Some(&"snapshot"), "{v:#}");
    assert!(steps.contains(&"write:snapshotting"), "{v:#}");
    assert!(v["explanation"].as_str().unwrap().contains("first AWS call (snapshot)"), "{v:#}");
    assert!(v["actions"][1]["detail"].as_str().unwrap().contains("Replace"), "{v:#}");
    // A user's stop: the same step, to park.
    let (_, v, _) =
        decide(&stopped(&arn, "files-0", 1, "UserInitiated", &volume), &["--ledger", ledger.to_str().unwrap()]);
    assert!(v["actions"][1]["detail"].as_str().unwrap().contains("Park"), "{v:#}");
    // An older version of the task than berth up saw: the handler drops it.
    let mut old = stopped(&arn, "files-0", 1, "SpotInterruption", &volume);
    old["detail"]["version"] = json!(1);
    let (_, v, _) = decide(&old, &["--ledger", ledger.to_str().unwrap()]);
    assert_eq!(v["outcome"], "stale", "{v:#}");
    assert_eq!(v["actions"], json!([]), "{v:#}");
    // Nothing was written: claims and the event log are as berth up left them.
    assert!(ledger_state(&ledger) == before, "decide must not write the ledger");

    // With no ledger the claim is unknown; out of the cluster it is out of scope.
    let event = stopped(&arn, "files-0", 1, "SpotInterruption", &volume);
    let (_, v, _) = decide(&event, &[]);
    assert_eq!(v["outcome"], "unknown-claim", "{v:#}");
    let (_, v, _) = decide(&event, &["--cluster", "production"]);
    assert_eq!(v["outcome"], "out-of-scope", "{v:#}");
    let (_, v, _) = decide(&event, &["--cluster", "berth"]);
    assert_eq!(v["outcome"], "unknown-claim", "in scope by the cluster's name: {v:#}");
    // AWS's own example, a task berth did not start.
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/aws-examples/ecs-task-state-change-running.json"
    ))
    .unwrap();
    let (_, v, _) = decide(&serde_json::from_str(&example).unwrap(), &[]);
    assert_eq!(v["outcome"], "unclaimed", "{v:#}");
    // A missing ledger is one clear error.
    let (ok, _, err) = decide(&event, &["--ledger", "/nonexistent/ledger.sqlite"]);
    assert!(!ok && err.contains("no ledger at /nonexistent/ledger.sqlite"), "{err}");
}
