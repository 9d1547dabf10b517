//! The container engine: Docker Engine or Podman, through the Docker
//! Engine API (the `bollard` crate).
//!
//! An *engine* is found once, the first time a container task needs one:
//! `DOCKER_HOST` if it is set, else the usual sockets of Podman and Docker,
//! each asked for its version. When none answers, the error says what was
//! tried and how to start one. Requests speak API 1.41, which Docker 20.10
//! and later and Podman 4 and later both serve.
//!
//! Only what the supervisor needs is here, each call translated to a plain
//! result: an engine's "no such container" or "not running" on a kill or a
//! removal is success, because the container is where the caller wanted it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::errors::Error as ApiError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, KillContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StatsOptions, WaitContainerOptions,
};
use bollard::{ClientVersion, Docker};
use futures_util::StreamExt;

/// The API version berth speaks.
const API: &ClientVersion = &ClientVersion { major_version: 1, minor_version: 41 };
/// How long an ordinary request may take (a create, a start, an inspect).
const REQUEST_TIMEOUT: u64 = 60;
/// How long a long poll (a container's wait, a log stream) may stay open
/// before it is asked again.
const LONG_POLL: u64 = 3600;

/// A connection to a container engine.
#[derive(Clone, Debug)]
pub struct Engine {
    api: Docker,
    long: Docker,
    /// Where it answered (`unix:///run/podman/podman.sock`).
    pub address: String,
    /// Podman rather than Docker: they differ in how a container on its own
    /// network reaches the host (see [`Engine::own_network`]).
    pub podman: bool,
}

/// How a container on its own network is networked by an engine, and the
/// address under which it reaches the host's loopback, if it can.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnNetwork {
    /// `HostConfig.NetworkMode`; `None` is the engine's default bridge.
    pub mode: Option<String>,
    /// Where the host's `127.0.0.1` answers from inside the container.
    pub host_loopback: Option<String>,
}

/// Podman's user-mode network with the host's loopback at its gateway
/// address, and ports forwarded by slirp4netns itself (no iptables rule):
/// a task keeps its own network namespace and port, yet reaches the admin
/// API and its peers, which listen on the host's loopback only.
const SLIRP: &str = "slirp4netns:allow_host_loopback=true,port_handler=slirp4netns";
/// Where slirp4netns answers for the host's loopback.
const SLIRP_HOST_LOOPBACK: &str = "10.0.2.2";

/// No engine answered.
#[derive(Debug, thiserror::Error)]
#[error(
    "no container engine answered (tried {tried}); start one (`podman system service --time=0 \
     unix:///run/podman/podman.sock &`, or the docker service) or point DOCKER_HOST at its socket"
)]
pub struct NoEngine {
    tried: String,
}

/// A request the engine refused or could not answer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no such socket")]
    NoSocket,
    #[error("the engine at {address} has no image {image}; build, import or pull it first")]
    NoImage { address: String, image: String },
    #[error("cannot {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: ApiError,
    },
    #[error("{path} in the container: {reason}")]
    Archive { path: String, reason: String },
    #[error("{program} exited with {code}")]
    Exited { program: String, code: i64 },
    #[error("{program} did not report an exit code")]
    NoExitCode { program: String },
    #[error("{program} did not finish within {timeout:?}")]
    TimedOut { program: String, timeout: Duration },
}

impl EngineError {
    fn api(what: impl Into<String>) -> impl FnOnce(ApiError) -> Self {
        let what = what.into();
        move |source| Self::Api { what, source }
    }
}

/// What a container looked like once it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i64>,
    /// The engine says the kernel killed it for memory (not every engine
    /// knows: see `oom`).
    pub oom_killed: bool,
}

impl Engine {
    /// Finds an engine that answers: at `address` if given, else as the
    /// module's doc says.
    pub async fn connect(address: Option<&str>) -> Result<Self, NoEngine> {
        let mut tried = Vec::new();
        let candidates = match address {
            Some(address) => vec![address.to_owned()],
            None => candidates(),
        };
        for address in candidates {
            match Self::at(&address).await {
                Ok(engine) => return Ok(engine),
                Err(e) => tried.push(format!("{address}: {e}")),
            }
        }
        Err(NoEngine { tried: tried.join("; ") })
    }

