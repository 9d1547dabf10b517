//! The local load balancer of `berth up`: the blog's ALB on one machine.
//!
//! A *load balancer* here is two listeners and a target pool. The HTTP
//! listener redirects every request to HTTPS (308), or, with the forward
//! action, proxies it as the HTTPS listener does. The HTTPS listener
//! (rustls, the user's certificate or a self-signed one kept in the state
//! folder) proxies each request to one healthy target, round-robin,
//! streaming bodies both ways.
//!
//! Flow: the platform publishes the service's tasks on a
//! `watch::Receiver<Vec<Target>>`. A target new to the list is registered
//! *initial* and health-checked by the load balancer itself every
//! `interval`; it gets traffic once healthy (see `health.rs` for the
//! thresholds and the grace period). A target that leaves the list is
//! *draining*: no new requests; it is forgotten once its in-flight requests
//! are done, or when `deregistration_delay` runs out, which cuts those still
//! running.
//!
//! Guarantees: a target gets a new request only while healthy and listed; an
//! upload or download of any size passes in constant memory. Caveats:
//! HTTP/1.1 only (no HTTP/2, no WebSocket upgrade), no idle timeout on
//! proxied requests, and with no healthy target requests fail with 503
//! (unlike ALB, which then routes to all targets).

mod config;
mod error;
mod health;
mod pool;
mod proxy;
mod redirect;
mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

pub use config::{HttpAction, LbConfig, Target, TargetHealth, START_INTERVAL};
pub use error::LbError;
pub use health::HealthState;
pub use pool::TargetState;
pub use tls::{SELF_SIGNED_CERT, SELF_SIGNED_KEY};

use health::CheckClient;
use pool::{Backend, Pool};
use proxy::Proxy;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running load balancer as the admin API sees it: its targets' health
/// for the console, and its HTTPS listener with the certificate to trust
/// for the console's file browser.
#[derive(Clone)]
pub struct LbView {
    pool: Arc<Pool>,
    pub https_addr: SocketAddr,
    /// `https://localhost:PORT` for a loopback listener.
    pub url: String,
    pub cert: PathBuf,
}

impl LbView {
    pub fn targets(&self) -> Vec<TargetState> {
        self.pool.states()
    }
}

/// A running load balancer. Dropping it stops it too; [`LoadBalancer::shutdown`]
/// also waits for its listeners to close.
pub struct LoadBalancer {
    http_addr: SocketAddr,
    https_addr: SocketAddr,
    cert_path: PathBuf,
    pool: Arc<Pool>,
    stop: watch::Sender<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl LoadBalancer {
    /// Loads or creates the certificate, binds both listeners and starts
    /// following `targets`. Must run inside a tokio runtime.
    pub async fn start(
        config: LbConfig,
        state_dir: &Path,
        targets: watch::Receiver<Vec<Target>>,
    ) -> Result<Self, LbError> {
        let files = tls::cert_files(config.cert.as_ref(), state_dir, &config.listen_host)?;
        let acceptor = TlsAcceptor::from(tls::server_config(&files)?);
        let ip = listen_ip(&config.listen_host)?;
        let http = bind(SocketAddr::new(ip, config.http_port)).await?;
        let https = bind(SocketAddr::new(ip, config.https_port)).await?;
        let http_addr = http.local_addr().map_err(|e| LbError::bind(SocketAddr::new(ip, config.http_port), e))?;
        let https_addr = https.local_addr().map_err(|e| LbError::bind(SocketAddr::new(ip, config.https_port), e))?;

        let pool = Arc::new(Pool::new(config.health.clone(), config.grace_period));
        let stop = watch::Sender::new(());
        let stopped = Stopped(stop.subscribe());
        let proxy = Arc::new(Proxy::new(pool.clone(), https_addr.port(), "https"));
        let redirect_host: Arc<str> = config.listen_host.as_str().into();
        let http_task = match config.http_action {
            HttpAction::Redirect => stopped.spawn(serve_http(http, redirect_host, https_addr.port(), stopped.clone())),
            HttpAction::Forward => {
                let forward = Arc::new(Proxy::new(pool.clone(), http_addr.port(), "http"));
                stopped.spawn(serve_forward(http, forward, stopped.clone()))
            }
        };
        let tasks = vec![
            stopped.spawn(follow_targets(pool.clone(), targets, config, stopped.clone())),
            http_task,
            stopped.spawn(serve_https(https, acceptor, proxy, stopped.clone())),
        ];
        tracing::info!(%http_addr, %https_addr, cert = %files.cert.display(), "load balancer listening");
        Ok(Self { http_addr, https_addr, cert_path: files.cert, pool, stop, tasks })
    }

    /// Every known target with its state, in registration order.
    pub fn targets(&self) -> Vec<TargetState> {
        self.pool.states()
    }

    /// What the admin API shows of it, and how it reaches it.
    pub fn view(&self) -> LbView {
        LbView {
            pool: Arc::clone(&self.pool),
            https_addr: self.https_addr,
            url: self.https_url(),
            cert: self.cert_path.clone(),
        }
    }

    /// The PEM certificate the HTTPS listener presents (`curl --cacert` it when self-signed).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The bound HTTP (redirecting) listener address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound HTTPS listener address.
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// `https://host:port` of the HTTPS listener, for printing.
    pub fn https_url(&self) -> String {
        let ip = self.https_addr.ip();
        if ip.is_loopback() {
            format!("https://localhost:{}", self.https_addr.port())
        } else {
            format!("https://{}", self.https_addr)
        }
    }

    /// Stops accepting, closes the listeners and cuts open connections.
    pub async fn shutdown(self) {
        self.stop.send_replace(());
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// `listen_host` as an address: an IP, or `localhost` for 127.0.0.1.
fn listen_ip(host: &str) -> Result<IpAddr, LbError> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    host.trim_matches(|c| c == '[' || c == ']').parse().map_err(|_| LbError::Address(host.to_string()))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, LbError> {
    TcpListener::bind(addr).await.map_err(|e| LbError::bind(addr, e))
}

/// Resolves once the load balancer stops (shutdown called or dropped).
#[derive(Clone)]
struct Stopped(watch::Receiver<()>);

impl Stopped {
    async fn wait(mut self) {
        let _ = self.0.changed().await;
    }

    /// Spawns `work`, ended when the load balancer stops.
    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let stopped = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = work => {}
                () = stopped.wait() => {}
            }
        })
    }
}

