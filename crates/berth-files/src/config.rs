//! Settings of `berth serve`, as plain values; the CLI fills them from flags and
//! the environment, tests fill them directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the cluster's member list comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PeerSource {
    /// A single task: no cluster.
    #[default]
    None,
    /// A fixed list of member base URLs (this task's own URL included or not).
    Static(Vec<String>),
    /// A URL answering `{"peers": [...], "expected": N, "leaving": [...]}` or
    /// `[...]`, fetched every few seconds, so members can come and go (the
    /// local platform serves one).
    Url(String),
}

/// Everything `berth serve` needs to run.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The task's volume.
    pub storage: PathBuf,
    /// Socket the HTTP server binds.
    pub listen: SocketAddr,
    /// Largest accepted upload, in bytes.
    pub max_upload: u64,
    /// Optional quota on the bytes the volume may hold.
    pub capacity: Option<u64>,
    /// Bearer token required on every route but `/health`.
    pub token: Option<String>,
    /// Cluster members, if any.
    pub peers: PeerSource,
    /// This task's own base URL as its peers reach it; defaults to
    /// `http://127.0.0.1:PORT`.
    pub advertise: Option<String>,
    /// Time a client has to send its request headers.
    pub header_timeout: Duration,
    /// Longest pause allowed while a client sends a request body.
    pub body_idle_timeout: Duration,
    /// Time in-flight requests get to finish after SIGTERM.
    pub drain_timeout: Duration,
    /// Time a peer has to answer a cluster request.
    pub peer_timeout: Duration,
}

impl ServeConfig {
    /// Defaults for a volume at `storage` listening on `listen`.
    pub fn new(storage: PathBuf, listen: SocketAddr) -> Self {
        Self {
            storage,
            listen,
            max_upload: 16 << 30,
            capacity: None,
            token: None,
            peers: PeerSource::None,
            advertise: None,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(25),
            peer_timeout: Duration::from_secs(5),
        }
    }

    /// This task's base URL as its peers see it.
    pub fn advertise_url(&self) -> String {
        if let Some(url) = &self.advertise {
            return url.trim_end_matches('/').to_owned();
        }
        let ip = self.listen.ip();
        let host = if ip.is_unspecified() { "127.0.0.1".to_owned() } else { ip.to_string() };
        format!("http://{host}:{}", self.listen.port())
    }
}