    /// The engine at `address` (`unix:///PATH` or `tcp://HOST:PORT`), if it answers.
    pub async fn at(address: &str) -> Result<Self, EngineError> {
        let api = match address.strip_prefix("unix://") {
            Some(path) => {
                if !std::path::Path::new(path).exists() {
                    return Err(EngineError::NoSocket);
                }
                Docker::connect_with_unix(address, REQUEST_TIMEOUT, API)
            }
            None => Docker::connect_with_http(address, REQUEST_TIMEOUT, API),
        }
        .map_err(EngineError::api("connect"))?;
        let version = api.version().await.map_err(EngineError::api("ask its version"))?;
        let podman = version.components.unwrap_or_default().iter().any(|c| c.name.starts_with("Podman"));
        let long = api.clone().with_timeout(Duration::from_secs(LONG_POLL));
        Ok(Self { api, long, address: address.to_owned(), podman })
    }

    /// How this engine gives a container its own network. Docker's default
    /// bridge reaches the host only at the bridge's gateway, where nothing
    /// of berth listens, so a task there has no peers.
    pub fn own_network(&self) -> OwnNetwork {
        match self.podman {
            true => OwnNetwork { mode: Some(SLIRP.into()), host_loopback: Some(SLIRP_HOST_LOOPBACK.into()) },
            false => OwnNetwork { mode: None, host_loopback: None },
        }
    }

    /// Whether the engine holds `image` (nothing is pulled: a task of an
    /// image the engine lacks fails to start, as ECS's CannotPullContainerError).
    pub async fn image_user(&self, image: &str) -> Result<Option<String>, EngineError> {
        let inspected = self.api.inspect_image(image).await.map_err(|e| match e {
            ApiError::DockerResponseServerError { status_code: 404, .. } => {
                EngineError::NoImage { address: self.address.clone(), image: image.to_owned() }
            }
            e => EngineError::api(format!("inspect image {image}"))(e),
        })?;
        Ok(inspected.config.and_then(|c| c.user).filter(|u| !u.is_empty()))
    }

    /// The content of the file at `path` in the container (created or
    /// running), from the engine's archive of it.
    pub async fn read_file(&self, id: &str, path: &str) -> Result<Vec<u8>, EngineError> {
        use std::io::Read;
        let options = DownloadFromContainerOptions { path: path.to_owned() };
        let mut archive = Vec::new();
        let mut chunks = self.api.download_from_container(id, Some(options));
        while let Some(chunk) = chunks.next().await {
            archive.extend_from_slice(&chunk.map_err(EngineError::api(format!("read {path} in the container")))?);
        }
        let damaged = |reason: String| EngineError::Archive { path: path.to_owned(), reason };
        let mut entries = tar::Archive::new(archive.as_slice());
        let mut entry = entries
            .entries()
            .and_then(|mut e| e.next().transpose())
            .map_err(|e| damaged(e.to_string()))?
            .ok_or_else(|| damaged("an empty archive".into()))?;
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(|e| damaged(e.to_string()))?;
        Ok(content)
    }

