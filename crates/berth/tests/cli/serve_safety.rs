//! Bad input gets a clear error and nothing is lost: names that try to leave
//! the volume, links planted in it, oversize uploads, a full volume,
//! concurrent writers of one name, and slow clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::util::{client, raw, raw_upload, Opts, Server, SmallDisk};

/// Every file below `dir`, recursively (to prove nothing landed outside the volume).
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        out.push(p.display().to_string());
        if e.file_type().unwrap().is_dir() {
            out.extend(tree(&p));
        }
    }
    out.sort();
    out
}

#[test]
fn path_traversal_and_bad_names_are_refused() {
    let outer = tempfile::tempdir().unwrap();
    let storage = outer.path().join("a").join("b").join("data");
    let server = Server::start_with(Opts::default().storage(&storage));
    let before = tree(outer.path());
    let long = "n".repeat(256);

    // Filenames sent in the multipart body, byte for byte.
    let multipart_vectors: Vec<&[u8]> = vec![
        b"../../../tmp/x",
        b"../x",
        b"..",
        b".",
        b"/tmp/x",
        b"/etc/passwd",
        b"a/b",
        b"a\\b",
        b"..\\..\\x",
        b"C:\\Users\\x.txt",
        b"a\x01b",
        b"a\x1bb",
        b"a\x7f",
        b".berth-tmp-0000000000000000",
        long.as_bytes(),
        b"\xff\xfe",
        b"./x",
        b"x/..",
    ];
    for name in &multipart_vectors {
        let (status, body) = raw_upload(server.addr, name, b"payload");
        assert!(status == 400, "multipart filename {:?}: {status} {body}", String::from_utf8_lossy(name));
        let err: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON error for {name:?}: {body}"));
        assert!(err["error"].is_string());
    }

    // Names in the URL path of PUT, as raw request lines.
    let path_vectors = [
        "..%2F..%2Ftmp%2Fx",
        "%2Ftmp%2Fx",
        "..",
        "%2E%2E",
        ".",
        "a%5Cb",
        "a%00b",
        "a%0Ab",
        "a%0D%0Ab",
        "%2Eberth-tmp-x",
        "..%5C..%5Cx",
        "%C0%AE%C0%AE",
    ];
    for p in path_vectors {
        let req =
            format!("PUT /files/{p} HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nConnection: close\r\n\r\npayload");
        let (status, body) = raw(server.addr, req.as_bytes());
        assert_eq!(status, 400, "PUT /files/{p}: {body}");
    }
    // Paths the router cannot match at all are a 404, never a file.
    for p in ["/download/../../etc/passwd", "/download/..%2F..%2Fetc%2Fpasswd", "/files/a/b"] {
        let req = format!("GET {p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, body) = raw(server.addr, req.as_bytes());
        assert!(status == 400 || status == 404, "GET {p}: {status}");
        assert!(!body.contains("root:"), "GET {p} leaked /etc/passwd");
    }
    let r = client().put(server.url(&format!("/files/{}", "n".repeat(255)))).body("ok").send().unwrap();
    assert_eq!(r.status(), 201, "255 bytes is the longest name");

    assert!(server.disk_names().iter().all(|n| n == &"n".repeat(255)), "{:?}", server.disk_names());
    let mut after = tree(outer.path());
    after.retain(|p| !p.ends_with(&"n".repeat(255)));
    assert_eq!(before, after, "nothing was written outside the volume");
}

#[test]
fn symlinks_in_the_volume_lead_nowhere() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, "top secret").unwrap();
    let server = Server::start();
    std::os::unix::fs::symlink(&secret, server.storage.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), server.storage.join("dirlink")).unwrap();
    let c = client();

    let r = c.get(server.url("/download/link")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert!(!r.text().unwrap().contains("top secret"));
    let list: Value = c.get(server.url("/files")).send().unwrap().json().unwrap();
    assert_eq!(list["count"], 0, "links are not listed: {list}");

    // Writing to the link's name replaces the link, never the target.
    let r = c.put(server.url("/files/link")).body("new").send().unwrap();
    assert!(r.status().is_success());
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "top secret");
    assert_eq!(std::fs::read_to_string(server.storage.join("link")).unwrap(), "new");
    assert!(!std::fs::symlink_metadata(server.storage.join("link")).unwrap().file_type().is_symlink());

    // Deleting through a link to a folder removes only the link.
    let r = c.delete(server.url("/files/dirlink")).send().unwrap();
    assert!(r.status().is_success());
    assert!(secret.exists());
}

#[test]
fn upload_size_limit_is_413_and_keeps_the_previous_version() {
    let server = Server::start_with(Opts::default().arg("--max-upload").arg("1K"));
    let c = client();
    assert_eq!(c.put(server.url("/files/f")).body(vec![1u8; 1024]).send().unwrap().status(), 201);

    // Declared too large: refused before reading.
    let r = c.put(server.url("/files/f")).body(vec![2u8; 2048]).send().unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("1024"));

    // Chunked, no length: refused when the limit is crossed.
    let req = "PUT /files/f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    for _ in 0..4 {
        let _ = s.write_all(format!("{:x}\r\n{}\r\n", 512, "z".repeat(512)).as_bytes());
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut out = String::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");

    // Multipart, too.
    let (status, _) = raw_upload(server.addr, b"f", &[3u8; 4096]);
    assert_eq!(status, 413);

    assert_eq!(std::fs::read(server.storage.join("f")).unwrap(), vec![1u8; 1024]);
    assert_eq!(server.disk_names(), ["f"], "no temporary file left");
}

