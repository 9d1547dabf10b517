//! The load balancer's settings, each with the AWS ALB default the blog uses.
//!
//! A *target* is one task the load balancer may send requests to: its id
//! (the task ARN) and the address it serves HTTP on. *Target health* is the
//! check the load balancer itself runs against every target before and
//! while sending it traffic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One task the load balancer may route to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The task ARN; shown in [`TargetState`](super::TargetState).
    pub id: String,
    /// Where the task serves plain HTTP.
    pub addr: SocketAddr,
}

impl Target {
    pub fn new(id: impl Into<String>, addr: SocketAddr) -> Self {
        Self { id: id.into(), addr }
    }
}

/// The HTTP listener's action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HttpAction {
    /// 308 to the same path on HTTPS.
    #[default]
    Redirect,
    /// Proxy to a healthy target, as the HTTPS listener does.
    Forward,
}

/// Listeners, certificate, health check and deregistration settings.
#[derive(Clone, Debug)]
pub struct LbConfig {
    /// Address both listeners bind to (and the host HTTP redirects name
    /// when a request carries no `Host`).
    pub listen_host: String,
    /// HTTP listener port. 0 picks a free port.
    pub http_port: u16,
    /// What the HTTP listener does: redirect to HTTPS (the blog's), or
    /// forward to the targets as HTTPS does (an ALB listener's forward action).
    pub http_action: HttpAction,
    /// HTTPS listener port. 0 picks a free port.
    pub https_port: u16,
    /// PEM certificate chain and private key; `None` uses a self-signed
    /// certificate kept in the state folder.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// How targets are health-checked.
    pub health: TargetHealth,
    /// How long a removed target may finish its in-flight requests.
    pub deregistration_delay: Duration,
    /// After a target is registered, failed health checks during this time do not count.
    pub grace_period: Duration,
}

impl Default for LbConfig {
    fn default() -> Self {
        Self {
            listen_host: "127.0.0.1".into(),
            http_port: 8080,
            http_action: HttpAction::Redirect,
            https_port: 8443,
            cert: None,
            health: TargetHealth::default(),
            deregistration_delay: Duration::from_secs(30),
            grace_period: Duration::from_secs(60),
        }
    }
}

/// The default `start_interval` of target health checks.
pub const START_INTERVAL: Duration = Duration::from_millis(100);

/// The target health check: `GET path` over HTTP/1.1; a 2xx answer within
/// `timeout` passes.
#[derive(Clone, Debug)]
pub struct TargetHealth {
    pub path: String,
    pub interval: Duration,
    /// How often a newly registered target is checked until it is first
    /// healthy (then every `interval`): a replacement gets traffic within
    /// `healthy_threshold` quick checks of serving, not whole intervals.
    /// The ALB has no such setting; Docker's `start_interval` is the idea.
    pub start_interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes that make a target healthy.
    pub healthy_threshold: u32,
    /// Consecutive (counted) failures that make a target unhealthy.
    pub unhealthy_threshold: u32,
}

impl Default for TargetHealth {
    fn default() -> Self {
        Self {
            path: "/health".into(),
            interval: Duration::from_secs(30),
            start_interval: START_INTERVAL,
            timeout: Duration::from_secs(5),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}
