//! The load balancer end to end on loopback: real TLS with the self-signed
//! certificate, real HTTP targets (small axum servers in the test), short
//! health-check intervals, generous deadlines and no timing assertions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_local::lb::{HealthState, HttpAction, LbConfig, LoadBalancer, Target, TargetHealth};
use bytes::Bytes;
use http_body_util::BodyExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------- targets

/// What a test target counts and how it can be steered.
#[derive(Default)]
struct Knobs {
    name: String,
    failing: AtomicBool,
    passes: AtomicUsize,
    failures: AtomicUsize,
    slow_started: AtomicUsize,
    release_slow: Notify,
}

/// A task behind the load balancer: `/health`, `/whoami` (echoes forwarding
/// headers), `/slow` (answers once released), `POST /upload` (hashes and
/// discards the body).
struct TestTarget {
    knobs: Arc<Knobs>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl TestTarget {
    async fn start(name: &str) -> Self {
        let knobs = Arc::new(Knobs { name: name.into(), ..Knobs::default() });
        let app = Router::new()
            .route("/health", get(health))
            .route("/whoami", get(whoami))
            .route("/slow", get(slow))
            .route("/upload", post(upload))
            .with_state(knobs.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { knobs, addr, server }
    }

    fn target(&self) -> Target {
        Target::new(format!("arn:berth:local:task/{}", self.knobs.name), self.addr)
    }

    fn name(&self) -> &str {
        &self.knobs.name
    }
}

async fn health(State(k): State<Arc<Knobs>>) -> StatusCode {
    if k.failing.load(Ordering::SeqCst) {
        k.failures.fetch_add(1, Ordering::SeqCst);
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        k.passes.fetch_add(1, Ordering::SeqCst);
        StatusCode::OK
    }
}

async fn whoami(State(k): State<Arc<Knobs>>, headers: HeaderMap) -> Json<serde_json::Value> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    Json(serde_json::json!({
        "name": k.name,
        "x-forwarded-for": header("x-forwarded-for"),
        "x-forwarded-proto": header("x-forwarded-proto"),
        "x-forwarded-port": header("x-forwarded-port"),
        "x-hop": header("x-hop"),
    }))
}

async fn slow(State(k): State<Arc<Knobs>>) -> String {
    let released = k.release_slow.notified();
    k.slow_started.fetch_add(1, Ordering::SeqCst);
    released.await;
    k.name.clone()
}

async fn upload(request: Request) -> Json<serde_json::Value> {
    let mut body = request.into_body();
    let (mut hasher, mut len) = (Sha256::new(), 0u64);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            hasher.update(&data);
            len += data.len() as u64;
        }
    }
    Json(serde_json::json!({ "len": len, "sha256": hex::encode(hasher.finalize()) }))
}

// ---------------------------------------------------------------- setup

/// Fast health checks: every 100 ms, healthy after 2 passes, unhealthy after 2 failures, no grace.
fn config() -> LbConfig {
    LbConfig {
        http_port: 0,
        https_port: 0,
        health: TargetHealth {
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            ..TargetHealth::default()
        },
        grace_period: Duration::ZERO,
        ..LbConfig::default()
    }
}

struct Setup {
    lb: LoadBalancer,
    targets: watch::Sender<Vec<Target>>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start(config: LbConfig, targets: &[&TestTarget]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(targets.iter().map(|t| t.target()).collect());
        let lb = LoadBalancer::start(config, dir.path(), rx).await.unwrap();
        let client = client_trusting(Some(&std::fs::read(lb.cert_path()).unwrap()));
        Self { lb, targets: tx, client, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.lb.https_addr().port())
    }

    fn state(&self, target: &TestTarget) -> Option<HealthState> {
        let id = target.target().id;
        self.lb.targets().into_iter().find(|t| t.id == id && t.addr == target.addr).map(|t| t.state)
    }

    async fn wait_state(&self, target: &TestTarget, want: HealthState) {
        eventually(&format!("{} {want}", target.name()), || self.state(target) == Some(want)).await;
    }

