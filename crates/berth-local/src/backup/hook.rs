//! Quiesce hooks: asking a running task to hold its writes for a
//! consistent snapshot, and to resume after, as Velero's pre and post hooks.
//!
//! `berth serve` implements the HTTP contract: `POST /v1/quiesce?timeout_ms=N`
//! answers once in-flight writes have finished and the volume is synced,
//! holding new writes until `POST /v1/resume` or the timeout. Other
//! workloads name a command (run with the task's environment) instead. A
//! hook that fails or is absent makes the snapshot crash-consistent; it
//! never stops the snapshot, since a crash-consistent copy beats none.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};

/// Why a hook did not quiesce or resume its task: the snapshot is then
/// crash-consistent, and this is what the backup report says.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("no quiesce hook is configured")]
    NotConfigured,
    #[error("POST {path}: {source}")]
    BadPath {
        path: String,
        #[source]
        source: hyper::http::Error,
    },
    #[error("POST {uri}: {reason}")]
    Exchange { uri: String, reason: String },
    #[error("POST {uri}: HTTP {status}: {body}")]
    Status { uri: String, status: hyper::StatusCode, body: String },
    #[error("POST {uri}: no answer within {timeout:?}")]
    NoAnswer { uri: String, timeout: Duration },
    #[error("the hook command is empty")]
    EmptyCommand,
    #[error("{program} did not finish within {timeout:?}")]
    CommandTimeout { program: String, timeout: Duration },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed { program: String, status: std::process::ExitStatus, stderr: String },
}

/// How a task is quiesced.
#[derive(Clone, Debug)]
pub enum Hook {
    None,
    Http { quiesce: String, resume: String },
    Command { quiesce: Vec<String>, resume: Vec<String> },
}

/// Where the hook reaches the task.
pub struct HookTarget<'a> {
    /// `host:port` of the task.
    pub endpoint: &'a str,
    /// The task's environment (its bearer token, its volume path).
    pub env: &'a BTreeMap<String, String>,
}

impl Hook {
    /// Asks the task to quiesce; `Ok` once it holds its writes.
    pub async fn quiesce(&self, target: &HookTarget<'_>, timeout: Duration) -> Result<(), HookError> {
        match self {
            Self::None => Err(HookError::NotConfigured),
            Self::Http { quiesce, .. } => {
                let sep = if quiesce.contains('?') { '&' } else { '?' };
                let path = format!("{quiesce}{sep}timeout_ms={}", timeout.as_millis());
                post(target, &path, timeout).await
            }
            Self::Command { quiesce, .. } => run(quiesce, target, timeout).await,
        }
    }

    /// Lets the task write again (it also resumes by itself at its timeout).
    pub async fn resume(&self, target: &HookTarget<'_>, timeout: Duration) -> Result<(), HookError> {
        match self {
            Self::None => Ok(()),
            Self::Http { resume, .. } => post(target, resume, timeout).await,
            Self::Command { resume, .. } if resume.is_empty() => Ok(()),
            Self::Command { resume, .. } => run(resume, target, timeout).await,
        }
    }
}

async fn post(target: &HookTarget<'_>, path: &str, timeout: Duration) -> Result<(), HookError> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).pool_max_idle_per_host(0).build(HttpConnector::new());
    let uri = format!("http://{}{path}", target.endpoint);
    let mut request = Request::post(&uri);
    if let Some(token) = target.env.get("BERTH_TOKEN") {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Empty::new()).map_err(|source| HookError::BadPath { path: path.to_owned(), source })?;
    let failed = |e: &dyn std::fmt::Display| HookError::Exchange { uri: uri.clone(), reason: e.to_string() };
    let exchange = async {
        let response = client.request(request).await.map_err(|e| failed(&e))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| failed(&e))?.to_bytes();
        if status.is_success() {
            Ok(())
        } else {
            let body = String::from_utf8_lossy(&body).trim().to_owned();
            Err(HookError::Status { uri: uri.clone(), status, body })
        }
    };
    // The task waits for in-flight writes up to `timeout`; give the answer
    // a little longer to arrive.
    match tokio::time::timeout(timeout + Duration::from_secs(2), exchange).await {
        Ok(result) => result,
        Err(_) => Err(HookError::NoAnswer { uri: uri.clone(), timeout }),
    }
}

async fn run(argv: &[String], target: &HookTarget<'_>, timeout: Duration) -> Result<(), HookError> {
    let (program, args) = argv.split_first().ok_or(HookError::EmptyCommand)?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(target.env)
        .env("BERTH_TASK_ENDPOINT", target.endpoint)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| HookError::CommandTimeout { program: program.clone(), timeout })?
        .map_err(|source| HookError::Spawn { program: program.clone(), source })?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.lines().last().unwrap_or("").trim().to_owned();
        Err(HookError::Failed { program: program.clone(), status: output.status, stderr })
    }
}
