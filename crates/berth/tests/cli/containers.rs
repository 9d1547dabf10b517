//! `berth up` with container tasks: the service names an image, each task
//! is a container of a real engine (Podman through the Docker Engine API,
//! see `engine`) running `berth serve` as a non-root user on the claim's
//! volume, and the tests drive it as the process tests do.

use crate::engine::{engine, serve_image, Cleanup};
use crate::site::*;

/// One claim of the `berth serve` image on its own network (the port
/// published on loopback); its health check runs in the container and
/// fails while `/tmp/unhealthy` exists there.
const CONTAINER_CLAIM: &str = r#"

[[service]]
name = "files"
desired_count = 1
image = "{IMAGE}"
stop_timeout = "5s"
cpu = 512
memory = 256

[service.health_check]
command = ["CMD-SHELL", "test ! -e /tmp/unhealthy && wget -q -O /dev/null http://127.0.0.1:5000/health"]
interval = "300ms"
timeout = "2s"
retries = 2
start_period = "3s"

[service.autoscaling]
enabled = false
"#;

/// A site whose containers are removed when it is dropped (after the
/// test's `berth up`: see [`Cleanup`]).
struct ContainerSite {
    site: Site,
    _cleanup: Cleanup,
}

impl std::ops::Deref for ContainerSite {
    type Target = Site;
    fn deref(&self) -> &Site {
        &self.site
    }
}

