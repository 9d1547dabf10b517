//! `berth up` end to end: the real binary runs the platform, its tasks are
//! real `berth serve` processes on real volume folders, and the tests drive
//! it only through the CLI (`ps`, `claims`, `claim history`, `stop-task`,
//! `scale`, `down`), HTTP to the tasks, and signals.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::site::*;
use crate::util::BERTH;

#[test]
fn up_survives_kill_spot_and_health_failures_and_down_up() {
    let site = Site::new(TWO_CLAIMS);
    let mut up = site.up(&[]);
    let t0 = site.wait_serving("files-0", Some(1));
    let t1 = site.wait_serving("files-1", Some(1));
    assert_ne!(endpoint(&t0), endpoint(&t1));

    let files0 = random_files("zero", &[3 * 1024 * 1024 + 17, 64 * 1024, 1000]);
    let files1 = random_files("one", &[2 * 1024 * 1024, 4096, 1]);
    upload(&endpoint(&t0), &files0);
    upload(&endpoint(&t1), &files1);
    assert_files(&endpoint(&t0), &files0);
    assert_files(&endpoint(&t1), &files1);

    // (a) The task process of files-0 crashes.
    kill9(t0["pid"].as_u64().unwrap());
    let t0 = site.wait_serving("files-0", Some(2));
    assert_files(&endpoint(&t0), &files0);
    let c1 = site.claim("files-1");
    assert_eq!(c1["generation"], 1, "files-1 is untouched: {c1:#}");
    assert_eq!(c1["task"], t1["arn"], "files-1 keeps its task: {c1:#}");
    assert_files(&endpoint(&t1), &files1);

    // (b) A Spot interruption.
    site.ok(&["stop-task", t0["arn"].as_str().unwrap(), "--reason", "spot"]);
    let t0 = site.wait_serving("files-0", Some(3));
    assert_files(&endpoint(&t0), &files0);

    // (c) A real health check failure: the check fails while the flag exists.
    let flag = site.flags.join("files-1");
    std::fs::write(&flag, b"").unwrap();
    site.wait_until("files-1's generation 1 to stop on failed health checks", || {
        let h = site.history("files-1");
        let gens = generations(&h);
        (!gens[&1]["stop_code"].is_null() || gens.contains_key(&2)).then_some(())
    });
    std::fs::remove_file(&flag).unwrap();
    let t1 = site.wait_serving("files-1", Some(2));
    assert_files(&endpoint(&t1), &files1);

    // (d) The ledger tells the story.
    let h0 = site.history("files-0");
    let g0 = generations(&h0);
    assert_eq!(g0.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3], "{h0:#}");
    assert_eq!(g0[&1]["stop_code"], "EssentialContainerExited", "{h0:#}");
    assert_eq!(g0[&2]["stop_code"], "SpotInterruption", "{h0:#}");
    assert!(g0[&3]["stop_code"].is_null(), "{h0:#}");
    assert_history_chain(&h0);
    let h1 = site.history("files-1");
    let g1 = generations(&h1);
    assert_eq!(g1.keys().copied().collect::<Vec<_>>(), vec![1, 2], "{h1:#}");
    let reason = g1[&1]["stop_reason"].as_str().unwrap_or_default().to_lowercase();
    assert!(reason.contains("health"), "files-1 generation 1 stopped for its health: {h1:#}");
    assert_history_chain(&h1);

    // (e) berth down parks everything and berth up exits 0.
    let gen_before: Vec<u64> =
        ["files-0", "files-1"].iter().map(|c| site.claim(c)["generation"].as_u64().unwrap()).collect();
    site.ok(&["down"]);
    let status = up.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "berth up exits 0 after berth down; log:\n{}", tail(&up.log, 30));
    let out = site.cli(&["ps"]);
    assert!(!out.status.success(), "ps with no berth up: {out:?}");
    assert!(stderr(&out).contains("no berth up is running"), "{}", stderr(&out));
    drop(up);

    // (f) berth up again: both claims come back with every file.
    let _up = site.up(&[]);
    let t0 = site.wait_serving("files-0", Some(gen_before[0] + 1));
    let t1 = site.wait_serving("files-1", Some(gen_before[1] + 1));
    assert_files(&endpoint(&t0), &files0);
    assert_files(&endpoint(&t1), &files1);
    assert_history_chain(&site.history("files-0"));
    assert_history_chain(&site.history("files-1"));
}

/// The steps of a handoff, in order, as `BERTH_TEST_CRASH_BEFORE` names them.
const HANDOFF_STEPS: &[&str] = &[
    "write:claimed",
    "write:snapshotting",
    "snapshot",
    "write:snapshotted",
    "write:launching",
    "create-volume",
    "run-task",
    "write:launched",
    "write:done",
];

