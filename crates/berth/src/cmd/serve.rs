//! `berth serve`: the file service on one volume, configured the blog's way
//! (`STORAGE_PATH`, `PORT`) or by flags.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_files::{PeerSource, ServeConfig};

use crate::units::{parse_duration, parse_size};

/// Serve files from a volume over HTTP: upload, list, download, delete, health, metrics.
///
/// Routes: GET /health, GET /files, POST /upload (multipart field `file`),
/// PUT|GET|HEAD|DELETE /files/{name}, GET|HEAD /download/{name}, GET /metrics.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder holding the files (the task's volume); created if missing.
    #[arg(long, env = "STORAGE_PATH", default_value = "/data", value_name = "DIR")]
    storage: PathBuf,

    /// TCP port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 5000)]
    port: u16,

    /// Address to listen on; 0.0.0.0 as in a container, 127.0.0.1 for this machine only.
    #[arg(long, env = "BERTH_LISTEN", default_value = "0.0.0.0", value_name = "ADDR")]
    listen: IpAddr,

    /// Largest accepted upload (K, M, G, T suffixes, powers of 1024).
    #[arg(long, env = "BERTH_MAX_UPLOAD", default_value = "16G", value_parser = parse_size, value_name = "SIZE")]
    max_upload: u64,

    /// Most bytes the volume may hold; uploads past it get 507. Default: the filesystem's free space.
    #[arg(long, env = "STORAGE_QUOTA", value_parser = parse_size, value_name = "SIZE")]
    capacity: Option<u64>,

    /// File holding the bearer token required on every route but /health
    /// (or set BERTH_TOKEN; the token is never taken as an argument, which `ps` would show).
    #[arg(long, env = "BERTH_TOKEN_FILE", value_name = "PATH")]
    token_file: Option<PathBuf>,

    /// Cluster members' base URLs, comma-separated (this task's own may be included).
    #[arg(long, env = "BERTH_PEERS", value_delimiter = ',', value_name = "URL,...", conflicts_with = "peers_url")]
    peers: Vec<String>,

    /// URL answering the member list as JSON, polled every 2 s: `{"peers": [URL...],
    /// "expected": N, "leaving": [URL...]}` (members that should run, and members that take no new
    /// files; both optional) or a plain array of URLs.
    #[arg(long, env = "BERTH_PEERS_URL", value_name = "URL")]
    peers_url: Option<String>,

    /// This task's base URL as its peers reach it [default: http://127.0.0.1:PORT].
    #[arg(long, env = "BERTH_ADVERTISE_URL", value_name = "URL")]
    advertise: Option<String>,

    /// Time a client has to send its request headers.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    header_timeout: Duration,

    /// Longest pause allowed while a client sends an upload.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    body_timeout: Duration,

    /// Time in-flight requests get to finish after SIGTERM (keep it under the
    /// platform's stop timeout: ECS's default is 30 s).
    #[arg(long, default_value = "25s", value_parser = parse_duration, value_name = "DURATION")]
    drain_timeout: Duration,
}

impl Args {
    fn into_config(self) -> Result<ServeConfig> {
        let mut config = ServeConfig::new(self.storage, SocketAddr::new(self.listen, self.port));
        config.max_upload = self.max_upload;
        config.capacity = self.capacity;
        config.token = read_token(self.token_file.as_deref())?;
        config.peers = match (self.peers_url, self.peers.is_empty()) {
            (Some(url), _) => PeerSource::Url(url),
            (None, false) => PeerSource::Static(self.peers),
            (None, true) => PeerSource::None,
        };
        config.advertise = self.advertise;
        config.header_timeout = self.header_timeout;
        config.body_idle_timeout = self.body_timeout;
        config.drain_timeout = self.drain_timeout;
        Ok(config)
    }
}

fn read_token(file: Option<&std::path::Path>) -> Result<Option<String>> {
    let token = match file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("BERTH_TOKEN").ok(),
    };
    match token {
        Some(t) if t.is_empty() => {
            bail!("the bearer token is empty: set BERTH_TOKEN or fill the token file")
        }
        other => Ok(other),
    }
}

pub fn run(args: Args) -> Result<()> {
    let config = args.into_config()?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime
        .block_on(async { berth_files::serve(config, shutdown_signal()).await.context("berth serve could not start") })
}

/// Completes on SIGTERM (what ECS and the local supervisor send) or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; only Ctrl-C will stop the service");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
}
