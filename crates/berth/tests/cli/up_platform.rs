//! `berth up`'s platform end to end: rolling deployments and their
//! rollback, auto scaling under a real CPU load, and a bounded load through
//! the load balancer while tasks are stopped under it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::site::*;
use crate::util::{sha256, BERTH};

/// The revision a task runs, from its definition's ARN (`…:files:3`).
pub(crate) fn task_revision(task: &Value) -> u64 {
    task["definition"].as_str().and_then(|d| d.rsplit(':').next()).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// How many claims serve a healthy task now, judged from one reading of claims and tasks (one
/// reading per claim could see a claim before and the next after a step and
/// count both down).
fn serving_count(site: &Site) -> Option<usize> {
    let claims = site.try_json(&["claims"])?;
    let tasks = site.try_json(&["ps"])?;
    let names = claims.as_array()?.iter().filter_map(|c| c["name"].as_str());
    Some(names.filter(|n| serving_in(&claims, &tasks, n, None).is_some()).count())
}

pub(crate) fn events_of_kind(site: &Site, kind: &str) -> Vec<Value> {
    let events = site.json(&["events"]);
    events.as_array().unwrap().iter().filter(|e| e["kind"] == kind).cloned().collect()
}

#[test]
fn a_rolling_deployment_moves_one_claim_at_a_time_and_keeps_every_file() {
    let site = Site::new(TWO_CLAIMS);
    let _up = site.up(&[]);
    let t0 = site.wait_serving("files-0", Some(1));
    let t1 = site.wait_serving("files-1", Some(1));
    let files0 = random_files("d0", &[200 * 1024, 10]);
    let files1 = random_files("d1", &[300 * 1024, 1]);
    upload(&endpoint(&t0), &files0);
    upload(&endpoint(&t1), &files1);

    let out = site.cli(&["deploy", "files", "--env", "APP_VERSION=2"]);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("deploying revision 2 (from 1)"));
    // A second deployment while one runs is refused with a clear line.
    let again = site.cli(&["deploy", "files", "--env", "APP_VERSION=3"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already deploying revision 2"), "{}", stderr(&again));

    // Watch the rollout: never both claims down at once.
    let mut fewest = usize::MAX;
    let record = site.wait_until("the deployment to complete", || {
        if let Some(n) = serving_count(&site) {
            fewest = fewest.min(n);
        }
        let r = site.try_json(&["deploy", "files", "--status"])?;
        (r["deployment"]["state"] == "completed").then_some(r)
    });
    assert!(fewest >= 1, "both claims were down at once during the rollout\n{}", site.diagnostics());
    assert_eq!(record["active"], 2, "{record:#}");
    assert_eq!(record["deployment"]["moved"], serde_json::json!(["files-0", "files-1"]), "one at a time, in order");

    for (claim, files) in [("files-0", &files0), ("files-1", &files1)] {
        let t = site.wait_serving(claim, Some(2));
        assert_eq!(task_revision(&t), 2, "{claim} runs revision 2: {t:#}");
        assert_files(&endpoint(&t), files);
        let h = site.history(claim);
        let gens = generations(&h);
        assert_eq!(gens[&1]["revision"], 1, "{h:#}");
        assert_eq!(gens[&2]["revision"], 2, "{h:#}");
        assert!(gens[&1]["stop_snapshot"].is_string(), "each move is a handoff with its snapshot: {h:#}");
        assert_history_chain(&h);
    }
    // The new revision's environment reached the tasks.
    let ps = site.json(&["ps"]);
    assert!(ps.as_array().unwrap().iter().any(|t| task_revision(t) == 2));
    let done = events_of_kind(&site, "deploy-completed");
    assert_eq!(done.len(), 1, "{}", site.diagnostics());

    // Nothing changed: a deployment of the same definition is refused.
    let same = site.cli(&["deploy", "files", "--env", "APP_VERSION=2"]);
    assert!(!same.status.success());
    assert!(stderr(&same).contains("nothing to deploy"), "{}", stderr(&same));
}

#[test]
fn a_revision_that_fails_its_health_checks_rolls_back() {
    let site = Site::new(TWO_CLAIMS);
    let _up = site.up(&[]);
    let t0 = site.wait_serving("files-0", Some(1));
    site.wait_serving("files-1", Some(1));
    let files = random_files("rb", &[50 * 1024]);
    upload(&endpoint(&t0), &files);

    let out = site.cli(&["deploy", "files", "--env", "FAIL_HEALTH=1", "--wait", "--timeout", "2m"]);
    assert!(!out.status.success(), "a rolled-back deployment fails --wait\n{}", site.diagnostics());
    let err = stderr(&out);
    assert!(err.contains("rolled back") && err.contains("files-0 failed on revision 2"), "{err}");

    let record = site.json(&["deploy", "files", "--status"]);
    assert_eq!(record["deployment"]["state"], "rolled-back", "{record:#}");
    assert_eq!(record["active"], 1);
    // files-1 was never moved: the breaker tripped on the first claim.
    let t1 = site.serving("files-1", Some(1)).expect("files-1 kept its task");
    assert_eq!(task_revision(&t1), 1);
    let t0 = site.wait_serving("files-0", None);
    assert_eq!(task_revision(&t0), 1, "files-0 is back on revision 1: {t0:#}");
    assert_files(&endpoint(&t0), &files);
    let h = site.history("files-0");
    let revisions: Vec<u64> = generations(&h).values().map(|g| g["revision"].as_u64().unwrap()).collect();
    assert_eq!(revisions.first(), Some(&1));
    assert_eq!(revisions.last(), Some(&1));
    assert!(revisions.contains(&2), "a generation ran revision 2: {h:#}");
    assert_history_chain(&h);
    assert_eq!(events_of_kind(&site, "deploy-failed").len(), 1);
    assert_eq!(events_of_kind(&site, "deploy-rolled-back").len(), 1);
}

/// A service whose tasks run `berth serve` beside a shell that spins while
/// `<flags>/burn` exists: a real CPU load, read from `/proc`. Auto scaled
/// 2–4; `health` is extra health-check settings, `scale_in_cooldown` the
/// cooldown after a scale-in.
fn burning_service(health: &str, scale_in_cooldown: &str) -> String {
    format!(
        r#"
[[service]]
name = "files"
desired_count = 2
stop_timeout = "3s"
command = ["sh", "-c", '"{BERTH}" serve & while :; do while [ -e "$FLAG_DIR/burn" ]; do :; done; sleep 0.2; done']
env = {{ FLAG_DIR = "{{FLAGS}}" }}

[service.health_check]
{health}
interval = "300ms"
timeout = "2s"
retries = 2
start_period = "3s"

[service.autoscaling]
min_capacity = 2
max_capacity = 4
sample_interval = "1s"
scale_out_cooldown = "3s"
scale_in_cooldown = "{scale_in_cooldown}"
"#
    )
}

pub(crate) fn desired_count(site: &Site) -> Option<u64> {
    let claims = site.try_json(&["claims"])?;
    Some(claims.as_array()?.iter().filter(|c| c["desired"] == "running").count() as u64)
}

#[test]
fn auto_scaling_follows_a_cpu_load_out_to_max_and_back_in_keeping_the_data() {
    let site = Site::new(&burning_service("", "1s"));
    let _up = site.up(&[]);
    site.wait_serving("files-0", Some(1));
    site.wait_serving("files-1", Some(1));

    std::fs::write(site.flags.join("burn"), b"").unwrap();
    site.wait_until("scale-out to 4 claims", || (desired_count(&site)? == 4).then_some(()));
    let t3 = site.wait_serving("files-3", Some(1));
    let out = events_of_kind(&site, "autoscale");
    assert!(out.iter().any(|e| e["message"].as_str().unwrap().contains("cpu")), "{out:#?}");
    let data = random_files("scaled", &[64 * 1024]);
    // Uploaded while the load holds the service at its maximum: once it
    // ends, scale-in may park files-3 within a second or two.
    upload(&endpoint(&t3), &data);
    std::fs::remove_file(site.flags.join("burn")).unwrap();

    // Idle again: back to the minimum, the highest claims parked with a snapshot.
    site.wait_until("scale-in to 2 claims", || (desired_count(&site)? == 2).then_some(()));
    let parked = site.wait_until("files-3 parked", || {
        let c = site.claim("files-3");
        (c["desired"] == "parked" && c["task"].is_null() && c["handoff"].is_null()).then_some(c)
    });
    assert!(parked["head_snapshot"].is_string(), "{parked:#}");
    let events = events_of_kind(&site, "autoscale");
    let moves: Vec<(u64, u64)> =
        events.iter().map(|e| (e["data"]["from"].as_u64().unwrap(), e["data"]["to"].as_u64().unwrap())).collect();
    assert!(moves.contains(&(4, 3)) && moves.contains(&(3, 2)), "scale-in one task at a time: {moves:?}");
    // Held at the minimum: it does not go below 2.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(desired_count(&site), Some(2));

    // A count outside the bounds by hand is refused; within them it is kept.
    let out = site.cli(&["scale", "files", "7"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("outside auto scaling's capacity 2–4"), "{}", stderr(&out));
    // Under load again, so auto scaling keeps the count at 4 (when idle it
    // would take it back to 2 after the cooldown, before files-3 is read).
    std::fs::write(site.flags.join("burn"), b"").unwrap();
    site.ok(&["scale", "files", "4"]);
    let t3 = site.wait_serving("files-3", Some(2));
    assert_files(&endpoint(&t3), &data);
    std::fs::remove_file(site.flags.join("burn")).unwrap();
}

/// The load balancer's HTTPS address and a client that trusts its certificate.
fn lb_client(site: &Site) -> (String, reqwest::blocking::Client) {
    let lb: Value = site.wait_until("lb.json", || {
        std::fs::read(site.state.join("lb.json")).ok().and_then(|b| serde_json::from_slice(&b).ok())
    });
    let pem = std::fs::read(lb["cert"].as_str().unwrap()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    (lb["https"].as_str().unwrap().to_owned(), client)
}

#[test]
fn under_load_with_tasks_stopped_every_few_seconds_no_acknowledged_upload_is_lost() {
    let site = Site::new(TWO_CLAIMS);
    let _up = site.up(&[]);
    site.wait_serving("files-0", None);
    site.wait_serving("files-1", None);
    let (https, client) = lb_client(&site);
    site.wait_until("a healthy target", || {
        client.get(format!("{https}/health")).send().ok().filter(|r| r.status() == 200).map(|_| ())
    });

    let acked: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let failures: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (acked, failures, stop, client, https) =
                (acked.clone(), failures.clone(), stop.clone(), client.clone(), https.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(w);
                let mut n = 0u32;
                // Bounded: at most 400 requests per worker, and only while the test runs.
                while !stop.load(Ordering::Relaxed) && n < 400 {
                    n += 1;
                    let name = format!("w{w}-{n}.bin");
                    let mut data = vec![0u8; rng.usize(1..64 * 1024)];
                    rng.fill(&mut data);
                    match client.put(format!("{https}/files/{name}")).body(data.clone()).send() {
                        Ok(r) if r.status().is_success() => {
                            acked.lock().unwrap().insert(name, data);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().unwrap_or_default();
                            failures.lock().unwrap().push((
                                Instant::now(),
                                format!("PUT {name}: {status} {}", body.chars().take(300).collect::<String>()),
                            ))
                        }
                        Err(e) => failures.lock().unwrap().push((Instant::now(), format!("PUT {name}: {e}"))),
                    }
                    let pick = {
                        let a = acked.lock().unwrap();
                        (!a.is_empty()).then(|| {
                            let i = rng.usize(..a.len());
                            a.iter().nth(i).map(|(k, v)| (k.clone(), v.clone())).unwrap()
                        })
                    };
                    if let Some((name, want)) = pick {
                        match client.get(format!("{https}/download/{name}")).send().and_then(|r| {
                            let status = r.status();
                            r.bytes().map(|b| (status, b))
                        }) {
                            Ok((s, body)) if s == 200 => {
                                assert_eq!(sha256(&body), sha256(&want), "{name} downloaded with other content")
                            }
                            // The body says who answered (the load balancer or a task) and why.
                            Ok((s, body)) => failures.lock().unwrap().push((
                                Instant::now(),
                                format!("GET {name}: {s} {}", String::from_utf8_lossy(&body[..body.len().min(300)])),
                            )),
                            Err(e) => failures.lock().unwrap().push((Instant::now(), format!("GET {name}: {e}"))),
                        }
                    }
                }
            })
        })
        .collect();

    // Stop a task every few seconds, alternating claims; each stop opens a
    // window that closes when the claim serves again.
    let mut windows: Vec<(Instant, Instant)> = Vec::new();
    for round in 0..4 {
        std::thread::sleep(Duration::from_secs(2));
        let claim = if round % 2 == 0 { "files-0" } else { "files-1" };
        let t = site.wait_serving(claim, None);
        let from = Instant::now();
        site.ok(&["stop-task", t["arn"].as_str().unwrap(), "--reason", "spot"]);
        site.wait_serving(claim, Some(t["generation"].as_u64().unwrap() + 1));
        // The load balancer takes a few health checks to register the new target.
        std::thread::sleep(Duration::from_millis(1500));
        windows.push((from, Instant::now()));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a worker saw wrong content");
    }

    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "the load did some work: {} uploads acknowledged", acked.len());
    for (name, data) in &acked {
        let r = client.get(format!("{https}/download/{name}")).send().unwrap();
        assert_eq!(r.status(), 200, "acknowledged upload {name} is missing\n{}", site.diagnostics());
        assert_eq!(sha256(&r.bytes().unwrap()), sha256(data), "{name}");
    }
    let failures = failures.lock().unwrap().clone();
    let outside: Vec<&(Instant, String)> =
        failures.iter().filter(|(at, _)| !windows.iter().any(|(from, to)| *at >= *from && *at <= *to)).collect();
    assert!(
        outside.is_empty(),
        "requests failed while every task was healthy: {:?}",
        outside.iter().map(|(at, m)| (at.duration_since(started), m)).collect::<Vec<_>>()
    );
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (_, m) in &failures {
        let (method, rest) = m.split_once(' ').unwrap_or((m, ""));
        let why = rest.split_once(": ").map_or("", |(_, w)| w);
        *kinds.entry(format!("{method} {}", why.chars().take(40).collect::<String>())).or_default() += 1;
    }
    eprintln!(
        "{} uploads acknowledged, {} requests failed, all during the {} handoffs: {kinds:?}",
        acked.len(),
        failures.len(),
        windows.len()
    );
}