    /// Creates a container named `name`; returns its id.
    pub async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String, EngineError> {
        let options = CreateContainerOptions { name: Some(name.to_owned()), ..Default::default() };
        let created =
            self.api.create_container(Some(options), body).await.map_err(EngineError::api("create the container"))?;
        Ok(created.id)
    }

    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.api.start_container(id, None).await.map_err(EngineError::api("start the container"))
    }

    /// The host process id of the container's main process, once it runs,
    /// and the signal that stops it (the image's `STOPSIGNAL`, else TERM:
    /// ECS stops a container with `docker stop`, which sends that signal).
    pub async fn started(&self, id: &str) -> (Option<u32>, String) {
        let Ok(inspected) = self.api.inspect_container(id, None).await else { return (None, "TERM".into()) };
        let pid = inspected.state.and_then(|s| s.pid).and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0);
        let signal = inspected.config.and_then(|c| c.stop_signal).filter(|s| !s.is_empty());
        (pid, signal.unwrap_or_else(|| "TERM".into()))
    }

    /// Sends `signal` (`TERM`, `KILL`) to the container's main process.
    pub async fn kill(&self, id: &str, signal: &str) {
        let options = KillContainerOptions { signal: signal.to_owned() };
        match self.api.kill_container(id, Some(options)).await {
            Ok(()) => {}
            Err(ApiError::DockerResponseServerError { status_code: 404 | 409, .. }) => {}
            // Podman answers 500 for a container that has just exited.
            Err(ApiError::DockerResponseServerError { message, .. }) if message.contains("not running") => {}
            Err(e) => tracing::warn!(container = id, signal, error = %e, "cannot signal a container"),
        }
    }

    /// Waits until the container has stopped and says how. With `pid`, its
    /// main process on this machine, the end is seen the moment that
    /// process dies (a pidfd), not at the engine's next poll of its state
    /// (Podman's wait looks every 250 ms).
    pub async fn wait(&self, id: &str, pid: Option<u32>) -> Exit {
        if let Some(process) = pid.and_then(pidfd) {
            tokio::select! {
                exit = self.wait_long(id) => return exit,
                _ = process.readable() => {
                    // The engine records the exit a moment after the process dies.
                    for _ in 0..200 {
                        if !self.running(id).await {
                            return self.exit(id).await;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
        self.wait_long(id).await
    }

    /// [`Self::wait`] through the engine's own wait.
    async fn wait_long(&self, id: &str) -> Exit {
        loop {
            let options = WaitContainerOptions { condition: "not-running".into() };
            let mut waits = self.long.wait_container(id, Some(options));
            match waits.next().await {
                Some(Ok(_)) | Some(Err(ApiError::DockerContainerWaitError { .. })) => break,
                Some(Err(ApiError::DockerResponseServerError { status_code: 404, .. })) => break,
                // A long poll that timed out, or an engine that restarted:
                // ask again, after a breath, if it still runs.
                Some(Err(e)) => {
                    tracing::debug!(container = id, error = %e, "waiting for a container again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => tokio::time::sleep(Duration::from_millis(500)).await,
            }
            if !self.running(id).await {
                break;
            }
        }
        self.exit(id).await
    }

    async fn running(&self, id: &str) -> bool {
        match self.api.inspect_container(id, None).await {
            Ok(c) => c.state.and_then(|s| s.running).unwrap_or(false),
            Err(ApiError::DockerResponseServerError { status_code: 404, .. }) => false,
            Err(_) => true,
        }
    }

    /// How a stopped container ended.
    pub async fn exit(&self, id: &str) -> Exit {
        match self.api.inspect_container(id, None).await {
            Ok(c) => {
                let state = c.state.unwrap_or_default();
                Exit { code: state.exit_code, oom_killed: state.oom_killed.unwrap_or(false) }
            }
            Err(e) => {
                tracing::warn!(container = id, error = %e, "cannot read how a container ended");
                Exit::default()
            }
        }
    }

    /// Removes the container (and what the engine kept of it).
    pub async fn remove(&self, id: &str) {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.api.remove_container(id, Some(options)).await {
            Ok(()) | Err(ApiError::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(e) => tracing::warn!(container = id, error = %e, "cannot remove a container"),
        }
    }

    /// Appends the container's output, from its start until it stops, to `log`.
    pub async fn follow_logs(&self, id: &str, mut log: std::fs::File) {
        use std::io::Write;
        let options =
            LogsOptions { follow: true, stdout: true, stderr: true, tail: "all".into(), ..Default::default() };
        let mut lines = self.long.logs(id, Some(options));
        while let Some(chunk) = lines.next().await {
            match chunk {
                Ok(output) => {
                    if let Err(e) = log.write_all(&output.into_bytes()) {
                        tracing::warn!(container = id, error = %e, "cannot write a task's log");
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(container = id, error = %e, "the log stream of a container ended");
                    return;
                }
            }
        }
    }

    /// Runs `argv` in the container; Ok when it exits 0 within `timeout`.
    pub async fn exec(&self, id: &str, argv: &[String], timeout: Duration) -> Result<(), EngineError> {
        use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
        let program = argv.first().cloned().unwrap_or_default();
        let run = async {
            let options = CreateExecOptions {
                cmd: Some(argv.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            };
            let exec = self.api.create_exec(id, options).await.map_err(EngineError::api(format!("run {program}")))?;
            let start = StartExecOptions { detach: false, ..Default::default() };
            // The output is read to its end: that is when the command has exited.
            if let StartExecResults::Attached { mut output, .. } =
                self.api.start_exec(&exec.id, Some(start)).await.map_err(EngineError::api(format!("run {program}")))?
            {
                while output.next().await.is_some() {}
            }
            let inspected =
                self.api.inspect_exec(&exec.id).await.map_err(EngineError::api(format!("inspect {program}")))?;
            match inspected.exit_code {
                Some(0) => Ok(()),
                Some(code) => Err(EngineError::Exited { program: program.clone(), code }),
                None => Err(EngineError::NoExitCode { program: program.clone() }),
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or_else(|_| Err(EngineError::TimedOut { program: program.clone(), timeout }))
    }

    /// The container's CPU time (ns) and memory in use (bytes, less the
    /// page cache, as `docker stats` shows it).
    pub async fn stats(&self, id: &str) -> Result<Option<(u64, u64)>, EngineError> {
        let options = StatsOptions { stream: false, one_shot: true };
        let mut stats = self.api.stats(id, Some(options));
        let Some(reading) = stats.next().await else { return Ok(None) };
        let reading = match reading {
            Ok(r) => r,
            Err(ApiError::DockerResponseServerError { status_code: 404 | 409, .. }) => return Ok(None),
            Err(e) => return Err(EngineError::api("read its statistics")(e)),
        };
        let cpu = reading.cpu_stats.and_then(|c| c.cpu_usage).and_then(|u| u.total_usage);
        let memory = reading.memory_stats.map(|m| {
            let cache = m.stats.as_ref().and_then(|s| s.get("total_inactive_file").or(s.get("inactive_file")));
            m.usage.unwrap_or(0).saturating_sub(cache.copied().unwrap_or(0))
        });
        Ok(cpu.zip(memory))
    }

    /// The ids of the containers carrying every label of `labels`, running or not.
    pub async fn labelled(&self, labels: &[(&str, &str)]) -> Result<Vec<String>, EngineError> {
        let filter = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), filter)])),
            ..Default::default()
        };
        let found = self.api.list_containers(Some(options)).await.map_err(EngineError::api("list containers"))?;
        Ok(found.into_iter().filter_map(|c| c.id).collect())
    }
}

/// A pidfd of process `pid`, readable once it has exited; none where the
/// kernel has no pidfd or the process is not ours to see (a remote engine).
fn pidfd(pid: u32) -> Option<tokio::io::unix::AsyncFd<std::fs::File>> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::pid_t::try_from(pid).ok()?, 0) };
    let raw = i32::try_from(raw).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `raw` is a new fd that nothing else owns.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    // SAFETY: the AsyncFd owns the open fd for its whole life.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(file, tokio::io::Interest::READABLE) }.ok()
}

/// Where an engine may answer, in the order tried.
fn candidates() -> Vec<String> {
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        if !host.is_empty() {
            return vec![host];
        }
    }
    let mut paths: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::env::var("XDG_RUNTIME_DIR") {
        paths.push(PathBuf::from(dir).join("podman/podman.sock"));
    }
    paths.push("/run/podman/podman.sock".into());
    paths.push("/var/run/docker.sock".into());
    if let Ok(home) = std::env::var("HOME") {
        paths.push(PathBuf::from(home).join(".docker/run/docker.sock"));
    }
    paths.into_iter().map(|p| format!("unix://{}", p.display())).collect()
}
