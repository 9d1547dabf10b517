//! Services: a named set of claims running one task definition, and how a
//! desired count becomes claims.
//!
//! Claims are numbered like a StatefulSet's pods: `<service>-0`,
//! `<service>-1`, …; scaling out wants the lowest ordinals running (a parked
//! claim is resumed with its data before a new one is made), scaling in
//! parks the highest first. Parking keeps the claim and its snapshots, so
//! scaling back out brings the same data back; a service with
//! [`WhenScaled::Delete`] deletes them instead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::claim::{ClaimName, ClaimNameError};
use crate::intent::DesiredState;
use crate::ledger::ClaimRecord;
use crate::retention::KeepPolicy;
use crate::task::TaskDefinition;

/// What the controller needs to know of one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub desired_count: u32,
    /// The revision new tasks run (the active one).
    pub definition: TaskDefinition,
    /// Every registered revision (the active one may be among them), which
    /// claims may still run during a deployment or after a rollback (see
    /// [`crate::deploy`]).
    #[serde(default)]
    pub revisions: Vec<TaskDefinition>,
    /// Retention of each claim's snapshots (the last-known-good and head
    /// snapshots are always kept).
    pub retention: KeepPolicy,
    /// How long a controller holds a handoff step before another may take it over.
    #[serde(with = "crate::serde_secs")]
    pub lease: Duration,
    /// Whether a replacement on the same host may adopt the stopped
    /// generation's volume when it is unchanged since its snapshot (else
    /// every replacement restores).
    #[serde(default = "yes")]
    pub adopt: bool,
    /// Healthy this long, a claim's crash-loop count resets (default 10 min).
    #[serde(with = "crate::serde_secs")]
    pub healthy_reset: Duration,
    /// What scale-in does to a claim's data (StatefulSet's `whenScaled`).
    #[serde(default)]
    pub when_scaled: WhenScaled,
}

/// What happens to the claims a scale-in takes away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenScaled {
    /// Parked with their stop snapshot and volume: scaling out again brings
    /// the same data back.
    #[default]
    Retain,
    /// Deleted after their stop snapshot: the volume and snapshots go with
    /// the sweep once its grace period has passed, and scaling out again
    /// starts the claim empty.
    Delete,
}

impl ServiceSpec {
    /// The definition a claim at `revision` runs: that revision if it is
    /// known, else the active one (a claim's revision that was dropped from
    /// the record, or never registered, is moved onto the active revision
    /// rather than left without a definition).
    pub fn definition_for(&self, revision: u32) -> &TaskDefinition {
        if self.definition.revision == revision {
            return &self.definition;
        }
        self.revisions.iter().find(|d| d.revision == revision).unwrap_or(&self.definition)
    }
}

fn yes() -> bool {
    true
}

/// A change to make to the claims of a service so they match its desired count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimChange {
    /// A claim that does not exist yet.
    Create(ClaimRecord),
    /// An existing claim with a new desired state (its version is the one read).
    Update(ClaimRecord),
}

/// [`scale`]'s changes as a plan: each claim created, or written with its
/// new desired state (conditional on the version read), and why.
pub fn scale_plan(
    service: &ServiceSpec,
    claims: &[ClaimRecord],
    now: DateTime<Utc>,
) -> Result<crate::plan::Plan, ClaimNameError> {
    use crate::plan::{Plan, ScaleChange, Why};
    use crate::reconcile::Action;
    let mut plan = Plan::default();
    for change in scale(service, claims, now)? {
        let (name, action, change) = match change {
            ClaimChange::Create(c) => (c.name.clone(), Action::CreateClaim(Box::new(c)), ScaleChange::Created),
            ClaimChange::Update(c) => {
                let change = match c.desired {
                    DesiredState::Running => ScaleChange::Resumed,
                    DesiredState::Parked => ScaleChange::Parked,
                    DesiredState::Deleted => ScaleChange::Deleted,
                };
                (c.name.clone(), Action::WriteClaim(Box::new(c)), change)
            }
        };
        let why = Why::Scale { service: service.name.clone(), wants: service.desired_count, change };
        plan.push(Some(&name), action, why);
    }
    Ok(plan)
}

/// The claim changes that make `claims` (the service's, any order) match
/// the desired count: ordinals below it Running, the rest Parked. Deleted
/// claims are left alone.
pub fn scale(
    service: &ServiceSpec,
    claims: &[ClaimRecord],
    now: DateTime<Utc>,
) -> Result<Vec<ClaimChange>, ClaimNameError> {
    let mut changes = Vec::new();
    for ordinal in 0..service.desired_count {
        match claims.iter().find(|c| c.ordinal == ordinal && c.service == service.name) {
            None => {
                let name = ClaimName::of_service(&service.name, ordinal)?;
                changes.push(ClaimChange::Create(ClaimRecord::new(
                    name,
                    &service.name,
                    ordinal,
                    service.definition.revision,
                    now,
                )));
            }
            Some(c) if c.desired == DesiredState::Parked => {
                let mut c = c.clone();
                c.desired = DesiredState::Running;
                // A resumed claim starts afresh: its old crash loop is history.
                c.backoff = Default::default();
                c.updated_at = now;
                changes.push(ClaimChange::Update(c));
            }
            Some(c) if c.desired == DesiredState::Deleted => {
                let mut c = c.clone();
                c.desired = DesiredState::Running;
                c.backoff = Default::default();
                c.updated_at = now;
                if c.task.is_none() && c.handoff.is_none() {
                    // Deleted and done: it comes back empty (its generation
                    // number goes on, so fencing stays monotonic). A claim
                    // still handing off keeps its data: the scale-in was
                    // undone before it finished.
                    c.head_snapshot = None;
                    c.last_good_snapshot = None;
                    c.volume = None;
                    c.restore_to = None;
                    c.revision = service.definition.revision;
                }
                changes.push(ClaimChange::Update(c));
            }
            Some(_) => {}
        }
    }
    for c in
        claims.iter().filter(|c| c.service == service.name && c.ordinal >= service.desired_count && c.fork_of.is_none())
    {
        if c.desired == DesiredState::Running {
            let mut c = c.clone();
            c.desired = match service.when_scaled {
                WhenScaled::Retain => DesiredState::Parked,
                WhenScaled::Delete => DesiredState::Deleted,
            };
            c.updated_at = now;
            changes.push(ClaimChange::Update(c));
        }
    }
    Ok(changes)
}
