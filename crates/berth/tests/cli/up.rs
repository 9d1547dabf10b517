//! `berth up` end to end: the real binary runs the platform, its tasks are
//! real `berth serve` processes on real volume folders, and the tests drive
//! it only through the CLI (`ps`, `claims`, `claim history`, `stop-task`,
//! `scale`, `down`), HTTP to the tasks, and signals.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{client, sha256, BERTH};

/// The longest any single wait may take.
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(150);
/// `resync_interval` of the test configurations.
const RESYNC: Duration = Duration::from_secs(1);
/// `sweep_grace` of the test configurations.
const SWEEP_GRACE: Duration = Duration::from_secs(2);

/// The platform settings every test configuration starts with: fast
/// resyncs and sweeps, a load balancer on free ports with quick checks.
const PLATFORM: &str = r#"
[controller]
resync_interval = "1s"
sweep_grace = "2s"

[lb]
http_port = 0
https_port = 0
health_interval = "200ms"
health_timeout = "2s"
grace_period = "0s"
deregistration_delay = "1s"
"#;

/// Two claims; a claim fails its health check while `<flags>/<claim>` exists.
const TWO_CLAIMS: &str = r#"

[[service]]
name = "files"
desired_count = 2
stop_timeout = "5s"
env = { FLAG_DIR = "{FLAGS}" }

[service.health_check]
command = ["sh", "-c", 'test ! -e "$FLAG_DIR/$BERTH_CLAIM" && curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null']
interval = "300ms"
timeout = "2s"
retries = 2
start_period = "3s"
"#;

/// One claim with the default HTTP health check on `/health`.
const ONE_CLAIM: &str = r#"

[[service]]
name = "files"
desired_count = 1
stop_timeout = "5s"

[service.health_check]
interval = "300ms"
timeout = "2s"
retries = 2
start_period = "3s"
"#;

/// A `berth up` process; SIGKILLed when dropped (its tasks die with it).
struct Up {
    child: Child,
    log: PathBuf,
}

impl Up {
    /// `kill -9` of the `berth up` process itself.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!("berth up did not exit within {within:?}; log:\n{}", tail(&self.log, 40));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A temporary folder with a state folder, a `berth.toml` and a flags folder.
struct Site {
    dir: tempfile::TempDir,
    state: PathBuf,
    config: PathBuf,
    flags: PathBuf,
    logs: RefCell<Vec<PathBuf>>,
}

impl Site {
    /// `{FLAGS}` in `toml` becomes the flags folder; [`PLATFORM`] comes first.
    fn new(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let config = dir.path().join("berth.toml");
        let flags = dir.path().join("flags");
        std::fs::create_dir(&flags).unwrap();
        let toml = format!("{PLATFORM}{}", toml.replace("{FLAGS}", flags.to_str().unwrap()));
        std::fs::write(&config, toml).unwrap();
        Self { dir, state, config, flags, logs: RefCell::new(Vec::new()) }
    }

