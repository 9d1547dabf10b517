//! The supervisor's settings: the names it reports and where tasks run and log.
//!
//! Locally berth plays one ECS cluster in one region of one account, so the
//! task ARNs and events it emits have ECS's shape (`arn:aws:ecs:local:
//! 000000000000:task/berth/…`) and code written against ECS reads them as is.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// How the local supervisor names, starts and keeps its tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// The cluster name in ARNs (default `berth`).
    pub cluster: String,
    /// The region in ARNs and events (default `local`).
    pub region: String,
    /// The account in ARNs and events (default `000000000000`).
    pub account: String,
    /// The `berth` binary: a definition with an empty command runs `<program> serve`.
    pub program: PathBuf,
    /// Each task's stdout and stderr are appended to `<logs>/<task-id>.log`.
    pub logs: PathBuf,
    /// The address tasks listen on; each task gets its own free port on it.
    pub listen_host: IpAddr,
    /// How long stopped tasks stay in `tasks()` (ECS: about an hour).
    pub stopped_retention: Duration,
    /// Variables of the supervisor's own environment a task inherits. Like
    /// an ECS container, a task otherwise sees only its definition's
    /// variables and the ones berth sets, so secrets in the supervisor's
    /// environment (a repository password) never reach it.
    pub inherit_env: Vec<String>,
    /// Events buffered per subscriber before a slow one starts losing them.
    pub event_capacity: usize,
    /// The admin API's base URL: every task gets
    /// `BERTH_PEERS_URL=<it>/v1/services/<service>/peers` (the running
    /// tasks of its service) unless its definition sets one, so `berth
    /// serve` answers as one file namespace and other workloads can find
    /// their peers. Set at launch, not in the definition, because the
    /// admin port changes between starts and the definition must not.
    pub admin_url: Option<String>,
    /// Where each running task's process group is recorded, so that the
    /// next supervisor kills what a killed one's tasks left running (see
    /// `leftovers`). None: not recorded.
    pub groups: Option<PathBuf>,
    /// Where the container engine answers (`unix:///PATH`, `tcp://HOST:PORT`);
    /// None: `DOCKER_HOST`, else the usual sockets of Podman and Docker.
    pub engine: Option<String>,
}

impl SupervisorConfig {
    /// The defaults, with the `berth` binary and the log folder given.
    pub fn new(program: impl Into<PathBuf>, logs: impl Into<PathBuf>) -> Self {
        Self {
            cluster: "berth".into(),
            region: "local".into(),
            account: "000000000000".into(),
            program: program.into(),
            logs: logs.into(),
            listen_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            stopped_retention: Duration::from_secs(3600),
            inherit_env: ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "RUST_LOG", "RUST_BACKTRACE"]
                .into_iter()
                .map(String::from)
                .collect(),
            event_capacity: 1024,
            admin_url: None,
            groups: None,
            engine: None,
        }
    }
}
