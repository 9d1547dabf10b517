//! The target pool: every target the load balancer knows, its health state,
//! and its count of in-flight requests.
//!
//! The pool only keeps state and answers questions under one lock; the
//! tasks that check health and wait out draining live in `mod.rs`. A
//! request holds an [`InFlight`] guard from the moment its target is picked
//! until its answer has been sent, which is what draining waits for. Picking
//! and marking a target draining both happen under the pool's lock, so once
//! a target is draining no new request can pick it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::health::{HealthState, Probe, Tracker, Transition};
use super::{Target, TargetHealth};

/// One target as a `berth ps`-like view shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetState {
    pub id: String,
    pub addr: SocketAddr,
    pub state: HealthState,
    /// When the target entered `state`.
    pub since: DateTime<Utc>,
    /// Why it is in `state` ("2 consecutive health checks passed").
    pub reason: String,
    /// Requests sent to it and not yet answered in full.
    pub in_flight: usize,
}

/// One registered target.
#[derive(Debug)]
pub(crate) struct Backend {
    pub target: Target,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Set when the deregistration delay ran out: requests still running are cut.
    cut: watch::Sender<bool>,
    status: Mutex<Status>,
}

#[derive(Debug)]
struct Status {
    tracker: Tracker,
    draining: bool,
    since: DateTime<Utc>,
    reason: String,
}

impl Backend {
    fn new(target: Target, now: Instant) -> Self {
        Self {
            target,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            cut: watch::Sender::new(false),
            status: Mutex::new(Status {
                tracker: Tracker::new(now),
                draining: false,
                since: Utc::now(),
                reason: "registered, waiting for health checks".into(),
            }),
        }
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn state(&self) -> HealthState {
        let status = self.status();
        if status.draining {
            HealthState::Draining
        } else {
            status.tracker.state()
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no request is in flight, or `deadline`; returns whether it became idle.
    pub async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    /// Cuts the requests still in flight (the deregistration delay ran out).
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Resolves once [`Backend::cut`] was called; never otherwise.
    pub fn cut_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.cut.subscribe();
        async move {
            if rx.wait_for(|cut| *cut).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Marks one request in flight on a backend until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Backend>);

impl InFlight {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_one();
        }
    }
}

/// What a new target list changes: targets to start checking, targets to drain.
#[derive(Debug, Default)]
pub(crate) struct SyncPlan {
    pub added: Vec<Arc<Backend>>,
    pub draining: Vec<Arc<Backend>>,
}

/// Counts per state, for the 503 answer.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Counts {
    pub initial: usize,
    pub healthy: usize,
    pub unhealthy: usize,
    pub draining: usize,
}

#[derive(Debug)]
pub(crate) struct Pool {
    health: TargetHealth,
    grace: Duration,
    backends: Mutex<Vec<Arc<Backend>>>,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(health: TargetHealth, grace: Duration) -> Self {
        Self { health, grace, backends: Mutex::new(Vec::new()), next: AtomicUsize::new(0) }
    }

    fn backends(&self) -> MutexGuard<'_, Vec<Arc<Backend>>> {
        self.backends.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers targets new to `wanted` and marks those that left it draining.
    /// A target is the pair (id, address); a draining target that comes back
    /// is registered anew beside the draining one.
    pub fn sync(&self, wanted: &[Target], now: Instant) -> SyncPlan {
        let mut backends = self.backends();
        let mut plan = SyncPlan::default();
        for backend in backends.iter() {
            let mut status = backend.status();
            if !status.draining && !wanted.contains(&backend.target) {
                status.draining = true;
                status.since = Utc::now();
                status.reason = "left the target list: no new requests".into();
                plan.draining.push(backend.clone());
            }
        }
        for target in wanted {
            let known = backends.iter().any(|b| b.target == *target && !b.status().draining);
            if !known && !plan.added.iter().any(|b| b.target == *target) {
                let backend = Arc::new(Backend::new(target.clone(), now));
                backends.push(backend.clone());
                plan.added.push(backend);
            }
        }
        plan
    }