    /// Starts `berth up` in the background, its output going to a log file.
    fn up(&self, env: &[(&str, &str)]) -> Up {
        let log = self.dir.path().join(format!("up-{}.log", self.logs.borrow().len() + 1));
        self.logs.borrow_mut().push(log.clone());
        let mut cmd = Command::new(BERTH);
        cmd.arg("up")
            .arg("--state")
            .arg(&self.state)
            .arg("--config")
            .arg(&self.config)
            .env_remove("BERTH_STATE")
            .env_remove("BERTH_CONFIG")
            .env_remove("BERTH_TEST_CRASH_BEFORE")
            .env_remove("BERTH_TOKEN")
            .env_remove("STORAGE_PATH")
            .env_remove("PORT")
            .env("BERTH_PASSWORD", "test")
            .env("BERTH_LOG_FORMAT", "json")
            .stdin(Stdio::null());
        // stdout and stderr both into the one log file.
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdout(Stdio::from(file.try_clone().unwrap())).stderr(Stdio::from(file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Up { child: cmd.spawn().expect("spawn berth up"), log }
    }

    /// Runs a CLI command against this state folder.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BERTH)
            .args(args)
            .arg("--state")
            .arg(&self.state)
            .env_remove("BERTH_STATE")
            .env_remove("BERTH_CONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("run berth")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "berth {args:?} failed: {}\n{}", stderr(&out), self.diagnostics());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `--json` answer of a command, or `None` while it fails (as while
    /// `berth up` is starting).
    fn try_json(&self, args: &[&str]) -> Option<Value> {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.cli(&args);
        if !out.status.success() {
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).expect("--json prints JSON"))
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut with = args.to_vec();
        with.push("--json");
        let out = self.cli(&with);
        assert!(out.status.success(), "berth {args:?} failed: {}\n{}", stderr(&out), self.diagnostics());
        serde_json::from_slice(&out.stdout).expect("--json prints JSON")
    }

    fn claim(&self, name: &str) -> Value {
        let claims = self.json(&["claims"]);
        claims.as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or_else(|| {
            panic!("no claim {name} in {claims:#}");
        })
    }

    fn history(&self, name: &str) -> Value {
        self.json(&["claim", "history", name])
    }

    /// The task serving `claim`, once the claim is running, its handoff is
    /// done and its current task is RUNNING and HEALTHY (at `generation` if
    /// given).
    fn serving(&self, claim: &str, generation: Option<u64>) -> Option<Value> {
        let claims = self.try_json(&["claims"])?;
        let c = claims.as_array()?.iter().find(|c| c["name"] == claim)?.clone();
        if c["desired"] != "running" || !c["handoff"].is_null() || c["task"].is_null() {
            return None;
        }
        if generation.is_some_and(|g| c["generation"] != g) {
            return None;
        }
        let tasks = self.try_json(&["ps"])?;
        let t = tasks.as_array()?.iter().find(|t| t["arn"] == c["task"])?.clone();
        let ok = t["claim"] == claim
            && t["generation"] == c["generation"]
            && t["last_status"] == "RUNNING"
            && t["health"] == "HEALTHY";
        ok.then_some(t)
    }

    fn wait_serving(&self, claim: &str, generation: Option<u64>) -> Value {
        let what = match generation {
            Some(g) => format!("{claim} serving a healthy task at generation {g}"),
            None => format!("{claim} serving a healthy task"),
        };
        self.wait_until(&what, || self.serving(claim, generation))
    }

    /// Polls `probe` until it answers, for at most [`DEADLINE`].
    fn wait_until<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\n{}", self.diagnostics());
            }
            std::thread::sleep(POLL);
        }
    }

    /// The event log (if `berth up` answers) and the tail of the last log.
    fn diagnostics(&self) -> String {
        let events = self.cli(&["events"]);
        let log = self.logs.borrow().last().map(|l| tail(l, 30)).unwrap_or_default();
        format!(
            "--- berth events:\n{}{}\n--- berth up log (tail):\n{log}",
            String::from_utf8_lossy(&events.stdout),
            stderr(&events)
        )
    }

