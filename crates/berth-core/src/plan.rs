//! Service plans: what a service-level rule decides (scaling, a
//! deployment's step, auto scaling, the sweep), as steps for the one
//! executor that also carries out the reconciler's claim decisions.
//!
//! Each rule stays a pure decider of its own module and turns its verdict
//! into a [`Plan`] here; the controller carries a plan out step by step in
//! order ([`crate::controller::Controller::carry_out`]). Each step carries
//! its typed reason, [`Why`]: the event a step logs once it is done is made
//! from it, so the event log says why from the same value that decided.
//!
//! A plan's compare-and-swaps keep the rules of the deciders they came from:
//! a lost service-record write ends the plan (someone else moved the
//! service: the next look plans again), a lost claim write skips that claim
//! (its reconciler moved it).

use std::fmt;

use chrono::{DateTime, Utc};

use crate::autoscale::TaskUsage;
use crate::claim::ClaimName;
use crate::ledger::EventRecord;
use crate::reconcile::Action;
use crate::sweep::VolumeVerdict;

/// Steps to carry out in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Adds a step about `claim` (or about no one claim).
    pub fn push(&mut self, claim: Option<&ClaimName>, action: Action, why: Why) {
        self.steps.push(Step { claim: claim.cloned(), action, why });
    }
}

/// One step of a plan: an action of the executor, the claim it is about
/// (if any) and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub claim: Option<ClaimName>,
    pub action: Action,
    pub why: Why,
}

/// Why a plan takes a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Why {
    /// A service's claims follow its desired count.
    Scale { service: String, wants: u32, change: ScaleChange },
    /// A deployment moves on (its own events are steps of their own).
    Rollout { service: String },
    /// Target tracking changed a service's count.
    Autoscale { service: String, from: u32, to: u32, reason: String, readings: Vec<TaskUsage> },
    /// The sweep deletes an unreferenced volume past its grace period.
    SweepVolume(VolumeVerdict),
    /// The sweep deletes the snapshots of deleted claims past the grace period.
    SweepSnapshots,
    /// An event a rule logs as it made it.
    Report,
}

/// What scaling does to one claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleChange {
    Created,
    Resumed,
    Parked,
    Deleted,
}

impl ScaleChange {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Resumed => "resumed",
            Self::Parked => "parked",
            Self::Deleted => "deleted",
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scale { service, wants, change } => {
                write!(f, "claim {} (service {service} wants {wants})", change.as_str())
            }
            Self::Rollout { service } => write!(f, "{service}: the deployment moves on"),
            Self::Autoscale { service, reason, .. } => write!(f, "{service}: {reason}"),
            Self::SweepVolume(verdict) => write!(f, "{}", verdict.reason()),
            Self::SweepSnapshots => write!(f, "snapshots of deleted claims past the grace period"),
            Self::Report => write!(f, "reported"),
        }
    }
}

impl Why {
    /// The event a step logs once it is carried out, made from its reason;
    /// `None` for steps that log nothing of their own.
    pub fn event(&self, now: DateTime<Utc>, claim: Option<&ClaimName>, action: &Action) -> Option<EventRecord> {
        match self {
            Self::Scale { .. } => Some(EventRecord::new(now, claim, "claim-scaled", self.to_string())),
            Self::Autoscale { service, from, to, readings, .. } => {
                let mut event = EventRecord::new(now, None, "autoscale", self.to_string());
                event.data = serde_json::json!({ "service": service, "from": from, "to": to, "readings": readings });
                Some(event)
            }
            Self::SweepVolume(verdict) => match action {
                Action::DeleteVolume(v) => Some(EventRecord::new(
                    now,
                    None,
                    "sweep",
                    format!("deleted orphaned volume {v}: {}", verdict.reason()),
                )),
                _ => None,
            },
            Self::Rollout { .. } | Self::SweepSnapshots | Self::Report => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::VolumeId;

    #[test]
    fn a_steps_event_is_made_from_its_reason() {
        let now = Utc::now();
        let claim = ClaimName::parse("files-0").unwrap();
        let why = Why::Scale { service: "files".into(), wants: 2, change: ScaleChange::Parked };
        let write = Action::Log(EventRecord::new(now, None, "x", "y"));
        let event = why.event(now, Some(&claim), &write).expect("scaling logs");
        assert_eq!(
            (event.kind.as_str(), event.message.as_str()),
            ("claim-scaled", "claim parked (service files wants 2)")
        );
        assert_eq!(event.claim.as_ref(), Some(&claim));

        let delete = Action::DeleteVolume(VolumeId("vol-1".into()));
        let event = Why::SweepVolume(VolumeVerdict::ClaimDeleted).event(now, None, &delete).expect("the sweep logs");
        assert_eq!(event.message, "deleted orphaned volume vol-1: its claim is deleted");
        assert_eq!(Why::Rollout { service: "files".into() }.event(now, None, &delete), None);
    }
}
