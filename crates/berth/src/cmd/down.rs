//! `berth down`: stop a running `berth up` cleanly and wait until it has.
//!
//! Going down is a handoff without a replacement for every task: each task
//! is stopped, its volume snapshotted and the snapshot recorded, so the
//! next `berth up` starts every claim from its data. That can take a while
//! with large volumes; this command asks for it and then waits (up to
//! `--timeout`) for the `berth up` process to exit.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::admin::{self, AdminArgs, Client};
use crate::output::print_json;
use crate::units::parse_duration;

/// How often the process is checked.
const POLL: Duration = Duration::from_millis(200);
/// How often a note that it is still stopping is printed.
const NOTE_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    /// How long to wait for `berth up` to finish snapshotting and exit.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    timeout: Duration,
}

/// The answer of `POST /v1/down`.
#[derive(Debug, Serialize, Deserialize)]
struct Stopping {
    stopping: u32,
}

pub fn run(args: Args) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    let pid = client.info()?.pid;
    let start = Instant::now();
    let answer: Stopping = client.post("/v1/down", &json!({}))?;
    eprintln!("stopping {} with snapshots…", tasks(answer.stopping));
    let mut note = NOTE_EVERY;
    while alive(pid) {
        let waited = start.elapsed();
        if waited > args.timeout {
            bail!(
                "berth up (pid {pid}) is still running after {}; it may still be snapshotting: \
                 wait longer (`berth down --timeout 30m`) or see `berth events`",
                admin::duration(args.timeout)
            );
        }
        if waited >= note {
            eprintln!("still stopping… ({})", admin::duration(waited));
            note += NOTE_EVERY;
        }
        std::thread::sleep(POLL);
    }
    if args.admin.json {
        return print_json(&answer);
    }
    println!(
        "berth up has stopped ({} stopped with snapshots, in {})",
        tasks(answer.stopping),
        admin::duration(start.elapsed())
    );
    Ok(())
}

fn tasks(n: u32) -> String {
    if n == 1 {
        "1 task".to_owned()
    } else {
        format!("{n} tasks")
    }
}

/// Whether process `pid` still runs (a zombie waiting for its parent to
/// collect it has exited).
#[cfg(target_os = "linux")]
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may hold anything.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|s| !matches!(s, 'Z' | 'X')),
        Err(_) => false,
    }
}

/// Whether process `pid` still runs.
#[cfg(not(target_os = "linux"))]
fn alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_counts() {
        assert_eq!(tasks(1), "1 task");
        assert_eq!(tasks(3), "3 tasks");
    }

    #[test]
    fn a_process_is_alive_until_it_has_exited() {
        assert!(alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        if cfg!(target_os = "linux") {
            // Exited but not yet collected: a zombie, which counts as gone.
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(!alive(pid));
        }
        child.wait().unwrap();
        assert!(!alive(pid));
    }
}
