//! The HTTP server loop: accepts connections with the timeouts that keep slow
//! clients from starving others, and drains in-flight requests on shutdown.
//!
//! Built on hyper directly (rather than `axum::serve`) for two settings axum
//! does not expose: a header read timeout, so a client that opens a
//! connection and trickles its headers is cut off, and a bounded graceful
//! shutdown, because ECS sends SIGKILL once its stop timeout runs out.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::app::{router, AppState};
use crate::config::ServeConfig;
use crate::volume::Volume;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot use storage path {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::cluster::ClusterError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Opens the volume, binds, and serves until `shutdown` completes; then stops
/// accepting and gives in-flight requests `drain_timeout` to finish.
pub async fn serve(mut config: ServeConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let storage = config.storage.clone();
    let capacity = config.capacity;
    let volume = tokio::task::spawn_blocking(move || Volume::open(&storage, capacity))
        .await
        .expect("volume open does not panic")
        .map_err(|source| ServeError::Storage { path: config.storage.display().to_string(), source })?;
    let listener =
        TcpListener::bind(config.listen).await.map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    // With port 0 the kernel picks one; peers must be told the real one.
    if let Ok(addr) = listener.local_addr() {
        config.listen = addr;
    }
    tracing::info!(
        addr = %config.listen,
        storage = %volume.root().display(),
        used_bytes = volume.used(),
        cluster = ?config.peers,
        "listening"
    );
    let state = Arc::new(AppState::new(config, Arc::new(volume)).map_err(ServeError::Config)?);
    run(listener, state, shutdown).await;
    Ok(())
}

async fn run(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()>) {
    let app = router(Arc::clone(&state));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // rather than spin, and keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(state.config.header_timeout)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    state.draining.store(true, Ordering::Relaxed);
    drop(listener);
    let deadline = state.config.drain_timeout;
    tracing::info!(deadline = ?deadline, "stopped accepting; draining in-flight requests");
    match tokio::time::timeout(deadline, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!("drain deadline passed with requests still in flight; exiting"),
    }
}
