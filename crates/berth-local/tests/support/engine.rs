//! The container engine of the container tests, and their image.
//!
//! The tests need a real engine: Podman serving the Docker Engine API on a
//! socket of its own, set up as `../shared/containers.md` says works on
//! these machines (runc, cgroupfs, limits below the hard ones). If one
//! answers at `$BERTH_TEST_DOCKER_HOST` it is used; otherwise this starts
//! `podman system service` (scripts/test installs podman). A missing
//! podman fails the test with what to install: it is never skipped.
//!
//! No registry is reachable, so images are made offline: busybox-static
//! for a shell and its tools, a non-root user (uid 10001, as
//! `deploy/docker/Dockerfile`), and for the `berth serve` image the binary
//! under test with the libraries `ldd` names and `berth serve` as its entry
//! point; `podman import` makes them images.
//!
//! One file, included by the test crates that need it (`#[path]`), so the
//! engine is started one way.

// Each including test crate uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The version of the image recipe below.
const RECIPE: u32 = 4;

/// Where the tests' own engine listens.
const SOCKET_DIR: &str = "/tmp/berth-test-engine";

/// The test engine: its `DOCKER_HOST` and the `CONTAINERS_CONF` its
/// `podman` commands need.
pub(crate) struct Engine {
    pub docker_host: String,
    pub conf: PathBuf,
}

impl Engine {
    /// A `podman` command speaking to this engine's storage.
    pub fn podman(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", &self.conf);
        cmd
    }

    /// The labelled containers of one state folder's logs path.
    pub fn containers_of(&self, state_logs: &Path) -> Vec<String> {
        let filter = format!("label=berth.state={}", state_logs.display());
        let out = self.podman().args(["ps", "-a", "--filter", &filter, "--format", "{{.ID}}"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }
}

/// Removes the containers of a state folder's logs path when dropped: a
/// test that ends by killing its `berth up` (or fails) leaves none running.
pub(crate) struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let engine = engine();
        for id in engine.containers_of(&self.0) {
            let _ = engine.podman().args(["rm", "-f", "-t", "0", &id]).output();
        }
    }
}

/// The engine, started on first use.
pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(start)
}

/// The image of `berth serve` made from `berth`, the binary under test.
pub(crate) fn serve_image(berth: &str) -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| build_image(engine(), Some(berth)))
}

/// An image of busybox alone (a shell, `sleep`, `httpd`, `wget`).
pub(crate) fn busybox_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| build_image(engine(), None))
}

fn start() -> Engine {
    let dir = PathBuf::from(SOCKET_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n\
         [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
    )
    .unwrap();
    if let Ok(host) = std::env::var("BERTH_TEST_DOCKER_HOST") {
        assert!(answers(&host), "BERTH_TEST_DOCKER_HOST={host} does not answer");
        return Engine { docker_host: host, conf };
    }
    let socket = dir.join("podman.sock");
    let docker_host = format!("unix://{}", socket.display());
    let engine = Engine { docker_host: docker_host.clone(), conf: conf.clone() };
    if answers(&docker_host) {
        return engine;
    }
    let podman = Command::new("podman").arg("--version").output();
    assert!(
        podman.is_ok_and(|o| o.status.success()),
        "the container tests need podman and runc: run scripts/test (it installs them), or apt-get install podman runc busybox-static"
    );
    let _ = std::fs::remove_file(&socket);
    let log = std::fs::File::create(dir.join("service.log")).unwrap();
    // Outlives this test run on purpose (never waited for): the next run
    // finds it answering.
    #[allow(clippy::zombie_processes)]
    Command::new("podman")
        .env("CONTAINERS_CONF", &conf)
        // The service outlives this test process: from `/`, it does not
        // depend on a folder that may be gone when the next test run uses
        // it (conmon fails every start with "Failed to get working directory").
        .current_dir("/")
        .args(["system", "service", "--time=0", &docker_host])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start podman system service");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !answers(&docker_host) {
        assert!(Instant::now() < deadline, "podman system service did not answer on {docker_host} within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    engine
}

/// Whether an engine answers `GET /version` at `host`.
fn answers(host: &str) -> bool {
    let Some(path) = host.strip_prefix("unix://") else { return false };
    Command::new("curl")
        .args(["-fs", "-o", "/dev/null", "--max-time", "5", "--unix-socket", path, "http://d/v1.41/version"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds `localhost/berth-test:<recipe>-<binary's mtime>` (or
/// `localhost/busybox-test:<recipe>`) unless it exists.
fn build_image(engine: &Engine, berth: Option<&str>) -> String {
    // The recipe's version is in the tag too: a changed recipe makes a new image.
    let image = match berth {
        Some(berth) => {
            let stamp = std::fs::metadata(berth)
                .and_then(|m| m.modified())
                .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
                .unwrap();
            format!("localhost/berth-test:{RECIPE}-{stamp}")
        }
        None => format!("localhost/busybox-test:{RECIPE}"),
    };
    if engine.podman().args(["image", "exists", &image]).status().unwrap().success() {
        return image;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for dir in ["bin", "usr/local/bin", "etc", "data", "tmp", "lib64", "lib/x86_64-linux-gnu"] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", r.join("bin/busybox")).expect("busybox-static is installed (/bin/busybox)");
    for applet in [
        "sh", "wget", "test", "sleep", "cat", "ls", "kill", "echo", "id", "dd", "head", "rm", "touch", "httpd", "nc",
        "date", "timeout", "tr",
    ] {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(applet)).unwrap();
    }
    let mut changes = vec!["USER 10001:10001", "ENV PATH=/usr/local/bin:/bin"];
    if let Some(binary) = berth {
        let berth = r.join("usr/local/bin/berth");
        // Stripped: the debug binary is mostly debug info.
        let stripped = Command::new("strip").arg("-o").arg(&berth).arg(binary).status().is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(binary, &berth).unwrap();
        }
        for lib in libraries(binary) {
            let to = r.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &to).unwrap();
        }
        changes.push(r#"ENTRYPOINT ["/usr/local/bin/berth", "serve"]"#);
        // The stack's health check runs curl (deploy/docker/Dockerfile
        // installs it); busybox has wget, which this stand-in runs.
        let curl = r.join("usr/local/bin/curl");
        std::fs::write(&curl, "#!/bin/sh\nfor last; do :; done\nexec wget -q -O /dev/null \"$last\"\n").unwrap();
        std::fs::set_permissions(&curl, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nberth:x:10001:10001::/data:/bin/sh\n")
        .unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\nberth:x:10001:\n").unwrap();
    let tar = root.path().with_extension("tar");
    let status = Command::new("tar").arg("-C").arg(r).arg("-cf").arg(&tar).arg(".").status().unwrap();
    assert!(status.success(), "tar of the image's root");
    let mut import = engine.podman();
    import.arg("import");
    for change in changes {
        import.args(["--change", change]);
    }
    let out = import.arg(&tar).arg(&image).output().unwrap();
    let _ = std::fs::remove_file(&tar);
    assert!(out.status.success(), "podman import: {}", String::from_utf8_lossy(&out.stderr));
    image
}

/// The shared libraries `ldd` says `binary` loads.
fn libraries(binary: &str) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from).collect()
}