#[test]
fn capacity_is_507_and_keeps_the_previous_version() {
    let server = Server::start_with(Opts::default().arg("--capacity").arg("10K"));
    let c = client();
    assert_eq!(c.put(server.url("/files/a")).body(vec![1u8; 6000]).send().unwrap().status(), 201);
    let r = c.put(server.url("/files/b")).body(vec![2u8; 6000]).send().unwrap();
    assert_eq!(r.status(), 507);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("volume full"));
    // Streamed without a length, the same.
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(vec![2u8; 6000]));
    let r = c.put(server.url("/files/b")).body(body).send().unwrap();
    assert_eq!(r.status(), 507);
    assert_eq!(server.disk_names(), ["a"]);
    // Freeing space makes room again.
    c.delete(server.url("/files/a")).send().unwrap();
    assert_eq!(c.put(server.url("/files/b")).body(vec![2u8; 6000]).send().unwrap().status(), 201);
}

/// A real full filesystem (a 1 MiB tmpfs): ENOSPC becomes 507, nothing torn.
#[test]
fn real_enospc_is_507_and_cleans_up() {
    let mnt = SmallDisk::mount();
    let storage = mnt.path().join("data");
    let server = Server::start_with(Opts::default().storage(&storage));
    let c = client();
    assert_eq!(c.put(server.url("/files/keep")).body(vec![9u8; 300 * 1024]).send().unwrap().status(), 201);
    // No Content-Length, so the server only learns of the full disk from write(2).
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(vec![1u8; 2 << 20]));
    let r = c.put(server.url("/files/keep")).body(body).send().unwrap();
    assert_eq!(r.status(), 507);
    assert!(r.json::<Value>().unwrap()["error"].as_str().unwrap().contains("no space left"));
    assert_eq!(std::fs::read(storage.join("keep")).unwrap(), vec![9u8; 300 * 1024]);
    assert_eq!(server.disk_names(), ["keep"]);
    // With a declared length the refusal comes before any byte is written.
    let r = c.put(server.url("/files/big")).body(vec![1u8; 2 << 20]).send().unwrap();
    assert_eq!(r.status(), 507);
    drop(server);
}

#[test]
fn concurrent_uploads_of_one_name_leave_one_whole_version() {
    let server = Server::start();
    let size = 4 << 20;
    let url = server.url("/files/same");
    std::thread::scope(|s| {
        for writer in 0..8u8 {
            let url = url.clone();
            s.spawn(move || {
                let r = client().put(&url).body(vec![writer; size]).send().unwrap();
                assert!(r.status().is_success());
            });
        }
        // A reader racing the writers sees either 404 or a whole version.
        let url = url.clone();
        s.spawn(move || {
            let c = client();
            for _ in 0..40 {
                let r = c.get(&url).send().unwrap();
                if r.status() == 200 {
                    let b = r.bytes().unwrap();
                    assert_eq!(b.len(), size);
                    assert!(b.iter().all(|&x| x == b[0]), "torn read");
                }
            }
        });
    });
    let data = std::fs::read(server.storage.join("same")).unwrap();
    assert_eq!(data.len(), size);
    assert!(data.iter().all(|&x| x == data[0]) && data[0] < 8);
    assert_eq!(server.disk_names(), ["same"]);
}

#[test]
fn slow_clients_time_out_and_cannot_starve_health() {
    let server = Server::start_with(Opts::default().arg("--header-timeout").arg("1s").arg("--body-timeout").arg("1s"));
    // 100 clients that send half a header and stop, 20 that stall mid-body:
    // far more than the blog's 4 gunicorn workers.
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"GET /files HTTP/1.1\r\nHost: x\r\n").unwrap();
        stalled.push(s);
    }
    for i in 0..20 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(
            format!("PUT /files/slow{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\npartial").as_bytes(),
        )
        .unwrap();
        stalled.push(s);
    }
    let c = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    for _ in 0..20 {
        assert_eq!(c.get(server.url("/health")).send().unwrap().status(), 200);
    }
    // The stalled ones are cut off: EOF or a 408 answer, not an open socket.
    std::thread::sleep(Duration::from_millis(2500));
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let r = s.read_to_end(&mut out);
        assert!(r.is_ok(), "connection was closed by the server, not left hanging: {r:?}");
        let text = String::from_utf8_lossy(&out);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    assert!(server.disk_names().is_empty(), "no partial upload visible: {:?}", server.disk_names());
}

#[test]
fn a_non_utf8_file_name_is_reported_as_such_not_as_no_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(Opts::default().storage(dir.path()));
    let (status, body) = raw_upload(server.addr, b"caf\xe9.txt", b"latin-1 name");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not UTF-8") && body.contains("rename the file"), "{body}");
    // A field with no name at all is still that.
    let (status, body) = raw_upload(server.addr, b"", b"no name");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("has no filename"), "{body}");
}
