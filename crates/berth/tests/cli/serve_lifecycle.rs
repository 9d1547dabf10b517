//! Process lifecycle: a crash mid-upload leaves nothing partial, and SIGTERM
//! drains in-flight requests and exits 0 (ECS sends SIGTERM, then SIGKILL).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::util::{client, Opts, Server};

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

#[test]
fn kill_9_mid_upload_leaves_no_partial_file() {
    let server = Server::start();
    let storage = server.storage.clone();
    let c = client();
    c.put(server.url("/files/doc")).body(vec![1u8; 1 << 20]).send().unwrap();

    // Replace "doc" with a 64 MiB upload and crash half way through.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"PUT /files/doc HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n").unwrap();
    let chunk = vec![2u8; 1 << 20];
    for _ in 0..32 {
        s.write_all(&chunk).unwrap();
    }
    let temp_seen = wait_for(|| {
        std::fs::read_dir(&storage).unwrap().any(|e| {
            let e = e.unwrap();
            e.file_name().to_string_lossy().starts_with(".berth-tmp-") && e.metadata().unwrap().len() > 0
        })
    });
    assert!(temp_seen, "the upload streams into a temporary file");
    let mut server = server;
    server.signal(libc::SIGKILL);
    server.wait_exit(Duration::from_secs(5)).map(|_| ()).unwrap_or(());
    assert_eq!(std::fs::read(storage.join("doc")).unwrap(), vec![1u8; 1 << 20], "old version intact");

    // A restart on the same volume removes the leftover and lists only "doc".
    let restarted = Server::start_with(Opts::default().storage(&storage));
    assert_eq!(restarted.disk_names(), ["doc"]);
    let list: Value = client().get(restarted.url("/files")).send().unwrap().json().unwrap();
    assert_eq!(list["count"], 1);
    assert_eq!(list["files"][0]["size"], 1 << 20);
    assert!(restarted.logs.lock().unwrap().iter().any(|l| l.contains("removed a temporary file")));
}

#[test]
fn sigterm_finishes_in_flight_uploads_then_exits_0() {
    let mut server = Server::start_with(Opts::default().arg("--drain-timeout").arg("10s"));
    let mut s = TcpStream::connect(server.addr).unwrap();
    let total = 8 << 20;
    s.write_all(format!("PUT /files/late HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n").as_bytes()).unwrap();
    let chunk = vec![5u8; 1 << 20];
    for _ in 0..4 {
        s.write_all(&chunk).unwrap();
    }
    // The request is in flight once its body streams into a temporary file.
    let storage = server.storage.clone();
    assert!(
        wait_for(|| std::fs::read_dir(&storage).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".berth-tmp-"))),
        "the upload streams into a temporary file"
    );
    server.signal(libc::SIGTERM);
    // New connections are refused once draining started.
    assert!(wait_for(|| TcpStream::connect(server.addr).is_err()), "listener closed on SIGTERM");
    for _ in 0..4 {
        s.write_all(&chunk).unwrap();
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = vec![0u8; 4096];
    let n = s.read(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out[..n]);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(std::fs::read(server.storage.join("late")).unwrap().len(), total);
}

#[test]
fn sigterm_with_a_stuck_client_exits_at_the_deadline() {
    let mut server =
        Server::start_with(Opts::default().arg("--drain-timeout").arg("1s").arg("--body-timeout").arg("60s"));
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"PUT /files/stuck HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(server.disk_names().iter().all(|n| !n.starts_with("stuck")));
}