    async fn whoami(&self) -> serde_json::Value {
        let response = self.client.get(self.url("/whoami")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// A client that trusts only `pem` (or nothing), follows no redirect.
fn client_trusting(pem: Option<&[u8]>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.unwrap_or_default()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().use_preconfigured_tls(tls).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Polls `check` until it holds; fails after a generous 20 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn http_redirects_permanently_to_the_same_path_on_https() {
    let s = Setup::start(config(), &[]).await;
    let url = format!("http://127.0.0.1:{}/files/a.txt?v=1", s.lb.http_addr().port());
    for response in [s.client.get(&url).send().await.unwrap(), s.client.post(&url).body("x").send().await.unwrap()] {
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        let location = response.headers()["location"].to_str().unwrap().to_string();
        assert_eq!(location, format!("https://127.0.0.1:{}/files/a.txt?v=1", s.lb.https_addr().port()));
    }
}

#[tokio::test]
async fn self_signed_cert_is_trusted_through_its_pem_and_reused_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_tx, rx) = watch::channel(Vec::new());
    let lb = LoadBalancer::start(config(), dir.path(), rx.clone()).await.unwrap();
    assert_eq!(lb.cert_path(), dir.path().join("lb-cert.pem"));
    assert!(dir.path().join("lb-key.pem").is_file());
    let pem = std::fs::read(lb.cert_path()).unwrap();
    let url = |lb: &LoadBalancer, host: &str| format!("https://{host}:{}/health", lb.https_addr().port());

    let trusting = client_trusting(Some(&pem));
    assert_eq!(trusting.get(url(&lb, "127.0.0.1")).send().await.unwrap().status(), 503);
    assert!(client_trusting(None).get(url(&lb, "127.0.0.1")).send().await.is_err(), "an untrusted cert must fail");
    lb.shutdown().await;

    let lb = LoadBalancer::start(config(), dir.path(), rx).await.unwrap();
    assert_eq!(std::fs::read(lb.cert_path()).unwrap(), pem, "the certificate is reused, byte for byte");
    let fresh = client_trusting(Some(&pem));
    assert_eq!(fresh.get(url(&lb, "127.0.0.1")).send().await.unwrap().status(), 503);
    lb.shutdown().await;
}

#[tokio::test]
async fn no_healthy_target_answers_503_json() {
    let s = Setup::start(config(), &[]).await;
    let response = s.client.get(s.url("/files")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "no healthy target");
}

#[tokio::test]
async fn a_target_gets_traffic_only_once_healthy_threshold_passes() {
    let a = TestTarget::start("a").await;
    a.knobs.failing.store(true, Ordering::SeqCst);
    // A long grace period: the failures before it passes do not count, so it stays initial.
    let s = Setup::start(LbConfig { grace_period: Duration::from_secs(600), ..config() }, &[&a]).await;
    eventually("3 failed checks", || a.knobs.failures.load(Ordering::SeqCst) >= 3).await;
    assert_eq!(s.state(&a), Some(HealthState::Initial));
    assert_eq!(s.client.get(s.url("/whoami")).send().await.unwrap().status(), 503);

    a.knobs.failing.store(false, Ordering::SeqCst);
    s.wait_state(&a, HealthState::Healthy).await;
    assert!(a.knobs.passes.load(Ordering::SeqCst) >= 2, "healthy before the threshold");
    let reason = s.lb.targets()[0].reason.clone();
    assert!(reason.contains("passed"), "{reason}");
    assert_eq!(s.whoami().await["name"], "a");
}

#[tokio::test]
async fn requests_spread_over_two_healthy_targets() {
    let (a, b) = (TestTarget::start("a").await, TestTarget::start("b").await);
    let s = Setup::start(config(), &[&a, &b]).await;
    s.wait_state(&a, HealthState::Healthy).await;
    s.wait_state(&b, HealthState::Healthy).await;
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..10 {
        *seen.entry(s.whoami().await["name"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|&n| n >= 3), "{seen:?}");
}

#[tokio::test]
async fn forwarding_headers_reach_the_target_and_hop_by_hop_ones_do_not() {
    let a = TestTarget::start("a").await;
    let s = Setup::start(config(), &[&a]).await;
    s.wait_state(&a, HealthState::Healthy).await;
    let response = s
        .client
        .get(s.url("/whoami"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .send()
        .await
        .unwrap();
    let seen: serde_json::Value = response.json().await.unwrap();
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-port"], s.lb.https_addr().port().to_string());
    assert_eq!(seen["x-hop"], serde_json::Value::Null);
    let direct = format!("http://{}/whoami", a.addr);
    let direct = s.client.get(direct).header("connection", "x-hop").header("x-hop", "secret").send().await.unwrap();
    let direct: serde_json::Value = direct.json().await.unwrap();
    assert_eq!(direct["x-hop"], "secret", "the client does send it: the load balancer strips it");

    let plain: serde_json::Value = s.whoami().await;
    assert_eq!(plain["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn the_http_listener_with_the_forward_action_proxies_plain_http() {
    let a = TestTarget::start("a").await;
    let s = Setup::start(LbConfig { http_action: HttpAction::Forward, ..config() }, &[&a]).await;
    s.wait_state(&a, HealthState::Healthy).await;
    let port = s.lb.http_addr().port();
    let seen: serde_json::Value =
        s.client.get(format!("http://127.0.0.1:{port}/whoami")).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen["name"], "a");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-port"], port.to_string());
    // HTTPS still proxies, and says so.
    assert_eq!(s.whoami().await["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn a_target_failing_health_checks_is_taken_out_after_unhealthy_threshold() {
    let (a, b) = (TestTarget::start("a").await, TestTarget::start("b").await);
    let s = Setup::start(config(), &[&a, &b]).await;
    s.wait_state(&a, HealthState::Healthy).await;
    s.wait_state(&b, HealthState::Healthy).await;

    a.knobs.failing.store(true, Ordering::SeqCst);
    s.wait_state(&a, HealthState::Unhealthy).await;
    assert!(a.knobs.failures.load(Ordering::SeqCst) >= 2, "unhealthy before the threshold");
    for _ in 0..6 {
        assert_eq!(s.whoami().await["name"], "b");
    }

    a.knobs.failing.store(false, Ordering::SeqCst);
    s.wait_state(&a, HealthState::Healthy).await;
}

#[tokio::test]
async fn a_removed_target_drains_its_in_flight_request_and_gets_no_new_ones() {
    let (a, b) = (TestTarget::start("a").await, TestTarget::start("b").await);
    let s = Setup::start(config(), &[&a]).await;
    s.wait_state(&a, HealthState::Healthy).await;

    let slow = tokio::spawn(s.client.get(s.url("/slow")).send());
    eventually("the slow request reaches a", || a.knobs.slow_started.load(Ordering::SeqCst) == 1).await;

    s.targets.send_replace(vec![b.target()]);
    s.wait_state(&a, HealthState::Draining).await;
    let a_state = s.lb.targets().into_iter().find(|t| t.addr == a.addr).unwrap();
    assert_eq!(a_state.in_flight, 1);
    s.wait_state(&b, HealthState::Healthy).await;
    for _ in 0..4 {
        assert_eq!(s.whoami().await["name"], "b");
    }

    a.knobs.release_slow.notify_one();
    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "a");
    eventually("a is forgotten once idle", || s.state(&a).is_none()).await;
}

#[tokio::test]
async fn an_unreachable_target_answers_502_json() {
    let a = TestTarget::start("a").await;
    // One pass makes it healthy, and the next check is far away: the 502 comes before any unhealthy verdict.
    let health = TargetHealth { healthy_threshold: 1, interval: Duration::from_secs(600), ..config().health };
    let s = Setup::start(LbConfig { health, ..config() }, &[&a]).await;
    s.wait_state(&a, HealthState::Healthy).await;
    a.server.abort();
    let _ = (&mut { a.server }).await;

    let response = s.client.get(s.url("/whoami")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "target unreachable");
}

/// The test process's resident memory in bytes (the load balancer runs in it).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_upload_streams_through_intact_in_constant_memory() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: u64 = 256 * 1024 * 1024 / CHUNK as u64;
    let a = TestTarget::start("a").await;
    let s = Setup::start(config(), &[&a]).await;
    s.wait_state(&a, HealthState::Healthy).await;
    s.whoami().await;

    // Chunk i: one random block with i in its first 8 bytes, so the data is not periodic.
    let mut block = vec![0u8; CHUNK];
    fastrand::Rng::with_seed(7).fill(&mut block);
    let block = Bytes::from(block);
    let chunk = move |i: u64| {
        let mut c = block.to_vec();
        c[..8].copy_from_slice(&i.to_le_bytes());
        Bytes::from(c)
    };
    let mut expected = Sha256::new();
    for i in 0..CHUNKS {
        expected.update(chunk(i));
    }
    let expected = hex::encode(expected.finalize());

    let before = rss();
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(rss(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let stream = futures_util::stream::iter((0..CHUNKS).map(move |i| Ok::<_, std::io::Error>(chunk(i))));
    let started = std::time::Instant::now();
    let upload = s.client.post(s.url("/upload")).body(reqwest::Body::wrap_stream(stream)).send();
    let response = tokio::time::timeout(Duration::from_secs(300), upload).await.expect("upload within 5 min").unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();

    assert_eq!(answer["len"], CHUNKS * CHUNK as u64);
    assert_eq!(answer["sha256"], expected);
    let growth = peak.load(Ordering::SeqCst).saturating_sub(before);
    eprintln!("256 MiB through the load balancer in {:?}, peak RSS growth {} KiB", started.elapsed(), growth / 1024);
    assert!(growth < 64 * 1024 * 1024, "memory grew by {} MiB during the upload", growth / (1024 * 1024));
}

#[tokio::test]
async fn a_request_still_running_when_the_deregistration_delay_ends_is_cut() {
    let a = TestTarget::start("a").await;
    let s = Setup::start(LbConfig { deregistration_delay: Duration::from_millis(300), ..config() }, &[&a]).await;
    s.wait_state(&a, HealthState::Healthy).await;

    let slow = tokio::spawn(s.client.get(s.url("/slow")).send());
    eventually("the slow request reaches a", || a.knobs.slow_started.load(Ordering::SeqCst) == 1).await;
    s.targets.send_replace(Vec::new());
    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.status(), 502);
    eventually("a is forgotten", || s.state(&a).is_none()).await;
}

/// Issue 23: a replacement waited whole intervals for its checks (with the
/// blog's 30 s, a minute before traffic). A new target is checked every
/// `start_interval` until it is first healthy.
#[tokio::test]
async fn a_new_target_is_checked_at_its_start_interval_until_healthy_not_its_interval() {
    let a = TestTarget::start("a").await;
    let health = TargetHealth {
        healthy_threshold: 3,
        interval: Duration::from_secs(600),
        start_interval: Duration::from_millis(50),
        ..config().health
    };
    let s = Setup::start(LbConfig { health, ..config() }, &[&a]).await;
    // Three passes with 600 s between checks would take 20 minutes.
    s.wait_state(&a, HealthState::Healthy).await;
    assert_eq!(s.whoami().await["name"], "a");
}
