//! The `berth up` test site: a temporary folder with a state folder, a
//! `berth.toml` and flags, the running `berth up`, and the CLI and HTTP
//! helpers the platform tests drive it with.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{client, sha256, BERTH};

/// The longest any single wait may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);
pub(crate) const POLL: Duration = Duration::from_millis(150);
/// `resync_interval` of the test configurations.
pub(crate) const RESYNC: Duration = Duration::from_secs(1);
/// `sweep_grace` of the test configurations.
pub(crate) const SWEEP_GRACE: Duration = Duration::from_secs(2);

/// The platform settings every test configuration starts with: fast
/// resyncs and sweeps, a load balancer on free ports with quick checks.
pub(crate) const PLATFORM: &str = r#"
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

/// Two claims; a claim fails its health check while `<flags>/<claim>`
/// exists, and every task of a revision with `FAIL_HEALTH` set fails it.
pub(crate) const TWO_CLAIMS: &str = r#"

[[service]]
name = "files"
desired_count = 2
stop_timeout = "5s"
env = { FLAG_DIR = "{FLAGS}" }

[service.health_check]
command = ["sh", "-c", 'test ! -e "$FLAG_DIR/$BERTH_CLAIM" && test -z "$FAIL_HEALTH" && curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null']
interval = "300ms"
timeout = "2s"
retries = 2
start_period = "3s"

[service.autoscaling]
enabled = false
"#;

/// One claim with the default HTTP health check on `/health`.
pub(crate) const ONE_CLAIM: &str = r#"

[[service]]
name = "files"
desired_count = 1
stop_timeout = "5s"

[service.health_check]
interval = "300ms"
timeout = "2s"
retries = 2
start_period = "3s"

[service.autoscaling]
enabled = false
"#;

/// A `berth up` process; SIGKILLed when dropped (its tasks die with it).
pub(crate) struct Up {
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

impl Up {
    /// `kill -9` of the `berth up` process itself.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn wait_exit(&mut self, within: Duration) -> ExitStatus {
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
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A temporary folder with a state folder, a `berth.toml` and a flags folder.
pub(crate) struct Site {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) state: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) flags: PathBuf,
    pub(crate) logs: RefCell<Vec<PathBuf>>,
}

impl Site {
    /// `{FLAGS}` in `toml` becomes the flags folder; [`PLATFORM`] comes first.
    pub(crate) fn new(toml: &str) -> Self {
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
    pub(crate) fn up(&self, env: &[(&str, &str)]) -> Up {
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
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
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

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "berth {args:?} failed: {}\n{}", stderr(&out), self.diagnostics());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `--json` answer of a command, or `None` while it fails (as while
    /// `berth up` is starting).
    pub(crate) fn try_json(&self, args: &[&str]) -> Option<Value> {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.cli(&args);
        if !out.status.success() {
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).expect("--json prints JSON"))
    }

    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut with = args.to_vec();
        with.push("--json");
        let out = self.cli(&with);
        assert!(out.status.success(), "berth {args:?} failed: {}\n{}", stderr(&out), self.diagnostics());
        serde_json::from_slice(&out.stdout).expect("--json prints JSON")
    }

    pub(crate) fn claim(&self, name: &str) -> Value {
        let claims = self.json(&["claims"]);
        claims.as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or_else(|| {
            panic!("no claim {name} in {claims:#}");
        })
    }

    pub(crate) fn history(&self, name: &str) -> Value {
        self.json(&["claim", "history", name])
    }

    /// The task serving `claim`, once the claim is running, its handoff is
    /// done and its current task is RUNNING and HEALTHY (at `generation` if
    /// given).
    pub(crate) fn serving(&self, claim: &str, generation: Option<u64>) -> Option<Value> {
        let claims = self.try_json(&["claims"])?;
        serving_in(&claims, &self.try_json(&["ps"])?, claim, generation)
    }

    pub(crate) fn wait_serving(&self, claim: &str, generation: Option<u64>) -> Value {
        let what = match generation {
            Some(g) => format!("{claim} serving a healthy task at generation {g}"),
            None => format!("{claim} serving a healthy task"),
        };
        self.wait_until(&what, || self.serving(claim, generation))
    }

    /// Polls `probe` until it answers, for at most [`DEADLINE`].
    pub(crate) fn wait_until<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
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
    pub(crate) fn diagnostics(&self) -> String {
        let events = self.cli(&["events"]);
        let log = self.logs.borrow().last().map(|l| tail(l, 30)).unwrap_or_default();
        format!(
            "--- berth events:\n{}{}\n--- berth up log (tail):\n{log}",
            String::from_utf8_lossy(&events.stdout),
            stderr(&events)
        )
    }

    /// The volume folders (directories only) under `<state>/volumes`.
    pub(crate) fn volume_dirs(&self) -> Vec<String> {
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

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn endpoint(task: &Value) -> String {
    task["endpoint"].as_str().expect("a running task has an endpoint").to_owned()
}

/// Files with random content, named `<prefix>-<i>.bin`, of the given sizes.
pub(crate) fn random_files(prefix: &str, sizes: &[usize]) -> BTreeMap<String, Vec<u8>> {
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
pub(crate) const LOCAL_SCOPE: (&str, &str) = ("X-Berth-Scope", "local");

pub(crate) fn upload(endpoint: &str, files: &BTreeMap<String, Vec<u8>>) {
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
pub(crate) fn assert_files(endpoint: &str, files: &BTreeMap<String, Vec<u8>>) {
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
pub(crate) fn generations(history: &Value) -> BTreeMap<u64, Value> {
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
pub(crate) fn assert_history_chain(history: &Value) {
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
pub(crate) fn wait_closed(site: &Site, endpoint: &str) {
    let addr = endpoint.parse().unwrap();
    site.wait_until(&format!("{endpoint} to close"), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err().then_some(())
    });
}

pub(crate) fn kill9(pid: u64) {
    // SAFETY: plain kill(2) on a task process of our own berth up.
    let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {pid}");
}

/// `curl` with the load balancer's certificate; returns (status, body).
pub(crate) fn lb_curl(cert: &str, args: &[&str]) -> (String, Vec<u8>) {
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

/// The load balancer's HTTP listener at `http` answers `/health` with a
/// permanent redirect to HTTPS (checked with curl).
pub(crate) fn assert_redirects_to_https(http: &str) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
        .arg(format!("{http}/health"))
        .output()
        .unwrap();
    let redirect = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(redirect.starts_with("308 https://"), "{redirect}");
}

/// [`Site::serving`] judged from one reading of `berth claims` and one of
/// `berth ps`, so several claims can be judged at one moment.
pub(crate) fn serving_in(claims: &Value, tasks: &Value, claim: &str, generation: Option<u64>) -> Option<Value> {
    let c = claims.as_array()?.iter().find(|c| c["name"] == claim)?;
    if c["desired"] != "running" || !c["handoff"].is_null() || c["task"].is_null() {
        return None;
    }
    if generation.is_some_and(|g| c["generation"] != g) {
        return None;
    }
    let t = tasks.as_array()?.iter().find(|t| t["arn"] == c["task"])?;
    let ok = t["claim"] == claim
        && t["generation"] == c["generation"]
        && t["last_status"] == "RUNNING"
        && t["health"] == "HEALTHY";
    ok.then(|| t.clone())
}