/// Applies every new target list to the pool: starts health checks for new
/// targets, stops them and waits out draining for removed ones.
async fn follow_targets(
    pool: Arc<Pool>,
    mut targets: watch::Receiver<Vec<Target>>,
    config: LbConfig,
    stopped: Stopped,
) {
    let client = health::check_client();
    let mut checks: Vec<(Arc<Backend>, AbortHandle)> = Vec::new();
    loop {
        let wanted = targets.borrow_and_update().clone();
        let plan = pool.sync(&wanted, Instant::now());
        for backend in plan.added {
            let check = check_loop(pool.clone(), backend.clone(), client.clone(), config.health.clone());
            checks.push((backend, stopped.spawn(check).abort_handle()));
        }
        for backend in plan.draining {
            checks.retain(|(b, check)| {
                let keep = !Arc::ptr_eq(b, &backend);
                if !keep {
                    check.abort();
                }
                keep
            });
            stopped.spawn(drain(pool.clone(), backend, config.deregistration_delay));
        }
        if targets.changed().await.is_err() {
            // The platform dropped its sender: keep serving the last list.
            std::future::pending::<()>().await;
        }
    }
}

/// Health-checks one target until it drains: the first check at once,
/// then every `start_interval` until it is first healthy, then every
/// `interval`.
async fn check_loop(pool: Arc<Pool>, backend: Arc<Backend>, client: CheckClient, health: TargetHealth) {
    let mut was_healthy = false;
    loop {
        let started = Instant::now();
        let result = health::probe(&client, backend.target.addr, &health).await;
        if !pool.observe(&backend, &result, Instant::now()) {
            return;
        }
        was_healthy |= backend.state() == HealthState::Healthy;
        let every = if was_healthy { health.interval } else { health.start_interval.min(health.interval) };
        tokio::time::sleep_until(started + every).await;
    }
}

/// Waits until a draining target is idle or its delay runs out, then forgets it.
async fn drain(pool: Arc<Pool>, backend: Arc<Backend>, delay: Duration) {
    if !backend.wait_idle(Instant::now() + delay).await {
        tracing::warn!(
            target_id = %backend.target.id,
            in_flight = backend.in_flight(),
            "load balancer: deregistration delay over, cutting requests still in flight"
        );
        backend.cut();
    }
    pool.remove(&backend);
}

async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off, do not spin.
                tracing::warn!(error = %e, "load balancer: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_http(listener: TcpListener, host: Arc<str>, https_port: u16, stopped: Stopped) {
    loop {
        let (stream, _) = accept(&listener).await;
        let host = host.clone();
        let service = service_fn(move |request| {
            let answer = redirect::redirect(&request, &host, https_port);
            async move { Ok::<_, Infallible>(answer) }
        });
        stopped.spawn(async move {
            let _ =
                http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The HTTP listener with a forward action: plain HTTP proxied to the targets.
async fn serve_forward(listener: TcpListener, proxy: Arc<Proxy>, stopped: Stopped) {
    loop {
        let (stream, peer) = accept(&listener).await;
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        stopped.spawn(async move {
            let service = service_fn(move |request| {
                let proxy = proxy.clone();
                async move { proxy.handle(request, peer).await }
            });
            let _ =
                http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn serve_https(listener: TcpListener, acceptor: TlsAcceptor, proxy: Arc<Proxy>, stopped: Stopped) {
    loop {
        let (stream, peer) = accept(&listener).await;
        let _ = stream.set_nodelay(true);
        let (acceptor, proxy) = (acceptor.clone(), proxy.clone());
        stopped.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "load balancer: TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "load balancer: TLS handshake timed out"),
            };
            let service = service_fn(move |request| {
                let proxy = proxy.clone();
                async move { proxy.handle(request, peer).await }
            });
            let _ = http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
