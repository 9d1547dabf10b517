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

/// Why a probe failed; its text is the one-line reason the task's health
/// and events show.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeFailure {
    /// The command in a container task's container (the engine's answer).
    #[error("{0}")]
    Exec(String),
    #[error("health check command: {0}")]
    Command(std::io::Error),
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} exited with {code}")]
    Exit { program: String, code: i64 },
    #[error("waiting for {program}: {source}")]
    Wait { program: String, source: std::io::Error },
    #[error("{program} did not finish within {timeout:?}")]
    CommandTimeout { program: String, timeout: Duration },
    #[error("connect {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("GET {path}: {source}")]
    Http { path: String, source: std::io::Error },
    #[error("GET {path}: no status line")]
    NoStatusLine { path: String },
    #[error("GET {path}: malformed status line")]
    Malformed { path: String },
    #[error("GET {path}: HTTP {status}")]
    Status { path: String, status: u16 },
    #[error("GET {path}: no answer within {timeout:?}")]
    HttpTimeout { path: String, timeout: Duration },
}

/// Runs `probe` against `target` (a command of a container task runs in
/// its container), failing it after `timeout`.
pub(crate) async fn run(probe: &Probe, target: &Target, timeout: Duration) -> Result<(), ProbeFailure> {
    match (probe, &target.container) {
        (Probe::Command(argv), Some((engine, id))) => {
            engine.exec(id, &argv_of(argv), timeout).await.map_err(|e| ProbeFailure::Exec(e.to_string()))
        }
        (Probe::Command(argv), None) => command(argv, &target.env, timeout).await,
        (Probe::Http { path }, _) => match tokio::time::timeout(timeout, http_get(target.addr, path)).await {
            Ok(result) => result,
            Err(_) => Err(ProbeFailure::HttpTimeout { path: path.clone(), timeout }),
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

async fn command(argv: &[String], env: &BTreeMap<String, String>, timeout: Duration) -> Result<(), ProbeFailure> {
    let argv = argv_of(argv);
    let mut cmd = process::command(&argv, env).map_err(ProbeFailure::Command)?;
    let program = argv[0].clone();
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ProbeFailure::Spawn { program: program.clone(), source })?;
    let pgid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(ProbeFailure::Exit { program, code: process::exit_code(status) }),
        Ok(Err(source)) => Err(ProbeFailure::Wait { program, source }),
        Err(_) => {
            process::signal_group(pgid, libc::SIGKILL);
            let _ = child.wait().await;
            Err(ProbeFailure::CommandTimeout { program, timeout })
        }
    }
}

/// GET `path` from `addr`; Ok on a 2xx status.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(), ProbeFailure> {
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    let mut stream = TcpStream::connect(addr).await.map_err(|source| ProbeFailure::Connect { addr, source })?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: berth-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let io = |source| ProbeFailure::Http { path: path.clone(), source };
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 || head.len() > 4096 {
            return Err(ProbeFailure::NoStatusLine { path: path.clone() });
        }
        head.extend_from_slice(&buf[..n]);
    }
    let Some(status) = status_code(&head) else { return Err(ProbeFailure::Malformed { path: path.clone() }) };
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(ProbeFailure::Status { path: path.clone(), status })
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