fn site(toml: &str) -> (ContainerSite, Vec<(&'static str, String)>) {
    let engine = engine();
    let site = Site::new(&toml.replace("{IMAGE}", serve_image(crate::util::BERTH)));
    let cleanup = Cleanup(site.state.join("logs"));
    (ContainerSite { site, _cleanup: cleanup }, vec![("DOCKER_HOST", engine.docker_host.clone())])
}

fn start(site: &Site, env: &[(&'static str, String)]) -> Up {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    site.up(&env)
}

/// The container name berth gives a task.
fn container_of(task: &serde_json::Value) -> String {
    let arn = task["arn"].as_str().unwrap();
    format!("berth-{}", arn.rsplit('/').next().unwrap())
}

#[test]
fn a_container_task_keeps_every_file_through_kill_spot_failed_health_and_down_up() {
    let (site, env) = site(CONTAINER_CLAIM);
    let mut up = start(&site, &env);
    let t = site.wait_serving("files-0", Some(1));
    let files = random_files("box", &[2 * 1024 * 1024 + 5, 4096, 1]);
    upload(&endpoint(&t), &files);
    assert_files(&endpoint(&t), &files);
    // The volume is the container user's (the image runs as uid 10001).
    let volumes = site.volume_dirs();
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    let owner =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(site.state.join("volumes").join(&volumes[0])).unwrap());
    assert_eq!(owner, 10001, "the volume is owned by the container's user");

    // (a) kill -9 of the container's main process.
    kill9(t["pid"].as_u64().expect("a container task has its main process's pid"));
    let t = site.wait_serving("files-0", Some(2));
    assert_files(&endpoint(&t), &files);

    // (b) A Spot interruption.
    site.ok(&["stop-task", t["arn"].as_str().unwrap(), "--reason", "spot"]);
    let t = site.wait_serving("files-0", Some(3));
    assert_files(&endpoint(&t), &files);

    // (c) The container's own health check fails (run in the container).
    let out = engine().podman().args(["exec", &container_of(&t), "touch", "/tmp/unhealthy"]).output().unwrap();
    assert!(out.status.success(), "podman exec: {}", String::from_utf8_lossy(&out.stderr));
    let t = site.wait_serving("files-0", Some(4));
    assert_files(&endpoint(&t), &files);

    let h = site.history("files-0");
    let g = generations(&h);
    assert_eq!(g[&1]["stop_code"], "EssentialContainerExited", "{h:#}");
    assert_eq!(g[&2]["stop_code"], "SpotInterruption", "{h:#}");
    let reason = g[&3]["stop_reason"].as_str().unwrap_or_default().to_lowercase();
    assert!(reason.contains("health"), "generation 3 stopped for its health: {h:#}");
    assert_history_chain(&h);

    // (d) berth down removes every container; berth up brings the files back.
    site.ok(&["down"]);
    assert_eq!(up.wait_exit(DEADLINE).code(), Some(0), "log:\n{}", tail(&up.log, 30));
    assert_eq!(engine().containers_of(&site.state.join("logs")), Vec::<String>::new(), "no container is left");
    drop(up);
    let _up = start(&site, &env);
    let t = site.wait_serving("files-0", Some(5));
    assert_files(&endpoint(&t), &files);
}

#[test]
fn a_killed_berth_up_leaves_no_container_behind_and_its_files_come_back() {
    let (site, env) = site(CONTAINER_CLAIM);
    let files = random_files("left", &[300 * 1024, 5]);
    {
        let mut up = start(&site, &env);
        let t = site.wait_serving("files-0", Some(1));
        upload(&endpoint(&t), &files);
        up.kill9();
        // The container outlives its supervisor (the engine runs it).
        assert_eq!(engine().containers_of(&site.state.join("logs")).len(), 1, "the task's container still runs");
    }
    let _up = start(&site, &env);
    let t = site.wait_serving("files-0", None);
    assert_files(&endpoint(&t), &files);
    let left = engine().containers_of(&site.state.join("logs"));
    assert_eq!(left.len(), 1, "only the new task's container: {left:?}");
    assert!(left[0].len() >= 12 && container_of(&t).starts_with("berth-"), "{left:?}");
}

#[test]
fn an_oom_kill_under_a_64_mib_limit_is_reported_as_out_of_memory() {
    let toml = r#"

[[service]]
name = "hog"
desired_count = 1
image = "{IMAGE}"
entry_point = ["/bin/sh", "-c"]
command = ['x=0123456789abcdef; while true; do x="$x$x"; done']
memory = 64
stop_timeout = "2s"

[service.health_check]
enabled = false

[service.autoscaling]
enabled = false
"#;
    let (site, env) = site(toml);
    let _up = start(&site, &env);
    let h = site.wait_until("hog-0's first generation to be stopped by the kernel", || {
        let h = site.try_json(&["claim", "history", "hog-0"])?;
        let g = generations(&h);
        g.get(&1).filter(|g| !g["stop_code"].is_null()).map(|_| h.clone())
    });
    let g = generations(&h);
    let reason = g[&1]["stop_reason"].as_str().unwrap_or_default();
    assert_eq!(g[&1]["stop_code"], "EssentialContainerExited", "{h:#}");
    assert!(reason.contains("OutOfMemoryError"), "the stop reason says OutOfMemoryError: {h:#}");
}

/// Two claims of the `berth serve` image, each on its own network, behind
/// the load balancer. They answer as one namespace only if each reaches the
/// admin API's peer list and the other task from inside its container.
const TWO_CONTAINER_CLAIMS: &str = r#"

[[service]]
name = "files"
desired_count = 2
image = "{IMAGE}"
stop_timeout = "5s"

[service.health_check]
command = ["CMD-SHELL", "test ! -e /tmp/unhealthy && wget -q -O /dev/null http://127.0.0.1:$PORT/health"]
interval = "300ms"
timeout = "2s"
retries = 2
start_period = "3s"

[service.deployment]
timeout = "2m"

[service.autoscaling]
enabled = false

[service.backup]
interval = "1h"
"#;

#[test]
fn the_blogs_sequence_on_two_container_tasks_on_their_own_networks_survives_spot_health_and_image_deploys() {
    use crate::up_platform::{blog_sequence, events_of_kind, task_revision};
    let (site, env) = site(TWO_CONTAINER_CLAIMS);
    let _up = start(&site, &env);
    site.wait_serving("files-0", Some(1));
    site.wait_serving("files-1", Some(1));
    site.wait_until("lb.json", || std::fs::metadata(site.state.join("lb.json")).ok());
    let mut all = std::collections::BTreeMap::new();
    blog_sequence(&site, &random_files("start", &[20, 100 * 1024, 1 << 20]), &mut all);
    // Each task lists the files its peer holds: it reached the peer list and
    // the peer from inside its container.
    for claim in ["files-0", "files-1"] {
        let t = site.wait_serving(claim, None);
        let url = format!("http://{}/files", t["endpoint"].as_str().unwrap());
        site.wait_until(&format!("{claim} lists every file"), || {
            let listing: serde_json::Value = reqwest::blocking::get(&url).ok()?.json().ok()?;
            let names: Vec<&str> = listing["files"].as_array()?.iter().filter_map(|f| f["name"].as_str()).collect();
            all.keys().all(|name| names.contains(&name.as_str())).then_some(())
        });
    }
    // A backup is quiesced through the container's published port.
    let out = site.ok(&["backup", "now", "files-0"]);
    assert!(out.contains("application-consistent"), "berth serve in a container quiesces: {out}");

    // A Spot-style stop.
    let t = site.wait_serving("files-0", None);
    site.ok(&["stop-task", t["arn"].as_str().unwrap(), "--reason", "spot"]);
    site.wait_serving("files-0", Some(t["generation"].as_u64().unwrap() + 1));
    blog_sequence(&site, &random_files("spot", &[3000, 70_000]), &mut all);

    // The container's own health check fails.
    let t = site.wait_serving("files-1", None);
    let out = engine().podman().args(["exec", &container_of(&t), "touch", "/tmp/unhealthy"]).output().unwrap();
    assert!(out.status.success(), "podman exec: {}", String::from_utf8_lossy(&out.stderr));
    site.wait_serving("files-1", Some(t["generation"].as_u64().unwrap() + 1));
    blog_sequence(&site, &random_files("health", &[5000]), &mut all);

    // A rolling deployment to a new tag of the image.
    let v2 = format!("{}-v2", serve_image(crate::util::BERTH));
    let out = engine().podman().args(["tag", serve_image(crate::util::BERTH), &v2]).output().unwrap();
    assert!(out.status.success(), "podman tag: {}", String::from_utf8_lossy(&out.stderr));
    site.ok(&["deploy", "files", "--image", &v2, "--wait", "--timeout", "2m"]);
    for claim in ["files-0", "files-1"] {
        let t = site.wait_serving(claim, None);
        assert_eq!(task_revision(&t), 2, "{t:#}");
        let image =
            engine().podman().args(["inspect", "--format", "{{.ImageName}}", &container_of(&t)]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&image.stdout).trim(), v2, "{claim} runs the new tag");
    }
    blog_sequence(&site, &random_files("deploy", &[9000]), &mut all);

    // A broken image (no command to run) rolls back to the working one.
    let broken = crate::engine::busybox_image();
    let out = site.cli(&["deploy", "files", "--image", broken, "--wait", "--timeout", "2m"]);
    assert!(!out.status.success(), "a rolled-back deployment fails --wait\n{}", site.diagnostics());
    assert!(stderr(&out).contains("rolled back"), "{}", stderr(&out));
    assert_eq!(events_of_kind(&site, "deploy-rolled-back").len(), 1);
    for claim in ["files-0", "files-1"] {
        let t = site.wait_serving(claim, None);
        assert_eq!(task_revision(&t), 2, "{claim} is back on revision 2: {t:#}");
    }
    blog_sequence(&site, &random_files("back", &[777]), &mut all);
    for claim in ["files-0", "files-1"] {
        assert_history_chain(&site.history(claim));
    }
}

#[test]
fn the_task_definition_the_cdk_stack_synthesizes_runs_under_berth_up() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/cdk/test/taskdef.json");
    let taskdef = std::fs::read_to_string(fixture).unwrap();
    assert!(taskdef.contains("\"IMAGE\""), "the fixture's image is a placeholder");
    let toml = r#"

[[service]]
name = "files"
desired_count = 1
task_definition = "taskdef.json"

[service.autoscaling]
enabled = false
"#;
    let (site, env) = site(toml);
    std::fs::write(
        site.dir.path().join("taskdef.json"),
        taskdef.replace("\"IMAGE\"", &format!("{:?}", serve_image(crate::util::BERTH))),
    )
    .unwrap();
    let up = start(&site, &env);
    // The stack's health check probes every 30 s: the first pass comes then.
    let t = site.wait_serving("files-0", Some(1));
    let files = random_files("stack", &[64 * 1024, 3]);
    upload(&endpoint(&t), &files);
    let inspect = engine()
        .podman()
        .args([
            "inspect",
            "--format",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.Config.User}}",
            &container_of(&t),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        "536870912 250000000 10001:10001",
        "the stack's task size and the image's user"
    );
    site.ok(&["stop-task", t["arn"].as_str().unwrap(), "--reason", "spot"]);
    let t = site.wait_serving("files-0", Some(2));
    assert_files(&endpoint(&t), &files);
    let log = std::fs::read_to_string(&up.log).unwrap();
    for field in ["executionRoleArn", "taskRoleArn", "containerDefinitions[0].logConfiguration"] {
        assert!(log.contains(field), "the warning names {field}:\n{}", tail(&up.log, 20));
    }
    drop(up);
}

