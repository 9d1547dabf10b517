//! The quiesce contract of `berth serve` (`POST /v1/quiesce`, `POST /v1/resume`),
//! over real HTTP on 127.0.0.1 against the service running in-process.
//!
//! Timing is only ever asserted as "still pending after a wait" or "completes
//! within a generous bound", never as a duration.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_files::{serve, ServeConfig};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a held request is watched to make sure it stays held.
const HOLD_CHECK: Duration = Duration::from_millis(300);
/// Generous bound for anything that must complete.
const EVENTUALLY: Duration = Duration::from_secs(20);

/// `berth serve` on a temporary volume, stopped when dropped.
struct Server {
    base: String,
    storage: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts the service (with a bearer token if given) and waits until `/health` answers.
    async fn start_with(token: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("data");
        // A free port can be taken by someone else before serve binds it: retry.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut config = ServeConfig::new(storage.clone(), SocketAddr::from(([127, 0, 0, 1], port)));
            config.token = token.map(str::to_owned);
            config.drain_timeout = Duration::from_secs(1);
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(serve(config, async move {
                let _ = stopped.await;
            }));
            let base = format!("http://127.0.0.1:{port}");
            if wait_healthy(&base, &task).await {
                return Server { base, storage, stop: Some(stop), _dir: dir };
            }
        }
        panic!("berth serve did not start");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.storage.join(name)
    }

    async fn post_json(&self, path: &str) -> (u16, Value) {
        let r = client().post(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn quiesce(&self, query: &str) -> (u16, Value) {
        self.post_json(&format!("/v1/quiesce{query}")).await
    }

    async fn resume(&self) -> Value {
        let (status, body) = self.post_json("/v1/resume").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// A raw-body PUT running in the background; answers its status.
    fn spawn_put(&self, name: &str, body: impl Into<reqwest::Body>) -> JoinHandle<u16> {
        let request = client().put(self.url(&format!("/files/{name}"))).body(body);
        tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn wait_healthy(base: &str, task: &JoinHandle<Result<(), berth_files::ServeError>>) -> bool {
    let c = client();
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while tokio::time::Instant::now() < deadline {
        if task.is_finished() {
            return false; // could not bind: the caller tries another port
        }
        if let Ok(r) = c.get(format!("{base}/health")).send().await {
            if r.status() == 200 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// Waits for a background request to answer, within [`EVENTUALLY`].
async fn finish<T>(handle: JoinHandle<T>) -> T {
    tokio::time::timeout(EVENTUALLY, handle).await.expect("the request completes").unwrap()
}

/// A multipart body with one `file` field, as `curl -F file=@NAME` sends it.
fn multipart(filename: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "berthboundary7MA4YWxkTrZu0gW";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Whether an upload's temporary file exists, i.e. the service is writing it.
fn upload_in_progress(storage: &Path) -> bool {
    std::fs::read_dir(storage)
        .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with(".berth-tmp-")))
        .unwrap_or(false)
}

async fn wait_for_upload_in_progress(storage: &Path) {
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while !upload_in_progress(storage) {
        assert!(tokio::time::Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A body sent in `chunks` pieces of `size` bytes (piece `i` is all `i`), one every `every`.
fn slow_body(chunks: u8, size: usize, every: Duration) -> reqwest::Body {
    let stream = futures_util::stream::iter(0..chunks).then(move |i| async move {
        tokio::time::sleep(every).await;
        Ok::<_, std::io::Error>(Bytes::from(vec![i; size]))
    });
    reqwest::Body::wrap_stream(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_quiesce_wait_until_resume() {
    let server = Server::start().await;
    let c = client();
    let r = c.put(server.url("/files/old.txt")).body("old").send().await.unwrap();
    assert_eq!(r.status(), 201);

    let (status, body) = server.quiesce("?timeout_ms=60000").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({ "quiesced": true, "timeout_ms": 60000, "in_flight_waited": 0 }));

    let put = server.spawn_put("held.txt", "held by quiesce");
    let (ctype, form) = multipart("form.txt", b"multipart held");
    let upload = c.post(server.url("/upload")).header("content-type", ctype).body(form);
    let upload = tokio::spawn(async move { upload.send().await.unwrap().status().as_u16() });
    let delete = c.delete(server.url("/files/old.txt"));
    let delete = tokio::spawn(async move { delete.send().await.unwrap().status().as_u16() });

    tokio::time::sleep(HOLD_CHECK).await;
    assert!(!put.is_finished(), "a PUT must wait while quiesced");
    assert!(!upload.is_finished(), "a POST /upload must wait while quiesced");
    assert!(!delete.is_finished(), "a DELETE must wait while quiesced");
    assert!(!server.file("held.txt").exists());
    assert!(!server.file("form.txt").exists());
    assert_eq!(std::fs::read(server.file("old.txt")).unwrap(), b"old");
    assert!(!upload_in_progress(&server.storage), "a held upload must not touch the volume");

    // A second quiesce while quiesced answers 200 again (and restarts the timer).
    let (status, body) = server.quiesce("?timeout_ms=60000").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["in_flight_waited"], 0);
    assert!(!put.is_finished());

    assert_eq!(server.resume().await, serde_json::json!({ "resumed": true }));
    assert_eq!(finish(put).await, 201);
    assert_eq!(finish(upload).await, 200);
    assert_eq!(finish(delete).await, 200);
    assert_eq!(std::fs::read(server.file("held.txt")).unwrap(), b"held by quiesce");
    assert_eq!(std::fs::read(server.file("form.txt")).unwrap(), b"multipart held");
    assert!(!server.file("old.txt").exists());
    assert_eq!(server.resume().await, serde_json::json!({ "resumed": false }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiesce_answers_after_the_upload_in_flight_committed() {
    let server = Server::start().await;
    let (chunks, size) = (8u8, 64 * 1024);
    let put = server.spawn_put("slow.bin", slow_body(chunks, size, Duration::from_millis(100)));
    wait_for_upload_in_progress(&server.storage).await;

    let (status, body) = server.quiesce("").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["quiesced"], true);
    assert_eq!(body["timeout_ms"], 30000, "the default");
    assert_eq!(body["in_flight_waited"], 1);
    // When quiesce answers, the upload is on disk whole, under its name.
    let expected: Vec<u8> = (0..chunks).flat_map(|i| vec![i; size]).collect();
    assert_eq!(std::fs::read(server.file("slow.bin")).unwrap(), expected);
    assert!(!upload_in_progress(&server.storage));
    assert_eq!(finish(put).await, 201);

    assert_eq!(server.resume().await["resumed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_writes_resume_on_their_own_after_timeout() {
    let server = Server::start().await;
    let (status, body) = server.quiesce("?timeout_ms=1500").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["timeout_ms"], 1500);

    let put = server.spawn_put("later.txt", "no resume needed");
    tokio::time::sleep(HOLD_CHECK).await;
    assert!(!put.is_finished(), "the PUT is held until the quiesce times out");
    assert_eq!(finish(put).await, 201, "the held PUT completes once the quiesce times out");
    assert_eq!(std::fs::read(server.file("later.txt")).unwrap(), b"no resume needed");
    assert_eq!(server.resume().await, serde_json::json!({ "resumed": false }), "already resumed on its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_timeout_is_refused_and_resume_is_idempotent() {
    let server = Server::start().await;
    for query in ["?timeout_ms=0", "?timeout_ms=600001", "?timeout_ms=abc", "?timeout_ms=-5"] {
        let (status, body) = server.quiesce(query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains("timeout_ms must be"), "{query}: {body}");
    }
    // Nothing was quiesced by the refusals: writes go through.
    let put = server.spawn_put("free.txt", "x");
    assert_eq!(finish(put).await, 201);
    assert_eq!(server.resume().await, serde_json::json!({ "resumed": false }));
    assert_eq!(server.resume().await, serde_json::json!({ "resumed": false }));

    let (status, body) = server.quiesce("?timeout_ms=600000").await;
    assert_eq!(status, 200, "the upper bound is allowed: {body}");
    assert_eq!(server.resume().await, serde_json::json!({ "resumed": true }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_work_while_quiesced() {
    let server = Server::start().await;
    let c = client();
    let r = c.put(server.url("/files/a.txt")).body("hello").send().await.unwrap();
    assert_eq!(r.status(), 201);
    let metrics = c.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("berth_quiesced 0"), "{metrics}");

    let (status, body) = server.quiesce("?timeout_ms=60000").await;
    assert_eq!(status, 200, "{body}");

    let r = c.get(server.url("/files/a.txt")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello");
    let r = c.get(server.url("/download/a.txt")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello");
    let list: Value = c.get(server.url("/files")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["count"], 1);
    assert_eq!(list["files"][0]["name"], "a.txt");
    // Past the health check's cache, so the quiesced path answers.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = c.get(server.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let health: Value = r.json().await.unwrap();
    assert_eq!(health["status"], "healthy");
    let metrics = c.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("berth_quiesced 1"), "{metrics}");

    assert_eq!(server.resume().await["resumed"], true);
    let metrics = c.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("berth_quiesced 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiesce_gives_up_when_a_write_does_not_finish() {
    let server = Server::start().await;
    let (release, released) = oneshot::channel::<()>();
    // One chunk, then nothing until released: an upload stuck in flight.
    let stream = futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"first;")) }).chain(
        futures_util::stream::once(async move {
            let _ = released.await;
            Ok(Bytes::from_static(b"second"))
        }),
    );
    let stuck = server.spawn_put("stuck.txt", reqwest::Body::wrap_stream(stream));
    wait_for_upload_in_progress(&server.storage).await;

    let (status, body) = server.quiesce("?timeout_ms=300").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("in-flight writes did not finish"), "{body}");
    // Not quiesced: new writes go through, and there is nothing to resume.
    let put = server.spawn_put("after.txt", "not held");
    assert_eq!(finish(put).await, 201);
    assert_eq!(server.resume().await, serde_json::json!({ "resumed": false }));

    release.send(()).unwrap();
    assert_eq!(finish(stuck).await, 201);
    assert_eq!(std::fs::read(server.file("stuck.txt")).unwrap(), b"first;second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiesce_and_resume_need_the_token() {
    let server = Server::start_with(Some("s3cret")).await;
    let c = client();
    for path in ["/v1/quiesce", "/v1/resume"] {
        let r = c.post(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = c.post(server.url("/v1/quiesce?timeout_ms=60000")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.post(server.url("/v1/resume")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!({ "resumed": true }));
}
