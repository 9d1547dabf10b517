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
                // hyper closes a connection whose request header does not
                // arrive in time without a word; a second handle on the
                // socket answers 408 first, as RFC 9110 has a server say it.
                // Only a request begun and not finished gets it: an idle
                // keep-alive connection is closed without a word, as before,
                // so a client sending on it at that moment retries rather
                // than takes the 408 for its own request.
                let (stream, spare) = match with_spare(stream) {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot set up a connection");
                        continue;
                    }
                };
                let stream = Tracked { inner: stream, mid_request: Arc::default() };
                let mid_request = Arc::clone(&stream.mid_request);
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(state.config.header_timeout)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        if e.is_timeout() && mid_request.load(Ordering::Relaxed) {
                            request_timeout(spare).await;
                        }
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

/// The connection's socket, and a second handle on it (a duplicate file
/// descriptor) that outlives hyper's.
fn with_spare(stream: tokio::net::TcpStream) -> std::io::Result<(tokio::net::TcpStream, tokio::net::TcpStream)> {
    let std = stream.into_std()?;
    let spare = std.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(std)?, tokio::net::TcpStream::from_std(spare)?))
}

/// Answers 408 on a connection whose request header did not arrive in
/// time, then closes it.
async fn request_timeout(mut spare: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const ANSWER: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), spare.write_all(ANSWER)).await;
    let _ = spare.shutdown().await;
}

/// A connection's socket that notes whether a request has begun: bytes
/// read since the last bytes written (a response).
struct Tracked {
    inner: tokio::net::TcpStream,
    mid_request: Arc<std::sync::atomic::AtomicBool>,
}

impl tokio::io::AsyncRead for Tracked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.mid_request.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Tracked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.mid_request.store(false, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