#[test]
fn a_changed_berth_toml_is_deployed_at_the_next_start_and_an_unchanged_one_is_not() {
    let site = Site::new(ONE_CLAIM);
    {
        let mut up = site.up(&[]);
        site.wait_serving("files-0", Some(1));
        up.kill9();
    }
    {
        // The same file again: the claim comes back, nothing is deployed.
        let mut up = site.up(&[]);
        let t = site.wait_serving("files-0", Some(2));
        assert_eq!(task_revision(&t), 1);
        assert!(events_of_kind(&site, "deploy-started").is_empty(), "{}", site.diagnostics());
        site.ok(&["down"]);
        up.wait_exit(Duration::from_secs(60));
    }
    let text = std::fs::read_to_string(&site.config).unwrap();
    let text = text.replace("desired_count = 1", "desired_count = 1\nenv = { APP_VERSION = \"2\" }");
    std::fs::write(&site.config, text).unwrap();
    let _up = site.up(&[]);
    let record = site.wait_until("the deployment of the changed berth.toml", || {
        let r = site.try_json(&["deploy", "files", "--status"])?;
        (r["deployment"]["state"] == "completed").then_some(r)
    });
    assert_eq!(record["active"], 2, "{record:#}");
    assert_eq!(record["revisions"][1]["env"]["APP_VERSION"], "2");
    let t = site.wait_serving("files-0", None);
    assert_eq!(task_revision(&t), 2, "{t:#}");
    assert_eq!(events_of_kind(&site, "deploy-started").len(), 1);
}