/// One crash point: a claim whose task vanished with its controller, a
/// controller killed right before `point` of the handoff, and a third
/// controller that must finish it.
fn crash_at(point: &str) {
    let site = Site::new(ONE_CLAIM);
    let files = random_files(&point.replace(':', "-"), &[300 * 1024, 777]);
    {
        let mut up = site.up(&[]);
        let t = site.wait_serving("files-0", Some(1));
        upload(&endpoint(&t), &files);
        assert_files(&endpoint(&t), &files);
        up.kill9();
        wait_closed(&site, &endpoint(&t));
    }
    {
        let mut crashing = site.up(&[("BERTH_TEST_CRASH_BEFORE", point)]);
        let status = crashing.wait_exit(DEADLINE);
        assert_eq!(status.signal(), Some(libc::SIGKILL), "[{point}] the controller kills itself: {status:?}");
        let log = std::fs::read_to_string(&crashing.log).unwrap();
        assert!(log.contains(&format!("BERTH_TEST_CRASH_BEFORE={point}#1: killing myself")), "[{point}] log:\n{log}");
    }
    let mut up = site.up(&[]);
    let t = site.wait_serving("files-0", None);
    let serving_since = Instant::now();

    let claim = site.claim("files-0");
    let tasks = site.json(&["ps"]);
    let running: Vec<&Value> =
        tasks.as_array().unwrap().iter().filter(|t| t["claim"] == "files-0" && t["last_status"] == "RUNNING").collect();
    assert_eq!(running.len(), 1, "[{point}] exactly one running task: {tasks:#}");
    assert_eq!(running[0]["generation"], claim["generation"], "[{point}] {tasks:#}\n{claim:#}");
    assert_eq!(running[0]["arn"], t["arn"]);
    assert_files(&endpoint(&t), &files);
    assert_history_chain(&site.history("files-0"));

    // Once the sweep's grace has passed, only the current volume is left.
    let volume = claim["volume"].as_str().unwrap().to_owned();
    site.wait_until(&format!("[{point}] the sweep to leave only {volume}"), || {
        let after_grace = serving_since.elapsed() > SWEEP_GRACE + 2 * RESYNC;
        (after_grace && site.volume_dirs() == [volume.clone()]).then_some(())
    });

    site.ok(&["down"]);
    assert_eq!(up.wait_exit(DEADLINE).code(), Some(0), "[{point}] berth up exits 0 after berth down");
}

#[test]
fn a_controller_killed_at_each_handoff_step_finishes_the_handoff() {
    // Each point has its own state folder; three run side by side to keep
    // the test short (`berth down` alone can take a while).
    const WORKERS: usize = 3;
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            s.spawn(move || {
                for point in HANDOFF_STEPS.iter().skip(w).step_by(WORKERS) {
                    crash_at(point);
                }
            });
        }
    });
}

#[test]
fn a_second_berth_up_on_one_state_folder_is_refused() {
    let site = Site::new(ONE_CLAIM);
    let _up = site.up(&[]);
    let t = site.wait_serving("files-0", Some(1));

    let mut second = site.up(&[]);
    let status = second.wait_exit(DEADLINE);
    let log = std::fs::read_to_string(&second.log).unwrap();
    assert!(!status.success(), "the second berth up must not run: {status:?}\n{log}");
    assert!(log.contains("another berth up is running"), "{log}");

    // The first one is unaffected.
    let still = site.wait_serving("files-0", Some(1));
    assert_eq!(still["arn"], t["arn"]);
}

#[test]
fn a_user_stop_parks_the_claim_and_scale_brings_it_back() {
    let site = Site::new(TWO_CLAIMS);
    let _up = site.up(&[]);
    let t = site.wait_serving("files-1", Some(1));
    site.wait_serving("files-0", Some(1));
    let files = random_files("parked", &[100 * 1024, 10]);
    upload(&endpoint(&t), &files);

    site.ok(&["stop-task", t["arn"].as_str().unwrap(), "--reason", "user"]);
    let parked = |site: &Site| {
        let c = site.claim("files-1");
        let tasks = site.json(&["ps"]);
        let live = tasks.as_array().unwrap().iter().any(|t| t["claim"] == "files-1" && t["last_status"] != "STOPPED");
        (c["desired"] == "parked" && c["task"].is_null() && c["handoff"].is_null() && !live).then_some(c)
    };
    let c = site.wait_until("files-1 to park", || parked(&site));
    let h = site.history("files-1");
    assert_eq!(generations(&h)[&1]["stop_code"], "UserInitiated", "{h:#}");
    assert!(c["head_snapshot"].is_string(), "a parked claim keeps its snapshot: {c:#}");

    // Resyncs leave it parked.
    let until = Instant::now() + 3 * RESYNC + Duration::from_millis(500);
    while Instant::now() < until {
        assert!(parked(&site).is_some(), "files-1 stays parked\n{}", site.diagnostics());
        std::thread::sleep(POLL);
    }
    assert!(site.serving("files-0", Some(1)).is_some(), "files-0 runs on");

    site.ok(&["scale", "files", "2"]);
    let t = site.wait_serving("files-1", Some(2));
    assert_files(&endpoint(&t), &files);
    assert_history_chain(&site.history("files-1"));
}

