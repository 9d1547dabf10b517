//! The API of `berth serve`: the blog's validation sequence and every route.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::{client, sha256, Opts, Server};

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").args(["-sS", "--max-time", "30"]).args(args).output().expect("curl runs");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The blog's "Testing and Validation" sequence, with the real curl.
#[test]
fn blog_validation_sequence() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let test_txt = work.path().join("test.txt");
    std::fs::write(&test_txt, "This is a test file for EBS persistence validation\nCreated at: now\n").unwrap();

    let head = curl(&["-I", &server.url("/health")]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let up: Value = serde_json::from_str(&curl(&[
        "-X",
        "POST",
        "-F",
        &format!("file=@{}", test_txt.display()),
        &server.url("/upload"),
    ]))
    .unwrap();
    assert_eq!(up["message"], "File uploaded successfully");
    assert_eq!(up["filename"], "test.txt");
    assert_eq!(up["size"], 67);
    assert_eq!(up["path"], server.storage.join("test.txt").display().to_string());

    let list: Value = serde_json::from_str(&curl(&[&server.url("/files")])).unwrap();
    assert_eq!(list["count"], 1);
    assert_eq!(list["files"][0]["name"], "test.txt");
    assert_eq!(list["files"][0]["size"], 67);
    assert!(list["files"][0]["modified"].as_str().unwrap().starts_with("20"));
    assert_eq!(list["storage_path"], server.storage.display().to_string());

    let downloaded = work.path().join("downloaded-test.txt");
    curl(&["-o", downloaded.to_str().unwrap(), &server.url("/download/test.txt")]);
    assert_eq!(std::fs::read(&downloaded).unwrap(), std::fs::read(&test_txt).unwrap());
}

