//! Cluster mode: three tasks, three volumes, one namespace, whichever task
//! each request reaches (the blog's two tasks behind one load balancer).

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::util::{client, free_port, Opts, Server};

fn start_cluster(n: usize, peers_arg: impl Fn(&[String]) -> Vec<String>) -> Vec<Server> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let urls: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    ports
        .iter()
        .map(|&port| {
            let mut opts = Opts::default().port(port);
            for a in peers_arg(&urls) {
                opts = opts.arg(a);
            }
            Server::start_with(opts)
        })
        .collect()
}

#[test]
fn three_tasks_present_one_namespace() {
    let tasks = start_cluster(3, |urls| vec!["--peers".into(), urls.join(",")]);
    let c = client();
    let names: Vec<String> = (0..30).map(|i| format!("doc-{i}.txt")).collect();

    // The blog's sequence, each step on a different task.
    for (i, name) in names.iter().enumerate() {
        let form = reqwest::blocking::multipart::Form::new().part(
            "file",
            reqwest::blocking::multipart::Part::bytes(format!("content of {name}").into_bytes())
                .file_name(name.clone()),
        );
        let r = c.post(tasks[i % 3].url("/upload")).multipart(form).send().unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    }
    for t in &tasks {
        let list: Value = c.get(t.url("/files")).send().unwrap().json().unwrap();
        assert_eq!(list["count"], 30, "{list}");
        assert_eq!(list["peers_unavailable"], serde_json::json!([]));
        let listed: Vec<&str> = list["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(listed, want);
    }
    for (i, name) in names.iter().enumerate() {
        let body = c.get(tasks[(i + 1) % 3].url(&format!("/download/{name}"))).send().unwrap().text().unwrap();
        assert_eq!(body, format!("content of {name}"));
    }
    // Each file is stored exactly once, and placement spreads them.
    let per_task: Vec<usize> = tasks.iter().map(|t| t.disk_names().len()).collect();
    assert_eq!(per_task.iter().sum::<usize>(), 30, "{per_task:?}");
    assert!(per_task.iter().all(|&n| n > 0), "{per_task:?}");

    // An existing name is rewritten where it lives, not copied.
    let holder = tasks.iter().position(|t| t.disk_names().contains(&names[0])).unwrap();
    let other = (holder + 1) % 3;
    let r = c.put(tasks[other].url(&format!("/files/{}", names[0]))).body("v2").send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(std::fs::read_to_string(tasks[holder].storage.join(&names[0])).unwrap(), "v2");
    assert!(!tasks[other].disk_names().contains(&names[0]));

    // Ranges pass through a proxied read.
    let r = c.get(tasks[other].url(&format!("/download/{}", names[0]))).header("range", "bytes=1-1").send().unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.text().unwrap(), "2");

    // Delete through any task removes it where it lives.
    let r = c.delete(tasks[other].url(&format!("/files/{}", names[0]))).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(!tasks[holder].disk_names().contains(&names[0]));

    // A lost member is named, and the rest still answer.
    let mut tasks = tasks;
    let gone = tasks.pop().unwrap();
    let gone_url = gone.base();
    drop(gone);
    let list: Value = c.get(tasks[0].url("/files")).send().unwrap().json().unwrap();
    assert_eq!(list["peers_unavailable"], serde_json::json!([gone_url]));
    assert!(list["count"].as_u64().unwrap() < 29);
}

/// A tiny peer-list endpoint answering `body`, as the local platform serves
/// one; returns its URL. Answers at most 200 requests.
fn serve_peer_list(body: Value) -> String {
    serve_changing_peer_list(Arc::new(Mutex::new(body)))
}

/// [`serve_peer_list`] answering whatever `body` holds at each request.
fn serve_changing_peer_list(body: Arc<Mutex<Value>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/peers", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 2048];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let body = body.lock().unwrap().to_string();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                body.len(),
                body
            );
        }
    });
    url
}

#[test]
fn a_missing_file_while_a_member_is_being_replaced_is_503_not_404() {
    let port = free_port();
    let me = format!("http://127.0.0.1:{port}");
    // The platform says two tasks should run; only this one does.
    let replacing = serve_peer_list(serde_json::json!({ "peers": [me], "expected": 2 }));
    let task = Server::start_with(Opts::default().port(port).arg("--peers-url").arg(replacing));
    let r = client().get(task.url("/download/elsewhere.bin")).send().unwrap();
    assert_eq!(r.status(), 503, "the file may be on the member being replaced");
    let body: Value = r.json().unwrap();
    assert!(body["error"].as_str().unwrap().contains("retry"), "{body}");
    drop(task);
    // With every member there, a missing file is missing.
    let port = free_port();
    let me = format!("http://127.0.0.1:{port}");
    let complete = serve_peer_list(serde_json::json!({ "peers": [me], "expected": 1 }));
    let task = Server::start_with(Opts::default().port(port).arg("--peers-url").arg(complete));
    assert_eq!(client().get(task.url("/download/elsewhere.bin")).send().unwrap().status(), 404);
}