#[test]
fn the_blogs_validation_sequence_passes_through_the_load_balancer() {
    let site = Site::new(TWO_CLAIMS);
    let _up = site.up(&[]);
    site.wait_serving("files-0", None);
    site.wait_serving("files-1", None);
    let lb: Value = site.wait_until("lb.json", || {
        std::fs::read(site.state.join("lb.json")).ok().and_then(|b| serde_json::from_slice(&b).ok())
    });
    let (https, http, cert) = (
        lb["https"].as_str().unwrap().to_owned(),
        lb["http"].as_str().unwrap().to_owned(),
        lb["cert"].as_str().unwrap().to_owned(),
    );
    // HTTP answers with a permanent redirect to HTTPS.
    assert_redirects_to_https(&http);
    // Health through HTTPS once the targets passed the load balancer's checks.
    site.wait_until("a healthy target behind the load balancer", || {
        (lb_curl(&cert, &[&format!("{https}/health")]).0 == "200").then_some(())
    });
    let check = |files: &BTreeMap<String, Vec<u8>>| {
        let (status, listing) = lb_curl(&cert, &[&format!("{https}/files")]);
        assert_eq!(status, "200");
        let listing: Value = serde_json::from_slice(&listing).unwrap();
        for (name, data) in files {
            assert!(listing["files"].as_array().unwrap().iter().any(|f| f["name"] == name.as_str()), "{name} listed");
            let (status, body) = lb_curl(&cert, &[&format!("{https}/download/{name}")]);
            assert_eq!(status, "200", "{name}");
            assert!(body == *data, "{name}: content differs");
        }
    };
    let files = random_files("lb", &[1000, 300_000, 2 << 20]);
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in &files {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        let (status, body) = lb_curl(&cert, &["-F", &format!("file=@{}", path.display()), &format!("{https}/upload")]);
        assert_eq!(status, "200", "{}", String::from_utf8_lossy(&body));
    }
    // Every upload reads back through the load balancer, whichever task answers.
    for _ in 0..3 {
        check(&files);
    }
    // A Spot-style stop: the sequence passes again with the replacement.
    let task = site.wait_serving("files-1", None);
    site.ok(&["stop-task", task["arn"].as_str().unwrap(), "--reason", "spot"]);
    site.wait_serving("files-1", Some(task["generation"].as_u64().unwrap() + 1));
    site.wait_until("files readable again after the handoff", || {
        let (status, _) = lb_curl(&cert, &[&format!("{https}/health")]);
        (status == "200").then_some(())
    });
    site.wait_until("every file through the load balancer", || {
        files
            .iter()
            .all(|(name, data)| {
                let (status, body) = lb_curl(&cert, &[&format!("{https}/download/{name}")]);
                status == "200" && body == *data
            })
            .then_some(())
    });
    check(&files);
}

/// The processes whose environment names task `arn`, from `/proc`.
fn processes_of_task(arn: &str) -> Vec<u32> {
    let marker = format!("BERTH_TASK_ARN={arn}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == marker.as_bytes()))
        })
        .collect()
}

#[test]
fn what_a_task_started_outlives_a_killed_berth_up_only_until_the_next_start() {
    // ONE_CLAIM, its task a shell that starts the server.
    let toml = ONE_CLAIM.replace(
        "stop_timeout = \"5s\"\n",
        &format!("stop_timeout = \"5s\"\ncommand = [\"sh\", \"-c\", '\"{BERTH}\" serve & wait']\n"),
    );
    assert!(toml.contains("command"), "{toml}");
    let site = Site::new(&toml);
    let mut up = site.up(&[]);
    let t = site.wait_serving("files-0", Some(1));
    let arn = t["arn"].as_str().unwrap().to_owned();
    let shell = t["pid"].as_u64().unwrap() as u32;
    assert!(processes_of_task(&arn).len() >= 2, "the shell and the server it started");

    // The shell dies with berth up; the server it started does not.
    up.kill9();
    let left = site.wait_until("the task's shell to die with berth up", || {
        let left = processes_of_task(&arn);
        (!left.contains(&shell)).then_some(left)
    });
    assert!(!left.is_empty(), "the server the shell started outlives berth up");

    // The next start kills it before the claim starts again on that volume.
    let _up = site.up(&[]);
    site.wait_until("the left-behind server to be killed", || processes_of_task(&arn).is_empty().then_some(()));
    let t2 = site.wait_serving("files-0", Some(2));
    let groups: Vec<_> = std::fs::read_dir(site.state.join("task-groups")).unwrap().collect();
    assert_eq!(groups.len(), 1, "only the running task's group is recorded: {groups:?}");
    assert_ne!(t2["arn"], t["arn"]);
}