#[test]
fn put_get_head_delete_and_status_codes() {
    let server = Server::start();
    let c = client();
    let r = c.put(server.url("/files/a.bin")).body(vec![7u8; 1000]).send().unwrap();
    assert_eq!(r.status(), 201);
    let r = c.put(server.url("/files/a.bin")).body(vec![8u8; 10]).send().unwrap();
    assert_eq!(r.status(), 200, "a replace answers 200");
    let r = c.get(server.url("/files/a.bin")).send().unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), &[8u8; 10]);

    let r = c.head(server.url("/download/a.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "10");
    assert!(r.headers().contains_key("etag"));
    assert!(r.headers().contains_key("last-modified"));

    let r = c.delete(server.url("/files/a.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    let r = c.delete(server.url("/files/a.bin")).send().unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().unwrap();
    assert!(body["error"].as_str().unwrap().contains("a.bin"));
    let r = c.get(server.url("/download/a.bin")).send().unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(server.url("/no/such/route")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().unwrap()["error"].is_string());
    let r = c.post(server.url("/files")).send().unwrap();
    assert_eq!(r.status(), 405);
    let r = c.post(server.url("/upload")).body("not multipart").send().unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("multipart"));
}

#[test]
fn ranges_and_validators() {
    let server = Server::start();
    let c = client();
    let data: Vec<u8> = (0..100u8).collect();
    c.put(server.url("/files/r")).body(data.clone()).send().unwrap();

    let r = c.get(server.url("/download/r")).header("range", "bytes=10-19").send().unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/100");
    assert_eq!(r.bytes().unwrap().as_ref(), &data[10..20]);

    let r = c.get(server.url("/download/r")).header("range", "bytes=-5").send().unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), &data[95..]);

    let r = c.get(server.url("/download/r")).header("range", "bytes=100-").send().unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */100");

    let etag = c.head(server.url("/download/r")).send().unwrap().headers()["etag"].clone();
    let r = c.get(server.url("/download/r")).header("if-none-match", etag.clone()).send().unwrap();
    assert_eq!(r.status(), 304);
    // A stale If-Range sends the whole file.
    let r =
        c.get(server.url("/download/r")).header("range", "bytes=0-0").header("if-range", "\"stale\"").send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().len(), 100);
    // A new version changes the ETag.
    c.put(server.url("/files/r")).body(vec![1u8; 100]).send().unwrap();
    let r = c.get(server.url("/download/r")).header("if-none-match", etag).send().unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn listing_prefix_and_pages() {
    let server = Server::start();
    let c = client();
    for i in 0..25 {
        c.put(server.url(&format!("/files/f{i:02}"))).body("x").send().unwrap();
    }
    c.put(server.url("/files/other")).body("y").send().unwrap();
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = c.get(server.url("/files")).query(&[("prefix", "f"), ("limit", "10")]);
        if let Some(cur) = &cursor {
            req = req.query(&[("cursor", cur)]);
        }
        let page: Value = req.send().unwrap().json().unwrap();
        pages += 1;
        for f in page["files"].as_array().unwrap() {
            names.push(f["name"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..25).map(|i| format!("f{i:02}")).collect();
    assert_eq!(names, want);
    // A file written into the volume by another process shows up too (the
    // listing index revalidates against the folder).
    std::fs::write(server.storage.join("f99"), "from outside").unwrap();
    let mut seen = false;
    for _ in 0..40 {
        let page: Value = c.get(server.url("/files?prefix=f9")).send().unwrap().json().unwrap();
        if page["files"].as_array().unwrap().iter().any(|f| f["name"] == "f99" && f["size"] == 12) {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen, "a file created outside the service is listed");

    let r = c.get(server.url("/files?limit=0")).send().unwrap();
    assert_eq!(r.status(), 400);
    let r = c.get(server.url("/files?limit=abc")).send().unwrap();
    assert_eq!(r.status(), 400);
    let r = c.get(server.url("/files?cursor=%%%")).send().unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn client_checksums_are_verified_before_commit() {
    let server = Server::start();
    let c = client();
    let data = b"checked content".to_vec();
    let good = sha256(&data);
    let r = c.put(server.url("/files/ok")).header("x-checksum-sha256", &good).body(data.clone()).send().unwrap();
    assert_eq!(r.status(), 201);

    let bad = sha256(b"something else");
    let r = c.put(server.url("/files/ok")).header("x-checksum-sha256", &bad).body(b"tampered".to_vec()).send().unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("checksum mismatch"));
    assert_eq!(std::fs::read(server.storage.join("ok")).unwrap(), data, "previous version intact");

    use base64::Engine;
    let digest = base64::engine::general_purpose::STANDARD.encode(hex::decode(&good).unwrap());
    let r = c
        .put(server.url("/files/cd"))
        .header("content-digest", format!("sha-256=:{digest}:"))
        .body(data.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .put(server.url("/files/cd2"))
        .header("content-digest", format!("sha-256=:{digest}:"))
        .body(b"other".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    let form = reqwest::blocking::multipart::Form::new()
        .part("file", reqwest::blocking::multipart::Part::bytes(data.clone()).file_name("mp"));
    let r = c.post(server.url("/upload")).header("x-checksum-sha256", &bad).multipart(form).send().unwrap();
    assert_eq!(r.status(), 400);
    assert!(!server.disk_names().iter().any(|n| n == "mp" || n == "cd2"), "{:?}", server.disk_names());
    assert!(!server.disk_names().iter().any(|n| n.starts_with(".berth-tmp")));
}

#[test]
fn bearer_token_guards_all_but_health() {
    let server = Server::start_with(Opts::default().env("BERTH_TOKEN", "s3cret"));
    let c = client();
    assert_eq!(c.get(server.url("/health")).send().unwrap().status(), 200);
    for path in ["/files", "/metrics", "/download/x"] {
        let r = c.get(server.url(path)).send().unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    let r = c.put(server.url("/files/x")).bearer_auth("wrong").body("x").send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(server.disk_names().is_empty());
    let r = c.put(server.url("/files/x")).bearer_auth("s3cret").body("x").send().unwrap();
    assert_eq!(r.status(), 201);
    let r = c.get(server.url("/files")).bearer_auth("s3cret").send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()["count"], 1);
}

/// Issue 20, defect 8: `Authorization: bearer …` got 401 (the scheme is
/// case-insensitive, RFC 9110 11.1), and a weak `W/` ETag in If-None-Match
/// got 200, not 304 (If-None-Match compares weakly).
#[test]
fn a_lowercase_bearer_scheme_and_a_weak_etag_are_understood() {
    let server = Server::start_with(Opts::default().env("BERTH_TOKEN", "s3cret"));
    let c = client();
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r =
            c.put(server.url("/files/w")).header("authorization", format!("{scheme} s3cret")).body("x").send().unwrap();
        assert!(r.status().is_success(), "{scheme}: {}", r.status());
    }
    let r = c.get(server.url("/files")).header("authorization", "bearers3cret").send().unwrap();
    assert_eq!(r.status(), 401, "no scheme, no token");
    let etag = c.head(server.url("/download/w")).bearer_auth("s3cret").send().unwrap().headers()["etag"].clone();
    let weak = format!("W/{}", etag.to_str().unwrap());
    let r = c.get(server.url("/download/w")).bearer_auth("s3cret").header("if-none-match", weak).send().unwrap();
    assert_eq!(r.status(), 304);
    let r =
        c.get(server.url("/download/w")).bearer_auth("s3cret").header("if-none-match", "W/\"other\"").send().unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn health_fails_when_the_volume_is_lost() {
    let server = Server::start();
    let c = client();
    assert_eq!(c.get(server.url("/health")).send().unwrap().status(), 200);
    std::fs::remove_dir_all(&server.storage).unwrap();
    // The probe result is cached for about a second.
    let mut last = None;
    for _ in 0..50 {
        let r = c.get(server.url("/health")).send().unwrap();
        if r.status() == 503 {
            last = Some(r.json::<Value>().unwrap());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = last.expect("health turned 503 after the volume was removed");
    assert_eq!(body["status"], "unhealthy");
    assert!(body["reason"].as_str().unwrap().contains("not writable"), "{body}");
}

#[test]
fn metrics_count_requests_bytes_and_space() {
    let server = Server::start_with(Opts::default().arg("--capacity").arg("1M"));
    let c = client();
    c.put(server.url("/files/m")).body(vec![0u8; 4096]).send().unwrap();
    c.get(server.url("/download/m")).send().unwrap().bytes().unwrap();
    let text = c.get(server.url("/metrics")).send().unwrap().text().unwrap();
    assert!(text.contains(r#"berth_http_requests_total{route="/files/{name}",method="PUT",status="201"} 1"#), "{text}");
    assert!(text.contains("berth_upload_bytes_total 4096"), "{text}");
    assert!(text.contains("berth_download_bytes_total 4096"), "{text}");
    assert!(text.contains("berth_volume_used_bytes 4096"), "{text}");
    assert!(text.contains("berth_volume_capacity_bytes 1048576"), "{text}");
    assert!(text.contains("berth_volume_free_bytes 1044480"), "{text}");
    assert!(text.contains("berth_http_request_duration_seconds_bucket"), "{text}");
}

#[test]
fn blog_environment_names_configure_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::util::free_port();
    let mut child = Command::new(crate::util::BERTH)
        .args(["serve", "--listen", "127.0.0.1"])
        .env("STORAGE_PATH", dir.path())
        .env("PORT", port.to_string())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let c = client();
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(r) = c.get(format!("http://127.0.0.1:{port}/files")).send() {
            assert_eq!(r.json::<Value>().unwrap()["storage_path"], dir.path().display().to_string());
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "berth serve answered on PORT with STORAGE_PATH");
}

#[test]
fn startup_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let out = Command::new(crate::util::BERTH)
        .args(["--log-format", "text", "serve", "--listen", "127.0.0.1", "--port", "0", "--storage"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("berth: error:") && err.contains("cannot use storage path"), "{err}");

    let out = Command::new(crate::util::BERTH)
        .args([
            "--log-format",
            "text",
            "serve",
            "--listen",
            "127.0.0.1",
            "--port",
            "0",
            "--peers",
            "not-a-url",
            "--storage",
        ])
        .arg(dir.path().join("v"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("berth: error:") && err.contains("'not-a-url' is not an http(s) URL"), "{err}");

    let out = Command::new(crate::util::BERTH).args(["serve", "--max-upload", "12 parsecs"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown size unit"));
}
