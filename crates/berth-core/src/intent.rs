//! Stop intent: should a stopped task's claim get a replacement, or rest?
//!
//! Rule 4 of DESIGN.md. A claim the user wants running (desired Running)
//! gets a replacement whatever stopped its task — a Spot interruption, a
//! task that failed to start, an essential container that exited, failed
//! health checks, a termination notice, infrastructure health, a
//! deployment — except a stop the user made themselves (`UserInitiated`),
//! which parks it. A claim the controller parked (scale-in) or the user
//! scaled to zero or deleted is never brought back by an event: desired
//! state wins over any stop code. The snapshot is taken either way; the
//! intent only decides whether a task follows.

use serde::{Deserialize, Serialize};

use crate::event::StopCode;

/// What the user (or the autoscaler) wants of a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DesiredState {
    Running,
    /// Kept with its snapshot, no task (scale-in, a stopped service).
    Parked,
    /// Going away; its snapshots follow the retention of deleted claims.
    Deleted,
}

/// The decision for a stopped task's claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopIntent {
    Replace,
    Park,
}

/// Why berth stopped a task itself. With the runtime's stop code it
/// decides whether the stop counts against the claim's crash loop: only a
/// task's own failure does, never a stop the platform or a person made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopCause {
    /// The claim is no longer desired running (scale-in, `berth down`).
    Parked,
    /// A point-in-time restore was asked for.
    Restore,
    /// The task runs an older revision than its service's.
    Deployment,
    /// The task failed its container health checks.
    FailedHealthChecks,
    /// Anything else (and orders written before causes were recorded).
    #[default]
    Other,
}

impl StopCause {
    /// Whether a stop for this cause is the task's own failure.
    pub fn is_crash(self) -> bool {
        self == Self::FailedHealthChecks
    }
}

/// The intent and its one-line reason, for the event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IntentVerdict {
    pub intent: StopIntent,
    pub reason: &'static str,
}

const fn verdict(intent: StopIntent, reason: &'static str) -> IntentVerdict {
    IntentVerdict { intent, reason }
}

/// Decides from the claim's desired state and the task's stop code.
pub fn stop_intent(desired: DesiredState, code: Option<&StopCode>) -> IntentVerdict {
    use StopIntent::{Park, Replace};
    match desired {
        DesiredState::Parked => return verdict(Park, "claim is parked → park"),
        DesiredState::Deleted => return verdict(Park, "claim is deleted → no replacement"),
        DesiredState::Running => {}
    }
    match code {
        Some(StopCode::SpotInterruption) => verdict(Replace, "spot interruption → replace"),
        Some(StopCode::TaskFailedToStart) => verdict(Replace, "task failed to start → replace (with backoff)"),
        Some(StopCode::EssentialContainerExited) => verdict(Replace, "essential container exited → replace"),
        Some(StopCode::TerminationNotice) => verdict(Replace, "termination notice → replace"),
        Some(StopCode::InfrastructureHealth) => verdict(Replace, "infrastructure health → replace"),
        Some(StopCode::ServiceSchedulerInitiated) => {
            verdict(Replace, "scheduler stop (health check or deployment) of a running claim → replace")
        }
        Some(StopCode::UserInitiated) => verdict(Park, "stopped by a user → park"),
        // Unknown codes keep the data available: the snapshot is taken
        // anyway, and a replacement is what a running claim wants.
        Some(StopCode::Other(_)) => verdict(Replace, "unknown stop code on a running claim → replace"),
        None => verdict(Replace, "no stop code on a running claim → replace"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_or_park() {
        let run = DesiredState::Running;
        for code in [
            StopCode::SpotInterruption,
            StopCode::TaskFailedToStart,
            StopCode::EssentialContainerExited,
            StopCode::TerminationNotice,
            StopCode::InfrastructureHealth,
            StopCode::ServiceSchedulerInitiated,
            StopCode::Other("New".into()),
        ] {
            assert_eq!(stop_intent(run, Some(&code)).intent, StopIntent::Replace, "{code:?}");
        }
        assert_eq!(stop_intent(run, None).intent, StopIntent::Replace);
        assert_eq!(stop_intent(run, Some(&StopCode::UserInitiated)).intent, StopIntent::Park);
        // Desired state wins: a parked or deleted claim never comes back.
        for desired in [DesiredState::Parked, DesiredState::Deleted] {
            assert_eq!(stop_intent(desired, Some(&StopCode::SpotInterruption)).intent, StopIntent::Park);
        }
        assert_eq!(stop_intent(run, Some(&StopCode::SpotInterruption)).reason, "spot interruption → replace");
    }
}
