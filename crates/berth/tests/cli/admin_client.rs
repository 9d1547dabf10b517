//! The admin-API commands without a server: a clear error when no
//! `berth up` is running, and `berth logs`, which reads the state folder.

use std::process::{Command, Output};

use crate::util::BERTH;

const ID: &str = "0123456789abcdef0123456789abcdef";

fn berth(args: &[&str]) -> Output {
    Command::new(BERTH).args(args).env_remove("BERTH_STATE").output().expect("run berth")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ps_without_berth_up_says_so() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    let out = berth(&["ps", "--state", dir]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains(&format!("no berth up is running with state folder {dir}")), "{err}");
    assert!(err.contains("start it with `berth up`"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_stale_admin_file_is_no_berth_up() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    // A port nothing listens on: bound, then released.
    let port = crate::util::free_port();
    let info = format!(r#"{{"url":"http://127.0.0.1:{port}","pid":1,"started_at":"2024-05-01T12:00:00Z"}}"#);
    std::fs::write(state.path().join("admin.json"), info).unwrap();
    std::fs::write(state.path().join("admin.token"), "secret").unwrap();
    let out = berth(&["claims", "--state", dir]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("no berth up is running"), "{}", stderr(&out));
}

#[test]
fn logs_prints_a_task_log() {
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir(state.path().join("logs")).unwrap();
    let content = "listening on 127.0.0.1:5000\nGET /health 200\n";
    std::fs::write(state.path().join(format!("logs/{ID}.log")), content).unwrap();
    let dir = state.path().to_str().unwrap();

    let out = berth(&["logs", ID, "--state", dir]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), content);

    let arn = format!("arn:aws:ecs:local:000000000000:task/berth/{ID}");
    let out = berth(&["logs", &arn, "--state", dir]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), content);
}

#[test]
fn logs_of_no_task_fail_clearly() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();

    let out = berth(&["logs", "nope", "--state", dir]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("'nope' is not a task"), "{}", stderr(&out));

    let out = berth(&["logs", ID, "--state", dir]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains(&format!("no log of task {ID}")), "{}", stderr(&out));
}