/// The whole architecture of the blog with its load balancer, failing
/// health checks per claim (`<flags>/<claim>`) and a CPU burner per task
/// (`<flags>/burn`), auto scaled 2–4.
fn blog_stack() -> String {
    let health = r#"command = ["sh", "-c", 'test ! -e "$FLAG_DIR/$BERTH_CLAIM" && curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null']"#;
    burning_service(health, "2s")
}

/// The blog's validation sequence through the load balancer with curl:
/// the HTTP listener redirects, /health answers through HTTPS, `new` files
/// upload, and every file of `all` (`new` added) is listed and downloads
/// identical. Retried while a handoff settles.
pub(crate) fn blog_sequence(site: &Site, new: &BTreeMap<String, Vec<u8>>, all: &mut BTreeMap<String, Vec<u8>>) {
    let lb: Value = serde_json::from_slice(&std::fs::read(site.state.join("lb.json")).unwrap()).unwrap();
    let (https, http, cert) =
        (lb["https"].as_str().unwrap(), lb["http"].as_str().unwrap(), lb["cert"].as_str().unwrap());
    assert_redirects_to_https(http);
    site.wait_until("/health through HTTPS", || {
        (lb_curl(cert, &[&format!("{https}/health")]).0 == "200").then_some(())
    });
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in new {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        site.wait_until(&format!("upload of {name}"), || {
            let (status, _) = lb_curl(cert, &["-F", &format!("file=@{}", path.display()), &format!("{https}/upload")]);
            (status == "200").then_some(())
        });
        all.insert(name.clone(), data.clone());
    }
    site.wait_until("every file listed and identical through the load balancer", || {
        let (status, listing) = lb_curl(cert, &[&format!("{https}/files")]);
        let listing: Value = serde_json::from_slice(&listing).ok()?;
        let names: Vec<&str> = listing["files"].as_array()?.iter().filter_map(|f| f["name"].as_str()).collect();
        let ok = status == "200"
            && all.iter().all(|(name, data)| {
                names.contains(&name.as_str()) && {
                    let (s, body) = lb_curl(cert, &[&format!("{https}/download/{name}")]);
                    s == "200" && body == *data
                }
            });
        ok.then_some(())
    });
}

