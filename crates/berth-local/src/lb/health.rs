//! Target health: the check the load balancer runs against each target and
//! the state machine its results drive.
//!
//! A target starts *initial* (registered, no traffic yet). `healthy_threshold`
//! consecutive passes make it *healthy* (it gets traffic);
//! `unhealthy_threshold` consecutive failures make it *unhealthy* (no
//! traffic) until it passes `healthy_threshold` times again. Failures within
//! `grace_period` of registration are not counted, so a slow-starting task
//! stays initial instead of turning unhealthy. *Draining* is not decided
//! here: it is what the pool does with a target that left the target list.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde::Serialize;
use tokio::time::Instant;

use super::TargetHealth;

/// Where a target stands, as AWS ALB names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Registered, not yet passed `healthy_threshold` checks: no traffic.
    Initial,
    /// Gets new requests.
    Healthy,
    /// Failed `unhealthy_threshold` checks in a row: no traffic.
    Unhealthy,
    /// Left the target list: no new requests, in-flight ones finish.
    Draining,
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Initial => "initial",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Draining => "draining",
        })
    }
}

/// Why one health check of the load balancer failed; its text is the
/// reason a target's state shows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CheckFailure {
    #[error("invalid health check path: {0}")]
    Path(String),
    /// The request failed: the error and its sources on one line.
    #[error("{0}")]
    Request(String),
    #[error("reading the answer: {0}")]
    Body(String),
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("status {0}")]
    Status(StatusCode),
}

/// The outcome of one health check: pass, or why it failed.
pub(crate) type Probe = Result<(), CheckFailure>;

/// A state change with its reason ("2 consecutive health checks passed").
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    pub to: HealthState,
    pub reason: String,
}

/// The health record of one registered target; pure, driven by [`Tracker::observe`].
#[derive(Clone, Debug)]
pub(crate) struct Tracker {
    state: HealthState,
    registered: Instant,
    passes: u32,
    failures: u32,
}

impl Tracker {
    pub fn new(registered: Instant) -> Self {
        Self { state: HealthState::Initial, registered, passes: 0, failures: 0 }
    }

    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Counts one check result taken at `now`; returns the transition it causes, if any.
    #[must_use]
    pub fn observe(&mut self, probe: &Probe, now: Instant, cfg: &TargetHealth, grace: Duration) -> Option<Transition> {
        match probe {
            Ok(()) => {
                self.passes = self.passes.saturating_add(1);
                self.failures = 0;
                (self.state != HealthState::Healthy && self.passes >= cfg.healthy_threshold.max(1)).then(|| {
                    self.state = HealthState::Healthy;
                    Transition { to: self.state, reason: format!("{} consecutive health checks passed", self.passes) }
                })
            }
            Err(why) => {
                self.passes = 0;
                if now.saturating_duration_since(self.registered) < grace {
                    return None;
                }
                self.failures = self.failures.saturating_add(1);
                (self.state != HealthState::Unhealthy && self.failures >= cfg.unhealthy_threshold.max(1)).then(|| {
                    self.state = HealthState::Unhealthy;
                    Transition {
                        to: self.state,
                        reason: format!("{} consecutive health checks failed, last: {why}", self.failures),
                    }
                })
            }
        }
    }
}

/// The HTTP client health checks use: a new connection per check, as a
/// dead target must fail even when an old connection lingers.
pub(crate) type CheckClient = Client<HttpConnector, Empty<Bytes>>;

pub(crate) fn check_client() -> CheckClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(hyper_util::rt::TokioExecutor::new()).pool_max_idle_per_host(0).build(connector)
}

