//! The disaster-recovery copy into S3, against moto's S3 server on the
//! loopback interface (started with `scripts/moto-server`, which installs
//! moto into a venv on its first run). restic (0.14 or later) must read
//! the copy too. Neither is skipped when missing: the test fails.
//!
//! Everything runs in one test: the credentials are process environment
//! variables, which must not change while another test thread reads them.

#![cfg(feature = "s3")]

mod common;

use std::{
    fs,
    io::Read,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use berth_repo::{Progress, Repo, RepoError};
use common::{digest, meta, new_repo, write_random, PASSWORD};

/// How long moto may take to answer; its first run installs it from PyPI.
const MOTO_START: Duration = Duration::from_secs(300);

/// moto's server, killed when dropped so a failing test leaves none behind.
struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    fn start() -> Moto {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/moto-server");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
        let mut moto = Moto { child, port, log, _dir: dir };
        moto.wait_until_it_answers();
        moto
    }

    fn wait_until_it_answers(&mut self) {
        let client = http();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("scripts/moto-server exited ({status}) before answering:\n{}", self.log_text());
            }
            if client.get(self.url("")).send().is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if started.elapsed() > MOTO_START {
                panic!(
                    "scripts/moto-server did not answer on port {} in {MOTO_START:?}:\n{}",
                    self.port,
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn endpoint(&self) -> String {
        self.url("").trim_end_matches('/').to_string()
    }

    /// Creates a bucket; moto takes unsigned requests.
    fn create_bucket(&self, name: &str) {
        let resp = http().put(self.url(name)).send().unwrap();
        assert!(resp.status().is_success(), "creating bucket {name}: {}", resp.status());
    }

    fn log_text(&self) -> String {
        let mut text = String::new();
        let _ = fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        text
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // The script execs moto_server, so this is moto itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs restic (0.14 or later) on a repository; like tests/restic.rs, this
/// fails rather than skips without it.
fn restic(repo: &str, args: &[&str]) -> String {
    let output = Command::new("restic")
        .args(["--repo", repo, "--no-cache"])
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .unwrap_or_else(|err| panic!("cannot run restic ({err}); install it with `apt-get install restic`"));
    assert!(output.status.success(), "restic {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn open_s3(location: &str) -> Result<Repo, RepoError> {
    Repo::open_or_init(location, PASSWORD, Progress::Hidden)
}

#[test]
fn snapshots_copy_to_s3_and_restore_from_there() {
    let moto = Moto::start();
    moto.create_bucket("berth-dr");
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let endpoint = moto.endpoint();
    let location = format!("s3://berth-dr/berth?endpoint={endpoint}&region=us-east-1");

    let (_src_dir, src) = new_repo();
    let vol = tempfile::tempdir().unwrap();
    fs::create_dir(vol.path().join("sub")).unwrap();
    fs::write(vol.path().join("sub/small.txt"), "hello s3").unwrap();
    write_random(&vol.path().join("big"), 3 << 20, 7);
    let mut m = meta("db-0");
    m.generation = Some(4);
    m.pinned = true;
    let snap = src.snapshot(vol.path(), &m).unwrap();

    let dst = open_s3(&location).unwrap();
    assert_eq!(dst.location(), location);
    assert!(dst.list().unwrap().is_empty());
    let copied = src.copy_to(&dst, std::slice::from_ref(&snap.id)).unwrap();
    assert_eq!(copied.len(), 1, "{copied:?}");

    // A new handle sees the repository `open_or_init` created, and the
    // snapshot with its tags.
    let dst = Repo::open(&location, PASSWORD, Progress::Hidden).unwrap();
    let listed = dst.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tags, snap.tags);
    assert_eq!(listed[0].time, snap.time);
    assert_eq!(listed[0].claim.as_deref(), Some("db-0"));
    assert_eq!(listed[0].generation, Some(4));
    assert!(listed[0].pinned);

    let target = tempfile::tempdir().unwrap();
    dst.restore(&listed[0].id, target.path()).unwrap();
    assert_eq!(digest(target.path()), digest(vol.path()));

    let report = dst.check(true).unwrap();
    assert!(report.errors.is_empty(), "{report:?}");

    // Laid out as restic lays out S3 repositories: restic reads it.
    let restic_repo = format!("s3:{endpoint}/berth-dr/berth");
    let json = restic(&restic_repo, &["snapshots", "--json"]);
    assert!(json.contains(&listed[0].id) && json.contains("claim=db-0"), "{json}");
    restic(&restic_repo, &["check", "--read-data"]);
    assert!(src.copy_to(&dst, std::slice::from_ref(&snap.id)).unwrap().is_empty(), "a second copy copies nothing");
    assert!(open_s3(&location).unwrap().copy_to(&src, &[listed[0].id.clone()]).unwrap().is_empty());

    // What goes wrong is said plainly.
    let missing = format!("s3://no-such-bucket/berth?endpoint={endpoint}");
    let err = open_s3(&missing).unwrap_err();
    assert!(matches!(err, RepoError::BucketNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");

    let closed = format!("s3://berth-dr/berth?endpoint=http://127.0.0.1:{}", free_port());
    let err = open_s3(&closed).unwrap_err();
    assert!(matches!(err, RepoError::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());

    let err =
        Repo::open(&format!("s3://berth-dr/elsewhere?endpoint={endpoint}"), PASSWORD, Progress::Hidden).unwrap_err();
    assert!(matches!(err, RepoError::NotFound { .. }), "{err:?}");
    let err = Repo::open(&location, "wrong", Progress::Hidden).unwrap_err();
    assert!(matches!(err, RepoError::WrongPassword { .. }), "{err:?}");
    let err = open_s3("s3://berth-dr/x?endpoint=127.0.0.1:9").unwrap_err();
    assert!(matches!(err, RepoError::InvalidInput { .. }), "{err:?}");
}