    /// The volume folders (directories only) under `<state>/volumes`.
    fn volume_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.state.join("volumes"))
            .map(|rd| {
                rd.map(|e| e.unwrap())
                    .filter(|e| e.file_type().unwrap().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn endpoint(task: &Value) -> String {
    task["endpoint"].as_str().expect("a running task has an endpoint").to_owned()
}

/// Files with random content, named `<prefix>-<i>.bin`, of the given sizes.
fn random_files(prefix: &str, sizes: &[usize]) -> BTreeMap<String, Vec<u8>> {
    let mut rng = fastrand::Rng::new();
    sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let mut data = vec![0u8; size];
            rng.fill(&mut data);
            (format!("{prefix}-{i}.bin"), data)
        })
        .collect()
}

/// Makes a task answer from its own volume only: berth up runs the tasks
/// of a service as one file namespace, and these tests follow each volume.
const LOCAL_SCOPE: (&str, &str) = ("X-Berth-Scope", "local");

fn upload(endpoint: &str, files: &BTreeMap<String, Vec<u8>>) {
    let c = client();
    for (name, data) in files {
        let form = reqwest::blocking::multipart::Form::new()
            .part("file", reqwest::blocking::multipart::Part::bytes(data.clone()).file_name(name.clone()));
        let r = c
            .post(format!("http://{endpoint}/upload"))
            .header(LOCAL_SCOPE.0, LOCAL_SCOPE.1)
            .multipart(form)
            .send()
            .unwrap();
        let status = r.status();
        assert_eq!(status, 200, "upload {name} to {endpoint}: {}", r.text().unwrap_or_default());
    }
}

/// The volume of the task at `endpoint` holds exactly `files`, and each
/// downloads identical.
fn assert_files(endpoint: &str, files: &BTreeMap<String, Vec<u8>>) {
    let c = client();
    let list: Value =
        c.get(format!("http://{endpoint}/files")).header(LOCAL_SCOPE.0, LOCAL_SCOPE.1).send().unwrap().json().unwrap();
    let listed: BTreeSet<&str> =
        list["files"].as_array().expect("a file listing").iter().map(|f| f["name"].as_str().unwrap()).collect();
    let want: BTreeSet<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(listed, want, "files on {endpoint}: {list}");
    for (name, data) in files {
        let r =
            c.get(format!("http://{endpoint}/download/{name}")).header(LOCAL_SCOPE.0, LOCAL_SCOPE.1).send().unwrap();
        assert_eq!(r.status(), 200, "download {name} from {endpoint}");
        let body = r.bytes().unwrap();
        assert_eq!(body.len(), data.len(), "size of {name} on {endpoint}");
        assert_eq!(sha256(&body), sha256(data), "content of {name} on {endpoint}");
    }
}

/// The generation records of a `claim history`, by number.
fn generations(history: &Value) -> BTreeMap<u64, Value> {
    history["generations"]
        .as_array()
        .expect("generations")
        .iter()
        .map(|g| (g["generation"].as_u64().unwrap(), g.clone()))
        .collect()
}

/// Every generation before the current one has a stop snapshot, which is
/// the next generation's source, and the catalogue holds exactly one
/// on-stop snapshot per stopped generation.
fn assert_history_chain(history: &Value) {
    let current = history["claim"]["generation"].as_u64().unwrap();
    let gens = generations(history);
    assert_eq!(gens.keys().copied().collect::<Vec<_>>(), (1..=current).collect::<Vec<_>>(), "{history:#}");
    assert!(gens[&1]["source_snapshot"].is_null(), "generation 1 starts empty: {history:#}");
    for g in 1..current {
        let stop = &gens[&g]["stop_snapshot"];
        assert!(stop.is_string(), "generation {g} stopped without a snapshot: {history:#}");
        assert_eq!(&gens[&(g + 1)]["source_snapshot"], stop, "generation {} restores {g}'s stop snapshot", g + 1);
    }
    assert!(gens[&current]["stop_snapshot"].is_null(), "the current generation runs: {history:#}");
    let mut on_stop: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for s in history["snapshots"].as_array().expect("snapshots") {
        if s["kind"] == "on-stop" {
            on_stop.entry(s["generation"].as_u64().unwrap()).or_default().push(s["id"].as_str().unwrap());
        }
    }
    for (g, ids) in &on_stop {
        assert_eq!(ids.len(), 1, "generation {g} has several on-stop snapshots: {history:#}");
        assert_eq!(gens[g]["stop_snapshot"], ids[0], "generation {g}'s stop snapshot is the catalogued one");
    }
    assert_eq!(on_stop.keys().copied().collect::<Vec<_>>(), (1..current).collect::<Vec<_>>(), "{history:#}");
}

/// Waits until nothing accepts connections at `endpoint` any more.
fn wait_closed(site: &Site, endpoint: &str) {
    let addr = endpoint.parse().unwrap();
    site.wait_until(&format!("{endpoint} to close"), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err().then_some(())
    });
}

fn kill9(pid: u64) {
    // SAFETY: plain kill(2) on a task process of our own berth up.
    let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {pid}");
}

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

/// `curl` with the load balancer's certificate; returns (status, body).
fn lb_curl(cert: &str, args: &[&str]) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--cacert", cert, "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let mut body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&body[split + 1..]).to_string();
    body.truncate(split);
    (status, body)
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
    let redirect = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
        .arg(format!("{http}/health"))
        .output()
        .unwrap();
    let redirect = String::from_utf8_lossy(&redirect.stdout).to_string();
    assert!(redirect.starts_with("308 https://"), "{redirect}");
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