/// One health check: `GET path` on `addr`; passes on a 2xx status with the
/// whole answer read within `timeout`.
pub(crate) async fn probe(client: &CheckClient, addr: SocketAddr, cfg: &TargetHealth) -> Probe {
    let uri = format!("http://{addr}{}", cfg.path);
    let request = Request::get(&uri).body(Empty::new()).map_err(|e| CheckFailure::Path(e.to_string()))?;
    let check = async {
        let response = client.request(request).await.map_err(|e| CheckFailure::Request(error_chain(&e)))?;
        let status = response.status();
        response.into_body().collect().await.map_err(|e| CheckFailure::Body(e.to_string()))?;
        check_status(status)
    };
    match tokio::time::timeout(cfg.timeout, check).await {
        Ok(result) => result,
        Err(_) => Err(CheckFailure::Timeout(cfg.timeout)),
    }
}

fn check_status(status: StatusCode) -> Probe {
    if status.is_success() {
        Ok(())
    } else {
        Err(CheckFailure::Status(status))
    }
}

/// An error and its sources on one line ("client error (Connect): connection refused").
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TargetHealth {
        TargetHealth { healthy_threshold: 2, unhealthy_threshold: 3, ..TargetHealth::default() }
    }

    const GRACE: Duration = Duration::from_secs(60);

    #[test]
    fn healthy_only_after_threshold_passes() {
        let t0 = Instant::now();
        let mut t = Tracker::new(t0);
        assert_eq!(t.observe(&Ok(()), t0, &cfg(), GRACE), None);
        assert_eq!(t.state(), HealthState::Initial);
        let tr = t.observe(&Ok(()), t0, &cfg(), GRACE).unwrap();
        assert_eq!(tr.to, HealthState::Healthy);
        assert_eq!(tr.reason, "2 consecutive health checks passed");
        assert_eq!(t.observe(&Ok(()), t0, &cfg(), GRACE), None);
    }

    #[test]
    fn failures_in_grace_period_do_not_count() {
        let t0 = Instant::now();
        let mut t = Tracker::new(t0);
        for _ in 0..10 {
            assert_eq!(
                t.observe(&Err(CheckFailure::Request("refused".into())), t0 + Duration::from_secs(59), &cfg(), GRACE),
                None
            );
        }
        assert_eq!(t.state(), HealthState::Initial);
        let after = t0 + GRACE;
        assert_eq!(t.observe(&Err(CheckFailure::Request("x".into())), after, &cfg(), GRACE), None);
        assert_eq!(t.observe(&Err(CheckFailure::Request("x".into())), after, &cfg(), GRACE), None);
        let tr =
            t.observe(&Err(CheckFailure::Status(StatusCode::INTERNAL_SERVER_ERROR)), after, &cfg(), GRACE).unwrap();
        assert_eq!(tr.to, HealthState::Unhealthy);
        assert_eq!(tr.reason, "3 consecutive health checks failed, last: status 500 Internal Server Error");
    }

    #[test]
    fn a_pass_resets_the_failure_count_and_unhealthy_recovers() {
        let t0 = Instant::now();
        let mut t = Tracker::new(t0);
        let _ = t.observe(&Ok(()), t0, &cfg(), Duration::ZERO);
        let _ = t.observe(&Ok(()), t0, &cfg(), Duration::ZERO);
        let fail = Err(CheckFailure::Request("x".into()));
        let _ = t.observe(&fail, t0, &cfg(), Duration::ZERO);
        let _ = t.observe(&fail, t0, &cfg(), Duration::ZERO);
        let _ = t.observe(&Ok(()), t0, &cfg(), Duration::ZERO);
        let _ = t.observe(&fail, t0, &cfg(), Duration::ZERO);
        let _ = t.observe(&fail, t0, &cfg(), Duration::ZERO);
        assert_eq!(t.state(), HealthState::Healthy);
        assert_eq!(t.observe(&fail, t0, &cfg(), Duration::ZERO).unwrap().to, HealthState::Unhealthy);
        let _ = t.observe(&Ok(()), t0, &cfg(), Duration::ZERO);
        assert_eq!(t.observe(&Ok(()), t0, &cfg(), Duration::ZERO).unwrap().to, HealthState::Healthy);
    }
}
