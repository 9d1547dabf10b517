//! The health check: is the volume there and writable?
//!
//! A load balancer must see a lost, read-only or full-of-errors volume as
//! unhealthy, so `/health` runs a real write probe (create, write, fsync,
//! delete) rather than answering a constant. The result is cached for about a
//! second so a storm of checks costs one probe. While the volume is quiesced
//! for a snapshot, only its presence is checked: nothing may write to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::volume::Volume;

/// How long one probe result is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);
/// A probe slower than this counts as a failure (a hung disk is not healthy).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the volume is not healthy: the text `/health` answers with. Kept as
/// text inside (the cached result is cloned to every check of a second).
#[derive(Clone, Debug, thiserror::Error)]
pub enum Unhealthy {
    #[error("storage path {path} is not writable: {reason}")]
    NotWritable { path: String, reason: String },
    #[error("storage path {0} is not a directory")]
    NotADirectory(String),
    #[error("storage path {path} is not readable: {reason}")]
    NotReadable { path: String, reason: String },
    #[error("health probe failed: {0}")]
    ProbeFailed(String),
    #[error("storage {0} took longer than {PROBE_TIMEOUT:?}")]
    Slow(&'static str),
    /// SIGTERM: a load balancer should stop sending.
    #[error("shutting down")]
    Draining,
}

/// Cached health of one volume.
pub struct Health {
    volume: Arc<Volume>,
    last: Mutex<Option<(Instant, Result<(), Unhealthy>)>>,
}

impl Health {
    pub fn new(volume: Arc<Volume>) -> Self {
        Self { volume, last: Mutex::new(None) }
    }

    /// `Ok` when the storage path exists, is a directory and takes a write;
    /// otherwise the reason.
    pub async fn check(&self) -> Result<(), Unhealthy> {
        // Holding the lock across the probe makes concurrent checks wait for
        // one probe instead of each starting their own.
        let mut last = self.last.lock().await;
        if let Some((at, result)) = &*last {
            if at.elapsed() < CACHE_FOR {
                return result.clone();
            }
        }
        let volume = Arc::clone(&self.volume);
        let probe = tokio::task::spawn_blocking(move || volume.probe());
        let result = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => {
                Err(Unhealthy::NotWritable { path: self.volume.root().display().to_string(), reason: e.to_string() })
            }
            Ok(Err(e)) => Err(Unhealthy::ProbeFailed(e.to_string())),
            Err(_) => Err(Unhealthy::Slow("write probe")),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }

    /// `Ok` when the storage path exists and is a directory; the check used
    /// while the volume is quiesced, which writes nothing.
    pub async fn check_present(&self) -> Result<(), Unhealthy> {
        let root = self.volume.root().to_path_buf();
        let shown = root.display().to_string();
        let stat = tokio::task::spawn_blocking(move || std::fs::metadata(root));
        match tokio::time::timeout(PROBE_TIMEOUT, stat).await {
            Ok(Ok(Ok(meta))) if meta.is_dir() => Ok(()),
            Ok(Ok(Ok(_))) => Err(Unhealthy::NotADirectory(shown)),
            Ok(Ok(Err(e))) => Err(Unhealthy::NotReadable { path: shown, reason: e.to_string() }),
            Ok(Err(e)) => Err(Unhealthy::ProbeFailed(e.to_string())),
            Err(_) => Err(Unhealthy::Slow("stat")),
        }
    }
}
