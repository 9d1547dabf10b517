//! One health probe of a task: a command in its environment, or an HTTP GET
//! on its port.
//!
//! A *probe* passes or fails with a one-line reason. A command probe runs
//! its argv directly, without a shell, with the task's environment; like
//! ECS it accepts a leading `CMD` (the same) or `CMD-SHELL` (the rest is one
//! `sh -c` script). An HTTP probe sends a minimal HTTP/1.1 GET and passes on
//! any 2xx status.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use berth_core::Probe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::health::Target;
use super::process;

/// Runs `probe` against `target` (a command of a container task runs in
/// its container), failing it after `timeout`.
pub(crate) async fn run(probe: &Probe, target: &Target, timeout: Duration) -> Result<(), String> {
    match (probe, &target.container) {
        (Probe::Command(argv), Some((engine, id))) => {
            engine.exec(id, &argv_of(argv), timeout).await.map_err(|e| e.to_string())
        }
        (Probe::Command(argv), None) => command(argv, &target.env, timeout).await,
        (Probe::Http { path }, _) => match tokio::time::timeout(timeout, http_get(target.addr, path)).await {
            Ok(result) => result,
            Err(_) => Err(format!("GET {path}: no answer within {timeout:?}")),
        },
    }
}

/// The argv of an ECS health check command: a leading `CMD` is dropped,
/// `CMD-SHELL` makes the rest one `sh -c` script.
fn argv_of(argv: &[String]) -> Vec<String> {
    match argv.split_first() {
        Some((first, rest)) if first == "CMD" => rest.to_vec(),
        Some((first, rest)) if first == "CMD-SHELL" => vec!["sh".into(), "-c".into(), rest.join(" ")],
        _ => argv.to_vec(),
    }
}

async fn command(argv: &[String], env: &BTreeMap<String, String>, timeout: Duration) -> Result<(), String> {
    let argv = argv_of(argv);
    let mut cmd = process::command(&argv, env).map_err(|e| format!("health check command: {e}"))?;
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let pgid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{} exited with {}", argv[0], process::exit_code(status))),
        Ok(Err(e)) => Err(format!("waiting for {}: {e}", argv[0])),
        Err(_) => {
            process::signal_group(pgid, libc::SIGKILL);
            let _ = child.wait().await;
            Err(format!("{} did not finish within {timeout:?}", argv[0]))
        }
    }
}

/// GET `path` from `addr`; Ok on a 2xx status.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(), String> {
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: berth-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("GET {path}: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.map_err(|e| format!("GET {path}: {e}"))?;
        if n == 0 || head.len() > 4096 {
            return Err(format!("GET {path}: no status line"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status = status_code(&head).ok_or_else(|| format!("GET {path}: malformed status line"))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {path}: HTTP {status}"))
    }
}

/// The status code of an HTTP/1.x response head.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 404 File not found\r\nServer: x"), Some(404));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 abc\r\n"), None);
    }
}