#[test]
fn the_blogs_architecture_survives_spot_health_deploy_and_scaling_with_every_file() {
    let site = Site::new(&blog_stack());
    let _up = site.up(&[]);
    site.wait_serving("files-0", Some(1));
    site.wait_serving("files-1", Some(1));
    site.wait_until("lb.json", || std::fs::metadata(site.state.join("lb.json")).ok());
    let mut all = BTreeMap::new();
    blog_sequence(&site, &random_files("start", &[20, 100 * 1024, 1 << 20]), &mut all);

    // A Spot-style stop.
    let t = site.wait_serving("files-0", None);
    site.ok(&["stop-task", t["arn"].as_str().unwrap(), "--reason", "spot"]);
    site.wait_serving("files-0", Some(t["generation"].as_u64().unwrap() + 1));
    blog_sequence(&site, &random_files("spot", &[3000, 70_000]), &mut all);

    // A real health-check failure of files-1.
    let t = site.wait_serving("files-1", None);
    std::fs::write(site.flags.join("files-1"), b"").unwrap();
    site.wait_until("files-1 to stop on failed health checks", || {
        (site.claim("files-1")["generation"].as_u64()? > t["generation"].as_u64()?).then_some(())
    });
    std::fs::remove_file(site.flags.join("files-1")).unwrap();
    site.wait_serving("files-1", None);
    blog_sequence(&site, &random_files("health", &[5000]), &mut all);

    // A rolling deployment.
    site.ok(&["deploy", "files", "--env", "APP_VERSION=2", "--wait", "--timeout", "2m"]);
    for claim in ["files-0", "files-1"] {
        assert_eq!(task_revision(&site.wait_serving(claim, None)), 2);
    }
    blog_sequence(&site, &random_files("deploy", &[9000]), &mut all);

    // Scale out to 4 under a CPU load, and back to 2 when it ends.
    std::fs::write(site.flags.join("burn"), b"").unwrap();
    site.wait_until("scale-out to 4", || (desired_count(&site)? == 4).then_some(()));
    site.wait_serving("files-2", None);
    site.wait_serving("files-3", None);
    let mut at_four = all.clone();
    // While the load lasts, so no claim is parked before every file is listed.
    blog_sequence(&site, &random_files("four", &[1234, 4321, 2222, 3333]), &mut at_four);
    std::fs::remove_file(site.flags.join("burn")).unwrap();
    site.wait_until("scale-in to 2", || (desired_count(&site)? == 2).then_some(()));
    for claim in ["files-2", "files-3"] {
        site.wait_until(&format!("{claim} parked"), || {
            let c = site.claim(claim);
            (c["desired"] == "parked" && c["task"].is_null() && c["handoff"].is_null()).then_some(())
        });
    }
    // What was uploaded at 4 tasks stays on the volume it was placed on:
    // on the two running claims it is served, on the parked ones it waits
    // on their volumes (offline until they scale out again).
    let parked_volumes: Vec<std::path::PathBuf> = ["files-2", "files-3"]
        .iter()
        .map(|c| site.state.join("volumes").join(site.claim(c)["volume"].as_str().unwrap()))
        .collect();
    let uploaded_at_four: Vec<(String, Vec<u8>)> = at_four.into_iter().filter(|(n, _)| !all.contains_key(n)).collect();
    for (name, data) in uploaded_at_four {
        match parked_volumes.iter().find(|v| v.join(&name).exists()) {
            Some(v) => assert_eq!(std::fs::read(v.join(&name)).unwrap(), data, "{name} on parked {v:?}"),
            None => {
                all.insert(name, data);
            }
        }
    }
    blog_sequence(&site, &random_files("back", &[777]), &mut all);

    // The ledger shows every generation, each with its stop snapshot.
    for claim in ["files-0", "files-1"] {
        assert_history_chain(&site.history(claim));
    }
    for claim in ["files-2", "files-3"] {
        // Parked: the last generation stopped with the snapshot the claim keeps.
        let h = site.history(claim);
        let gens = generations(&h);
        let last = gens.values().last().unwrap();
        assert!(last["stop_snapshot"].is_string(), "{h:#}");
        assert_eq!(last["stop_snapshot"], h["claim"]["head_snapshot"], "{h:#}");
    }
    let kinds: Vec<String> =
        site.json(&["events"]).as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
    for kind in ["handoff-claimed", "deploy-completed", "autoscale", "parked"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} event in {kinds:?}");
    }
}

