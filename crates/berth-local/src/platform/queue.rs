//! The work queue: one worker per claim at a time, woken by events, timers
//! and resyncs.
//!
//! Claims are reconciled concurrently (a mass interruption of a hundred
//! claims must not be handled one by one) but never one claim twice at
//! once: a wake-up for a claim already being reconciled marks it dirty, and
//! its worker runs once more when it finishes. Requeues and retries become
//! timers that wake the claim later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::backoff::{on_error, OnError};
use berth_core::ledger::EventRecord;
use berth_core::ClaimName;

use super::LocalController;
use crate::host::HostRuntime;

/// The most often a failing claim is retried.
const MAX_RETRY: Duration = Duration::from_secs(60);

pub struct Queue<R: HostRuntime> {
    controller: Arc<LocalController<R>>,
    /// Claims with a worker; `true` when woken again meanwhile.
    busy: Mutex<HashMap<ClaimName, bool>>,
    /// Consecutive failed passes per claim, for the retry delay.
    failures: Mutex<HashMap<ClaimName, u32>>,
    /// The one pending timer per claim: a later wake-up is dropped when an
    /// earlier one is pending, so timers never pile up.
    timers: Mutex<HashMap<ClaimName, tokio::time::Instant>>,
}

impl<R: HostRuntime> Queue<R> {
    pub fn new(controller: Arc<LocalController<R>>) -> Arc<Self> {
        Arc::new(Self { controller, busy: Mutex::default(), failures: Mutex::default(), timers: Mutex::default() })
    }

    /// Wakes a claim now.
    pub fn wake(self: &Arc<Self>, claim: ClaimName) {
        {
            let mut busy = self.busy.lock().expect("queue lock");
            if let Some(dirty) = busy.get_mut(&claim) {
                *dirty = true;
                return;
            }
            busy.insert(claim.clone(), false);
        }
        let queue = Arc::clone(self);
        tokio::spawn(async move { queue.work(claim).await });
    }

    /// Wakes a claim after `delay`.
    pub fn wake_after(self: &Arc<Self>, claim: ClaimName, delay: Duration) {
        let at = tokio::time::Instant::now() + delay;
        {
            let mut timers = self.timers.lock().expect("queue lock");
            if timers.get(&claim).is_some_and(|pending| *pending <= at) {
                return;
            }
            timers.insert(claim.clone(), at);
        }
        let queue = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let mine = {
                let mut timers = queue.timers.lock().expect("queue lock");
                let mine = timers.get(&claim) == Some(&at);
                if mine {
                    timers.remove(&claim);
                }
                mine
            };
            // A timer replaced by an earlier one has already woken the claim.
            if mine {
                queue.wake(claim);
            }
        });
    }

    /// Whether any claim is being reconciled.
    pub fn is_idle(&self) -> bool {
        self.busy.lock().expect("queue lock").is_empty()
    }

    async fn work(self: Arc<Self>, claim: ClaimName) {
        loop {
            match self.controller.reconcile_claim(&claim).await {
                Ok(requeue) => {
                    self.failures.lock().expect("queue lock").remove(&claim);
                    if let Some(d) = requeue {
                        self.wake_after(claim.clone(), d);
                    }
                }
                Err(e) => self.failed(&claim, e).await,
            }
            let mut busy = self.busy.lock().expect("queue lock");
            match busy.get_mut(&claim) {
                Some(dirty) if *dirty => *dirty = false,
                _ => {
                    busy.remove(&claim);
                    return;
                }
            }
        }
    }

    async fn failed(self: &Arc<Self>, claim: &ClaimName, e: berth_core::controller::ControllerError) {
        let attempt = {
            let mut failures = self.failures.lock().expect("queue lock");
            let n = failures.entry(claim.clone()).or_default();
            *n += 1;
            *n
        };
        let port_error = berth_core::PortError { retryable: e.is_retryable(), message: e.to_string() };
        match on_error(&port_error, attempt) {
            OnError::RetryAfter(d) => {
                let d = d.clamp(Duration::from_secs(1), MAX_RETRY);
                tracing::warn!(claim = %claim, error = %e, retry_in = ?d, "reconcile failed; retrying");
                if attempt == 1 || attempt.is_power_of_two() {
                    let message = format!("{e} (attempt {attempt}; retrying in {}s)", d.as_secs());
                    self.controller.log(EventRecord::new(self.controller.now(), Some(claim), "error", message)).await;
                }
                self.wake_after(claim.clone(), d);
            }
            OnError::GiveUp => {
                tracing::error!(claim = %claim, error = %e, "reconcile failed; not retrying until the next resync");
                let message = format!("{e} (not retried; the next resync tries again)");
                self.controller.log(EventRecord::new(self.controller.now(), Some(claim), "error", message)).await;
            }
        }
    }
}