/// Issue 20, defect 2: volume folders were 0755, uploads and the ledger
/// 0644, so user `nobody` read every file past the token. The state
/// folder is private, and what berth up and its tasks write is too.
#[test]
fn other_users_cannot_read_the_state_folder_or_the_uploads() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new(ONE_CLAIM);
    let _up = site.up(&[]);
    let t = site.wait_serving("files-0", Some(1));
    upload(&endpoint(&t), &random_files("private", &[1000]));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&site.state), 0o700, "the state folder");
    assert_eq!(mode(&site.state.join("ledger.sqlite")), 0o600, "the ledger");
    let claim = site.claim("files-0");
    let volume = site.state.join("volumes").join(claim["volume"].as_str().unwrap());
    assert_eq!(mode(&volume), 0o700, "the volume folder");
    assert_eq!(mode(&volume.join("private-0.bin")), 0o600, "an uploaded file");
}

/// Issue 20, defect 2: a `BERTH_TOKEN` given in a service's `env` was
/// stored in the ledger, where any reader of `ledger.sqlite-wal` found it.
/// Given as a secret, it guards the task and no file of the state folder
/// holds it.
#[test]
fn a_token_given_as_a_secret_guards_the_task_and_is_stored_nowhere() {
    let token = format!("{:032x}", fastrand::u128(..));
    let config = format!("{ONE_CLAIM}\n[service.secrets]\nBERTH_TOKEN = \"file:{{FLAGS}}/token\"\n");
    let site = Site::new(&config);
    std::fs::write(site.flags.join("token"), format!("{token}\n")).unwrap();
    let _up = site.up(&[]);
    let t = site.wait_serving("files-0", Some(1));
    let c = crate::util::client();
    let files = format!("http://{}/files", endpoint(&t));
    assert_eq!(c.get(&files).send().unwrap().status(), 401, "the task requires the token");
    assert_eq!(c.get(&files).bearer_auth(&token).send().unwrap().status(), 200);
    let mut stack = vec![site.state.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let found = bytes.windows(token.len()).any(|w| w == token.as_bytes());
                assert!(!found, "{} holds the secret", path.display());
            }
        }
    }
}

/// Issue 20, defect 3: with a damaged repository every stop snapshot
/// failed, and `berth down` (or SIGTERM) waited on and on while berth up
/// kept running. It ends after the stop timeout and `down_timeout`, names
/// what it could not park, and keeps that volume for the next start.
#[test]
fn berth_down_ends_on_a_damaged_repository_and_the_data_comes_back() {
    let site = Site::new(ONE_CLAIM);
    let config = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        config.replacen("sweep_grace = \"2s\"", "sweep_grace = \"2s\"\ndown_timeout = \"3s\"", 1),
    )
    .unwrap();
    let mut up = site.up(&[]);
    let t = site.wait_serving("files-0", Some(1));
    let files = random_files("kept", &[64 * 1024, 3]);
    upload(&endpoint(&t), &files);
    let volumes = site.volume_dirs();

    // No pack can be written any more.
    let data = site.state.join("repository").join("data");
    let aside = site.state.join("repository").join("data.aside");
    std::fs::rename(&data, &aside).unwrap();
    std::fs::write(&data, b"not a folder").unwrap();
    let out = site.cli(&["down"]);
    assert!(out.status.success(), "berth down returns once berth up has exited: {}", stderr(&out));
    let status = up.wait_exit(DEADLINE);
    let log = std::fs::read_to_string(&up.log).unwrap();
    assert!(!status.success(), "berth up says it could not park everything: {status:?}\n{log}");
    let line = log.lines().find(|l| l.contains("berth: error:")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("could not park files-0"), "{line}");
    assert_eq!(site.volume_dirs(), volumes, "the unparked claim's volume stays");
    drop(up);

    // Repaired, the next start snapshots that volume and serves its files.
    std::fs::remove_file(&data).unwrap();
    std::fs::rename(&aside, &data).unwrap();
    let _up = site.up(&[]);
    let t = site.wait_serving("files-0", None);
    assert_files(&endpoint(&t), &files);
}