#[test]
fn a_rollout_interrupted_by_a_crash_of_berth_up_finishes_after_restart() {
    let site = Site::new(TWO_CLAIMS);
    let files = random_files("crash", &[40 * 1024]);
    {
        let mut up = site.up(&[]);
        let t0 = site.wait_serving("files-0", Some(1));
        site.wait_serving("files-1", Some(1));
        upload(&endpoint(&t0), &files);
        site.ok(&["deploy", "files", "--env", "APP_VERSION=2"]);
        // Killed as soon as the first claim is being moved.
        site.wait_until("the first deployment step", || {
            (!events_of_kind(&site, "deploy-step").is_empty()).then_some(())
        });
        up.kill9();
    }
    let _up = site.up(&[]);
    let record = site.wait_until("the deployment to complete after the restart", || {
        let r = site.try_json(&["deploy", "files", "--status"])?;
        (r["deployment"]["state"] == "completed").then_some(r)
    });
    assert_eq!(record["active"], 2);
    for claim in ["files-0", "files-1"] {
        let t = site.wait_serving(claim, None);
        assert_eq!(task_revision(&t), 2, "{claim}: {t:#}");
        assert_history_chain(&site.history(claim));
    }
    assert_files(&endpoint(&site.wait_serving("files-0", None)), &files);
}