#[test]
fn a_replacement_is_found_soon_after_the_peer_list_names_it() {
    // The member being replaced holds a file; its replacement is already up,
    // but the platform does not list it yet.
    let holder = Server::start();
    let r = client().put(holder.url("/files/kept.bin")).body("kept").send().unwrap();
    assert!(r.status().is_success());
    let port = free_port();
    let me = format!("http://127.0.0.1:{port}");
    let list = Arc::new(Mutex::new(serde_json::json!({ "peers": [me], "expected": 2 })));
    let task =
        Server::start_with(Opts::default().port(port).arg("--peers-url").arg(serve_changing_peer_list(list.clone())));
    assert_eq!(client().get(task.url("/download/kept.bin")).send().unwrap().status(), 503);

    // The platform lists the replacement. A list known to lack a member is
    // asked again within a quarter second, not at the usual two seconds, so
    // the file is served well before those two seconds are up.
    *list.lock().unwrap() = serde_json::json!({ "peers": [me, holder.base()], "expected": 2 });
    std::thread::sleep(Duration::from_millis(600));
    let r = client().get(task.url("/download/kept.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "kept");
}

/// Found by the chaos soak (bench/chaos.sh): an overwrite of a name whose
/// holder was being replaced was placed on another member, and once the
/// holder was back a read found its older copy, an acknowledged write
/// lost; a delete then left that copy to come back. Both answer 503
/// (retry) while a member is missing, and go to the holder once it is back.
#[test]
fn a_write_or_delete_while_a_holder_is_being_replaced_is_refused_not_copied() {
    let holder = Server::start();
    let c = client();
    assert!(c.put(holder.url("/files/kept.bin")).body("v1").send().unwrap().status().is_success());
    let port = free_port();
    let me = format!("http://127.0.0.1:{port}");
    let list = Arc::new(Mutex::new(serde_json::json!({ "peers": [me], "expected": 2 })));
    let task =
        Server::start_with(Opts::default().port(port).arg("--peers-url").arg(serve_changing_peer_list(list.clone())));
    assert_eq!(c.put(task.url("/files/kept.bin")).body("v2").send().unwrap().status(), 503);
    assert_eq!(c.delete(task.url("/files/kept.bin")).send().unwrap().status(), 503);
    assert!(task.disk_names().is_empty(), "no second copy: {:?}", task.disk_names());

    *list.lock().unwrap() = serde_json::json!({ "peers": [me, holder.base()], "expected": 2 });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c.get(task.url("/download/kept.bin")).send().unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "the holder was never found");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.put(task.url("/files/kept.bin")).body("v2").send().unwrap().status().is_success());
    assert_eq!(std::fs::read_to_string(holder.storage.join("kept.bin")).unwrap(), "v2");
    assert!(task.disk_names().is_empty(), "written where it lives: {:?}", task.disk_names());
}

#[test]
fn no_new_file_is_placed_on_a_member_that_is_leaving() {
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let urls: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    // The second member's claim is being parked: it still serves reads.
    let list = serve_peer_list(serde_json::json!({ "peers": urls, "expected": 1, "leaving": [urls[1]] }));
    let tasks: Vec<Server> = ports
        .iter()
        .map(|&p| Server::start_with(Opts::default().port(p).arg("--peers-url").arg(list.clone())))
        .collect();
    let c = client();
    // Written before it was leaving (straight onto its volume, as a local write).
    let r = c.put(tasks[1].url("/files/old.txt")).header("x-berth-scope", "local").body("old").send().unwrap();
    assert!(r.status().is_success());
    for i in 0..20 {
        let r = c.put(tasks[i % 2].url(&format!("/files/n{i}"))).body(format!("{i}")).send().unwrap();
        assert!(r.status().is_success(), "{}", r.text().unwrap());
    }
    assert_eq!(tasks[0].disk_names().len(), 20, "every new name on the member that stays");
    assert_eq!(tasks[1].disk_names(), vec!["old.txt".to_string()]);
    // Reads reach both, and a name that lives on the leaving member is
    // rewritten there, not copied.
    assert_eq!(c.get(tasks[1].url("/download/n3")).send().unwrap().text().unwrap(), "3");
    assert_eq!(c.get(tasks[0].url("/download/old.txt")).send().unwrap().text().unwrap(), "old");
    let r = c.put(tasks[0].url("/files/old.txt")).body("v2").send().unwrap();
    assert!(r.status().is_success());
    assert_eq!(std::fs::read_to_string(tasks[1].storage.join("old.txt")).unwrap(), "v2");
}

#[test]
fn members_come_from_a_peer_list_url() {
    // A tiny peer-list endpoint, as the local platform will serve.
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let list_url = serve_peer_list(serde_json::json!({
        "peers": ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect::<Vec<_>>()
    }));
    let tasks: Vec<Server> = ports
        .iter()
        .map(|&p| Server::start_with(Opts::default().port(p).arg("--peers-url").arg(list_url.clone())))
        .collect();
    let c = client();
    for i in 0..10 {
        let r = c.put(tasks[i % 2].url(&format!("/files/p{i}"))).body(format!("{i}")).send().unwrap();
        assert!(r.status().is_success());
    }
    for t in &tasks {
        let list: Value = c.get(t.url("/files")).send().unwrap().json().unwrap();
        assert_eq!(list["count"], 10, "{list}");
    }
    assert_eq!(tasks.iter().map(|t| t.disk_names().len()).sum::<usize>(), 10);
}