/// A flag the containers can read: `GET /burn` on a loopback server of
/// the test answers 200 while it is up, 404 otherwise.
struct Flag {
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    port: u16,
}

impl Flag {
    fn serve() -> Self {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = up.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let status = if flag.load(std::sync::atomic::Ordering::SeqCst) { "200 OK" } else { "404 Not Found" };
                let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Self { up, port }
    }

    fn set(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn auto_scaling_reads_container_statistics_out_to_max_and_back_in() {
    let flag = Flag::serve();
    // `berth serve` beside a shell that spins for a second whenever the
    // flag is up: a real CPU load in the container's cgroup, capped at its
    // 128 CPU units, which the engine's statistics report. An eighth of a
    // core: a cap the spinning tasks still reach beside a busy core.
    let toml = r#"

[[service]]
name = "files"
desired_count = 2
image = "{IMAGE}"
network = "host"
entry_point = ["/bin/sh", "-c"]
command = ['berth serve & serve=$!; trap "kill $serve; wait $serve; exit 0" TERM; while :; do if wget -q -O /dev/null "http://127.0.0.1:$FLAG_PORT/burn"; then timeout 1 sh -c "while :; do :; done"; else sleep 0.2; fi; done']
env = { FLAG_PORT = "{FLAG_PORT}" }
stop_timeout = "5s"
cpu = 128

[service.health_check]
command = ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:$PORT/health"]
interval = "300ms"
timeout = "2s"
retries = 2
start_period = "3s"

[service.autoscaling]
min_capacity = 2
max_capacity = 4
sample_interval = "1s"
scale_out_cooldown = "3s"
scale_in_cooldown = "1s"
"#
    .replace("{FLAG_PORT}", &flag.port.to_string());
    let (site, env) = site(&toml);
    let _up = start(&site, &env);
    site.wait_serving("files-0", Some(1));
    site.wait_serving("files-1", Some(1));

    flag.set(true);
    site.wait_until("scale-out to 4 claims", || (crate::up_platform::desired_count(&site)? == 4).then_some(()));
    let out = crate::up_platform::events_of_kind(&site, "autoscale");
    assert!(out.iter().any(|e| e["message"].as_str().unwrap().contains("cpu")), "{out:#?}");
    // The fourth claim's task came up healthy. Read from the event log, not
    // from the claim now: beside a busy core the spinning tasks may fall
    // below the target at once and scale files-3 in again before a look at
    // it (a run beside `yes` saw it healthy for one second).
    site.wait_until("files-3 healthy at generation 1", || {
        let done = crate::up_platform::events_of_kind(&site, "handoff-done");
        done.iter()
            .any(|e| e["claim"] == "files-3" && e["message"].as_str().is_some_and(|m| m.contains("generation 1")))
            .then_some(())
    });
    flag.set(false);
    site.wait_until("scale-in to 2 claims", || (crate::up_platform::desired_count(&site)? == 2).then_some(()));
    site.wait_until("files-3 parked", || {
        let c = site.claim("files-3");
        (c["desired"] == "parked" && c["task"].is_null() && c["handoff"].is_null()).then_some(())
    });
}

#[test]
fn a_container_that_keeps_exiting_backs_off_and_its_output_is_in_berth_logs() {
    let toml = r#"

[[service]]
name = "loop"
desired_count = 1
image = "{IMAGE}"
entry_point = ["/bin/sh", "-c"]
command = ["echo starting generation $BERTH_GENERATION; exit 3"]

[service.health_check]
enabled = false

[service.autoscaling]
enabled = false
"#;
    let (site, env) = site(toml);
    let _up = start(&site, &env);
    let h = site.wait_until("loop-0's third generation to start", || {
        let h = site.try_json(&["claim", "history", "loop-0"])?;
        generations(&h).get(&3).filter(|g| g["started_at"].is_string()).map(|_| h.clone())
    });
    let g = generations(&h);
    let at = |v: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(g[&1]["stop_code"], "EssentialContainerExited", "{h:#}");
    // The first crash is replaced at once; the second waits out the backoff.
    let second_wait = at(&g[&3]["started_at"]) - at(&g[&2]["stopped_at"]);
    assert!(second_wait >= chrono::Duration::seconds(9), "the crash loop backs off: {second_wait} {h:#}");
    let claim = site.claim("loop-0");
    assert!(claim["backoff"]["failures"].as_u64().unwrap() >= 2, "{claim:#}");
    let task = g[&3]["task"].as_str().unwrap();
    let logs = site.wait_until("the third task's output in berth logs", || {
        let out = site.cli(&["logs", task]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("starting generation 3").then_some(text)
    });
    assert!(!logs.contains("generation 2"), "one task's log is its own: {logs}");
}
