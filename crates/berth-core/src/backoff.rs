//! Crash-loop backoff per claim, and the error policy of the controller.
//!
//! A claim whose tasks keep dying must not be relaunched in a tight loop
//! (each launch costs a restore and, on AWS, money). The first crash is
//! replaced at once; from the second consecutive quick crash on, the delay
//! is 10 s doubled each time, capped at 5 minutes; a generation that stayed healthy for 10 minutes resets the
//! count. The same shape serves failed port calls: retryable failures wait
//! and retry, permanent ones stop and wait for a person.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::PortError;

pub const FIRST_DELAY: Duration = Duration::from_secs(10);
pub const MAX_DELAY: Duration = Duration::from_secs(5 * 60);
/// Healthy this long, a generation counts as good: the count resets.
pub const HEALTHY_RESET: Duration = crate::defaults::HEALTHY_RESET;

/// A claim's crash-loop state, persisted with the claim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashLoop {
    /// Consecutive generations that stopped before [`HEALTHY_RESET`].
    pub failures: u32,
    /// When the next launch may start.
    pub not_before: Option<DateTime<Utc>>,
}

/// The delay before relaunch number `failures` (1-based).
pub fn delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doubled = FIRST_DELAY.saturating_mul(1u32.checked_shl(failures - 1).unwrap_or(u32::MAX));
    doubled.min(MAX_DELAY)
}

impl CrashLoop {
    /// Records that a generation stopped at `stopped` after being healthy
    /// since `healthy_since` (None: never healthy), and sets the next launch time.
    #[must_use]
    pub fn after_stop(self, healthy_since: Option<DateTime<Utc>>, stopped: DateTime<Utc>) -> Self {
        self.after_stop_with(healthy_since, stopped, HEALTHY_RESET)
    }

    /// [`Self::after_stop`] with a service's own healthy-reset time.
    #[must_use]
    pub fn after_stop_with(
        self,
        healthy_since: Option<DateTime<Utc>>,
        stopped: DateTime<Utc>,
        reset: Duration,
    ) -> Self {
        let stayed_healthy = healthy_since.is_some_and(|h| (stopped - h).to_std().is_ok_and(|ran| ran >= reset));
        let failures = if stayed_healthy { 0 } else { self.failures.saturating_add(1) };
        // The first crash is replaced at once (as Kubernetes restarts a
        // container): one crash is an accident, the second starts a loop.
        let wait = delay(failures.saturating_sub(1));
        let wait_for = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        Self { failures, not_before: (!wait.is_zero()).then(|| stopped + wait_for) }
    }

    /// Whether a launch may start at `now`.
    pub fn may_launch(&self, now: DateTime<Utc>) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }
}

/// What to do after a port call failed on the `attempt`-th try (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Try the same step again after this long.
    RetryAfter(Duration),
    /// Stop working on the claim until a person acts (logged, alerted).
    GiveUp,
}

/// The controller's one error policy: retryable failures back off like a
/// crash loop, permanent ones give up at once.
pub fn on_error(err: &PortError, attempt: u32) -> OnError {
    if err.retryable {
        OnError::RetryAfter(delay(attempt))
    } else {
        OnError::GiveUp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn delays_double_to_five_minutes() {
        let secs: Vec<u64> = (0..8).map(|n| delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn quick_deaths_back_off_and_a_healthy_run_resets() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let s = CrashLoop::default().after_stop(None, t0);
        assert_eq!(s.failures, 1);
        assert!(s.may_launch(t0), "the first crash is replaced at once");
        let s = s.after_stop(Some(t0), t0 + chrono::Duration::seconds(30));
        assert_eq!(s.failures, 2);
        assert_eq!(s.not_before, Some(t0 + chrono::Duration::seconds(40)));
        assert!(!s.may_launch(t0 + chrono::Duration::seconds(39)));
        let s = s.after_stop(None, t0 + chrono::Duration::seconds(60));
        assert_eq!(s.not_before, Some(t0 + chrono::Duration::seconds(80)));
        // Healthy for 10 minutes: the next stop is not a crash loop.
        let s = s.after_stop(Some(t0), t0 + chrono::Duration::minutes(11));
        assert_eq!(s, CrashLoop { failures: 0, not_before: None });
        assert!(s.may_launch(t0));
    }

    #[test]
    fn error_policy() {
        assert_eq!(on_error(&PortError::retryable("throttled"), 3), OnError::RetryAfter(Duration::from_secs(40)));
        assert_eq!(on_error(&PortError::permanent("access denied"), 1), OnError::GiveUp);
    }
}