    /// Records one health check; returns false once the backend is draining
    /// (its checks stop).
    pub fn observe(&self, backend: &Backend, probe: &Probe, now: Instant) -> bool {
        let _backends = self.backends();
        let mut status = backend.status();
        if status.draining {
            return false;
        }
        if let Some(Transition { to, reason }) = status.tracker.observe(probe, now, &self.health, self.grace) {
            tracing::info!(target_id = %backend.target.id, addr = %backend.target.addr, state = %to, %reason, "load balancer target");
            status.since = Utc::now();
            status.reason = reason;
        }
        true
    }

    /// Picks the next healthy backend, round-robin, and marks a request in flight on it.
    pub fn pick(&self) -> Option<InFlight> {
        let backends = self.backends();
        let healthy: Vec<&Arc<Backend>> = backends.iter().filter(|b| b.state() == HealthState::Healthy).collect();
        if healthy.is_empty() {
            return None;
        }
        let backend = healthy[self.next.fetch_add(1, Ordering::Relaxed) % healthy.len()].clone();
        backend.in_flight.fetch_add(1, Ordering::SeqCst);
        Some(InFlight(backend))
    }

    /// Forgets a drained backend.
    pub fn remove(&self, backend: &Arc<Backend>) {
        self.backends().retain(|b| !Arc::ptr_eq(b, backend));
    }

    pub fn states(&self) -> Vec<TargetState> {
        self.backends()
            .iter()
            .map(|b| {
                let state = b.state();
                let status = b.status();
                TargetState {
                    id: b.target.id.clone(),
                    addr: b.target.addr,
                    state,
                    since: status.since,
                    reason: status.reason.clone(),
                    in_flight: b.in_flight(),
                }
            })
            .collect()
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for b in self.backends().iter() {
            match b.state() {
                HealthState::Initial => counts.initial += 1,
                HealthState::Healthy => counts.healthy += 1,
                HealthState::Unhealthy => counts.unhealthy += 1,
                HealthState::Draining => counts.draining += 1,
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, port: u16) -> Target {
        Target::new(id, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn healthy_pool(targets: &[Target]) -> Pool {
        let pool = Pool::new(TargetHealth { healthy_threshold: 1, ..TargetHealth::default() }, Duration::ZERO);
        let plan = pool.sync(targets, Instant::now());
        for b in &plan.added {
            assert!(pool.observe(b, &Ok(()), Instant::now()));
        }
        pool
    }

    #[test]
    fn round_robin_over_healthy_targets() {
        let pool = healthy_pool(&[target("a", 1), target("b", 2)]);
        let picks: Vec<String> = (0..4).map(|_| pool.pick().unwrap().backend().target.id.clone()).collect();
        assert_eq!(picks, ["a", "b", "a", "b"]);
    }

    #[test]
    fn a_draining_target_gets_no_new_requests_and_counts_in_flight() {
        let pool = healthy_pool(&[target("a", 1), target("b", 2)]);
        let held: Vec<InFlight> = (0..2).map(|_| pool.pick().unwrap()).collect();
        let plan = pool.sync(&[target("b", 2)], Instant::now());
        assert_eq!(plan.draining.len(), 1);
        assert!(plan.added.is_empty());
        let a = plan.draining[0].clone();
        assert_eq!(a.in_flight(), 1);
        assert!(!pool.observe(&a, &Ok(()), Instant::now()), "checks stop while draining");
        for _ in 0..3 {
            assert_eq!(pool.pick().unwrap().backend().target.id, "b");
        }
        drop(held);
        assert_eq!(a.in_flight(), 0);
        assert_eq!(pool.states()[0].state, HealthState::Draining);
        pool.remove(&a);
        assert_eq!(pool.states().len(), 1);
    }

    #[test]
    fn a_returning_target_is_registered_anew() {
        let pool = healthy_pool(&[target("a", 1)]);
        let _ = pool.sync(&[], Instant::now());
        let plan = pool.sync(&[target("a", 1)], Instant::now());
        assert_eq!(plan.added.len(), 1);
        let states: Vec<HealthState> = pool.states().iter().map(|s| s.state).collect();
        assert_eq!(states, [HealthState::Draining, HealthState::Initial]);
        assert!(pool.pick().is_none());
    }
}
