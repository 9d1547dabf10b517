//! Deployments: moving a service's claims onto a new task definition
//! revision one claim at a time, with a circuit breaker that rolls back.
//!
//! A *service record* is the ledger's durable view of a service: every task
//! definition revision registered for it (an ECS task definition family),
//! the *active* revision new tasks run, and the deployment in progress. A
//! *deployment* moves the claims of the service from one revision to
//! another. [`rollout`] is the whole rule, a pure function of the record,
//! the service's claims and `now`; the platform (or the Lambda) writes what
//! it returns and calls it again on the next tick.
//!
//! How a claim moves: the rollout writes the claim's `revision`; the
//! reconciler then sees a task running another revision and hands it off
//! (stop, stop snapshot, a new generation on the new revision from that
//! snapshot). The load balancer drains the stopping task. So a deployment
//! is a sequence of ordinary handoffs, each with its snapshot, and a crash
//! anywhere resumes from the ledger.
//!
//! Guarantees:
//! - At most one claim of the service is down because of the deployment:
//!   the next claim moves only when every running claim is healthy.
//! - Circuit breaker (as ECS's deployment circuit breaker): if the claim
//!   being moved crashes or fails its health checks on the new revision, or
//!   is not healthy on it within the deployment's timeout, the deployment
//!   rolls back: the active revision returns to the old one and every
//!   claim already moved goes back, one at a time. A rollback has no
//!   breaker of its own (the old revision was running before).
//! - Parked claims take the target revision when the rollout completes
//!   (they have no task to move; their next launch runs it).
//!
//! Caveat: a running claim that is unhealthy for reasons of its own holds
//! the rollout until it is healthy again; the rollout does not time out
//! while it waits for claims other than the one it moves.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::autoscale::ScalingState;
use crate::claim::ClaimName;
use crate::intent::DesiredState;
use crate::ledger::{ClaimRecord, EventRecord, Expect};
use crate::task::TaskDefinition;

/// How long the claim being moved may take to become healthy on the new
/// revision before the deployment rolls back (default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// A service as the ledger keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    /// Every registered revision, oldest first.
    pub revisions: Vec<TaskDefinition>,
    /// The revision new tasks run (during a deployment: its target; after
    /// a rollback: the old one again).
    pub active: u32,
    /// The definition last read from the configuration file: when the file
    /// says something else at the next start, that is a deployment.
    pub configured: Option<TaskDefinition>,
    pub deployment: Option<Deployment>,
    /// The desired count the service's claims were last scaled to, where a
    /// controller has no start to scale at (the Lambda): scaling runs once
    /// per count, so a claim a user parked since stays parked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaled_to: Option<u32>,
    /// The desired count auto scaling set last, where no process keeps it
    /// between decisions (the Lambda): it overrides the configured count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaled_count: Option<u32>,
    /// Auto scaling's last activities (its cooldowns), kept beside the count.
    #[serde(default, skip_serializing_if = "is_idle")]
    pub scaling: ScalingState,
    /// Optimistic concurrency token: set by the ledger on every write.
    #[serde(default)]
    pub version: u64,
}

fn is_idle(state: &ScalingState) -> bool {
    *state == ScalingState::default()
}

impl ServiceRecord {
    /// A service's first record: revision 1 is `definition`, from the file.
    pub fn new(name: &str, mut definition: TaskDefinition) -> Self {
        definition.revision = 1;
        Self::registered(name, definition)
    }

    /// A service's first record where the runtime numbers the revisions
    /// (ECS: CloudFormation registers the task definition and ECS gives it
    /// its revision): `definition` keeps its family and revision.
    pub fn registered(name: &str, definition: TaskDefinition) -> Self {
        Self {
            name: name.to_owned(),
            revisions: vec![definition.clone()],
            active: definition.revision,
            configured: Some(definition),
            deployment: None,
            scaled_to: None,
            autoscaled_count: None,
            scaling: ScalingState::default(),
            version: 0,
        }
    }

    /// A record read from the ledger with the condition to write it back
    /// on, or, when there is none, the service's first record (at
    /// `definition`'s own revision), to be written only if still absent.
    pub fn or_first(found: Option<Self>, name: &str, definition: &TaskDefinition) -> (Self, Expect) {
        match found {
            Some(r) => {
                let v = r.version;
                (r, Expect::Version(v))
            }
            None => (Self::registered(name, definition.clone()), Expect::Absent),
        }
    }

    /// The definition of `revision`, if registered.
    pub fn revision(&self, revision: u32) -> Option<&TaskDefinition> {
        self.revisions.iter().find(|d| d.revision == revision)
    }

    /// The active definition (the newest registered one if the record is inconsistent).
    pub fn active_definition(&self) -> Option<&TaskDefinition> {
        self.revision(self.active).or_else(|| self.revisions.last())
    }

    pub fn in_progress(&self) -> bool {
        self.deployment.as_ref().is_some_and(|d| !d.state.is_finished())
    }

    /// Registers `definition` as a new revision and starts a deployment to
    /// it; refused while one is in progress, and when it would change nothing.
    pub fn deploy(
        &mut self,
        mut definition: TaskDefinition,
        timeout: Duration,
        now: DateTime<Utc>,
    ) -> Result<u32, DeployError> {
        if let Some(d) = self.deployment.as_ref().filter(|d| !d.state.is_finished()) {
            return Err(DeployError::InProgress { service: self.name.clone(), from: d.from, to: d.to });
        }
        let from = self.active;
        if let Some(current) = self.active_definition() {
            if same_task(current, &definition) {
                return Err(DeployError::Unchanged { service: self.name.clone(), revision: from });
            }
        }
        let to = self.revisions.iter().map(|d| d.revision).max().unwrap_or(0) + 1;
        definition.revision = to;
        definition.family = self.name.clone();
        self.start(definition, timeout, now);
        Ok(to)
    }

    /// Follows a revision the runtime registered (a `cdk deploy` hands the
    /// Lambda a new task definition ARN): a revision not configured before
    /// starts a deployment to it, under its own number; the one configured
    /// already changes nothing, even after its deployment rolled back (the
    /// next `cdk deploy` is the next attempt, not this record again). A new
    /// revision during a deployment waits for it to finish (`InProgress`);
    /// the caller asks again later.
    pub fn follow(
        &mut self,
        definition: TaskDefinition,
        timeout: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<u32>, DeployError> {
        if self.configured.as_ref().map(|c| (c.family.as_str(), c.revision))
            == Some((definition.family.as_str(), definition.revision))
        {
            return Ok(None);
        }
        if let Some(d) = self.deployment.as_ref().filter(|d| !d.state.is_finished()) {
            return Err(DeployError::InProgress { service: self.name.clone(), from: d.from, to: d.to });
        }
        self.configured = Some(definition.clone());
        if self.active == definition.revision && self.active_definition().is_some_and(|a| a.family == definition.family)
        {
            return Ok(None);
        }
        let to = definition.revision;
        self.revisions.retain(|d| d.revision != to);
        self.start(definition, timeout, now);
        Ok(Some(to))
    }

    /// Registers `definition` (its revision set) and starts a deployment to it.
    fn start(&mut self, definition: TaskDefinition, timeout: Duration, now: DateTime<Utc>) {
        let (from, to) = (self.active, definition.revision);
        self.revisions.push(definition);
        // Claims may still run old revisions after a crash: keep a few.
        while self.revisions.len() > MAX_REVISIONS {
            self.revisions.remove(0);
        }
        self.active = to;
        self.deployment = Some(Deployment {
            from,
            to,
            state: RolloutState::InProgress,
            current: None,
            moved: Vec::new(),
            timeout,
            reason: None,
            started_at: now,
            finished_at: None,
        });
    }
}

/// Revisions kept in a service record; older ones are dropped.
pub const MAX_REVISIONS: usize = 20;

/// Whether two definitions run the same task (their revision numbers
/// aside). A definition read back from the ledger equals the one written:
/// durations round-trip exactly (`serde_secs`).
pub fn same_task(a: &TaskDefinition, b: &TaskDefinition) -> bool {
    let mut b = b.clone();
    b.revision = a.revision;
    b.family = a.family.clone();
    *a == b
}

/// A deployment that cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    #[error(
        "service {service} is already deploying revision {to} (from {from}); wait for it (`berth deploy --status`)"
    )]
    InProgress { service: String, from: u32, to: u32 },
    #[error("service {service} already runs this task definition (revision {revision}); nothing to deploy")]
    Unchanged { service: String, revision: u32 },
}

/// Where a deployment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    /// Moving claims to `to`.
    InProgress,
    /// The breaker tripped: moving claims back to `from`.
    RollingBack,
    /// Every claim runs `to`.
    Completed,
    /// Every claim runs `from` again.
    RolledBack,
}

impl RolloutState {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::RolledBack)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in-progress",
            Self::RollingBack => "rolling-back",
            Self::Completed => "completed",
            Self::RolledBack => "rolled-back",
        }
    }
}

/// The claim a deployment is moving now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStep {
    pub claim: ClaimName,
    pub since: DateTime<Utc>,
    /// The claim's crash-loop count when the step began: a higher one means
    /// the new revision failed.
    pub failures_before: u32,
}

/// One deployment of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub from: u32,
    pub to: u32,
    pub state: RolloutState,
    pub current: Option<RolloutStep>,
    /// Claims moved to the target so far (in the current direction).
    pub moved: Vec<ClaimName>,
    #[serde(with = "crate::serde_secs")]
    pub timeout: Duration,
    /// Why it rolled back.
    pub reason: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Deployment {
    /// The revision claims are being moved to.
    pub fn target(&self) -> u32 {
        match self.state {
            RolloutState::InProgress | RolloutState::Completed => self.to,
            RolloutState::RollingBack | RolloutState::RolledBack => self.from,
        }
    }
}

/// What to write after one look at a deployment: the service record (if
/// it changed) and claims (each conditional on the version it carries),
/// and what to log. Empty: wait.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RolloutPlan {
    pub service: Option<ServiceRecord>,
    pub claims: Vec<ClaimRecord>,
    pub events: Vec<EventRecord>,
}

impl RolloutPlan {
    pub fn is_empty(&self) -> bool {
        self.service.is_none() && self.claims.is_empty() && self.events.is_empty()
    }

    /// As a plan for the executor, over `read`, the service record it was
    /// decided from: the record first (a crash before the claims are
    /// written leaves a step the next look finds and writes again), then
    /// the claims, then the events.
    pub fn into_plan(self, read: &ServiceRecord) -> crate::plan::Plan {
        use crate::plan::{Plan, Why};
        use crate::reconcile::Action;
        let why = || Why::Rollout { service: read.name.clone() };
        let mut plan = Plan::default();
        if let Some(next) = self.service {
            let write = Action::WriteService { record: Box::new(next), expect: Expect::Version(read.version) };
            plan.push(None, write, why());
        }
        for claim in self.claims {
            let name = claim.name.clone();
            plan.push(Some(&name), Action::WriteClaim(Box::new(claim)), why());
        }
        for event in self.events {
            let claim = event.claim.clone();
            plan.push(claim.as_ref(), Action::Log(event), Why::Report);
        }
        plan
    }
}

/// Whether `claim` runs `revision` and is healthy there, since `since`.
fn settled(claim: &ClaimRecord, revision: u32, since: DateTime<Utc>) -> bool {
    claim.revision == revision
        && claim.handoff.is_none()
        && claim.task.is_some()
        && claim.healthy_since.is_some_and(|h| h >= since)
}

/// A claim up and healthy, whatever its revision.
fn healthy(claim: &ClaimRecord) -> bool {
    claim.handoff.is_none() && claim.task.is_some() && claim.healthy_since.is_some()
}

/// The next writes of `service`'s deployment, given its claims (any order)
/// at `now`. The writes are idempotent: applying a plan twice, or losing
/// one half of it to a crash, leads to the same next plan.
pub fn rollout(service: &ServiceRecord, claims: &[ClaimRecord], now: DateTime<Utc>) -> RolloutPlan {
    let mut plan = RolloutPlan::default();
    let Some(d) = service.deployment.clone().filter(|d| !d.state.is_finished()) else { return plan };
    let mine: Vec<&ClaimRecord> = claims.iter().filter(|c| c.service == service.name).collect();
    let running: Vec<&ClaimRecord> = mine.iter().copied().filter(|c| c.desired == DesiredState::Running).collect();
    let event = |claim: Option<&ClaimName>, kind: &str, message: String| {
        let mut e = EventRecord::new(now, claim, kind, message);
        e.data = serde_json::json!({ "service": service.name, "from": d.from, "to": d.to });
        e
    };

    if let Some(step) = &d.current {
        let claim = running.iter().find(|c| c.name == step.claim);
        match claim {
            // Gone or parked meanwhile: nothing left to move.
            None => {}
            Some(c) => {
                if d.state == RolloutState::InProgress {
                    let failed = if c.backoff.failures > step.failures_before {
                        Some(format!("claim {} failed on revision {} (crash or failed health checks)", c.name, d.to))
                    } else if now - step.since > chrono::Duration::from_std(d.timeout).unwrap_or(chrono::Duration::MAX)
                        && !settled(c, d.to, step.since)
                    {
                        Some(format!(
                            "claim {} was not healthy on revision {} within {}",
                            c.name,
                            d.to,
                            humantime_secs(d.timeout)
                        ))
                    } else {
                        None
                    };
                    if let Some(reason) = failed {
                        return roll_back(service, &d, c, reason, now, event);
                    }
                }
                if !settled(c, d.target(), step.since) {
                    if c.revision != d.target() {
                        // The claim write of this step was lost (a crash
                        // after the service write): make it again.
                        plan.claims.push(moved_to(c, d.target(), d.state == RolloutState::RollingBack, now));
                    }
                    return plan;
                }
            }
        }
        let mut next = service.clone();
        let nd = next.deployment.as_mut().expect("a deployment");
        nd.moved.push(step.claim.clone());
        nd.current = None;
        plan.events.push(event(
            Some(&step.claim),
            "deploy-step-done",
            format!("{} runs revision {} and is healthy", step.claim, d.target()),
        ));
        plan.service = Some(next);
        return plan;
    }

    // At most one claim down: the next moves only when all are healthy.
    if running.iter().any(|c| !healthy(c)) {
        return plan;
    }
    let target = d.target();
    let mut pending: Vec<&ClaimRecord> = running.iter().copied().filter(|c| c.revision != target).collect();
    pending.sort_by_key(|c| c.ordinal);
    if let Some(c) = pending.first() {
        let mut next = service.clone();
        let nd = next.deployment.as_mut().expect("a deployment");
        nd.current = Some(RolloutStep { claim: c.name.clone(), since: now, failures_before: c.backoff.failures });
        plan.service = Some(next);
        plan.claims.push(moved_to(c, target, false, now));
        plan.events.push(event(
            Some(&c.name),
            "deploy-step",
            format!("moving {} from revision {} to {target}", c.name, c.revision),
        ));
        return plan;
    }

    // Every running claim is there: parked ones follow, and it is finished.
    for c in mine.iter().filter(|c| c.desired == DesiredState::Parked && c.revision != target) {
        plan.claims.push(moved_to(c, target, false, now));
    }
    let mut next = service.clone();
    let nd = next.deployment.as_mut().expect("a deployment");
    nd.state = if d.state == RolloutState::InProgress { RolloutState::Completed } else { RolloutState::RolledBack };
    nd.finished_at = Some(now);
    let (kind, message) = match nd.state {
        RolloutState::Completed => {
            ("deploy-completed", format!("{}: every claim runs revision {}", service.name, d.to))
        }
        _ => (
            "deploy-rolled-back",
            format!(
                "{}: rolled back to revision {} ({})",
                service.name,
                d.from,
                d.reason.as_deref().unwrap_or("circuit breaker")
            ),
        ),
    };
    plan.events.push(event(None, kind, message));
    plan.service = Some(next);
    plan
}

/// The breaker tripped on `failing`: the service goes back to the old
/// revision, starting with the claim that failed.
fn roll_back(
    service: &ServiceRecord,
    d: &Deployment,
    failing: &ClaimRecord,
    reason: String,
    now: DateTime<Utc>,
    event: impl Fn(Option<&ClaimName>, &str, String) -> EventRecord,
) -> RolloutPlan {
    let mut next = service.clone();
    next.active = d.from;
    let nd = next.deployment.as_mut().expect("a deployment");
    nd.state = RolloutState::RollingBack;
    nd.reason = Some(reason.clone());
    nd.moved.clear();
    nd.current = Some(RolloutStep { claim: failing.name.clone(), since: now, failures_before: 0 });
    RolloutPlan {
        service: Some(next),
        claims: vec![moved_to(failing, d.from, true, now)],
        events: vec![event(
            Some(&failing.name),
            "deploy-failed",
            format!("{reason}: rolling back {} to revision {}", service.name, d.from),
        )],
    }
}

/// `claim` set to run `revision`; a claim rolled back off a failing
/// revision also forgets the crash loop that revision caused.
fn moved_to(claim: &ClaimRecord, revision: u32, reset_backoff: bool, now: DateTime<Utc>) -> ClaimRecord {
    let mut c = claim.clone();
    c.revision = revision;
    if reset_backoff {
        c.backoff = Default::default();
    }
    c.updated_at = now;
    c
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::CrashLoop;
    use crate::ledger::{Handoff, HandoffStep};
    use crate::task::TaskArn;
    use crate::StopIntent;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap()
    }

    fn def(command: &str) -> TaskDefinition {
        TaskDefinition {
            family: "files".into(),
            revision: 1,
            command: vec![command.into()],
            env: Default::default(),
            port: 5000,
            health_check: None,
            stop_timeout: Duration::from_secs(30),
            secrets: Default::default(),
            container: None,
        }
    }

    fn claim(ordinal: u32, revision: u32) -> ClaimRecord {
        let name = ClaimName::of_service("files", ordinal).unwrap();
        let mut c = ClaimRecord::new(name, "files", ordinal, revision, t0() - chrono::Duration::hours(1));
        c.task = Some(TaskArn(format!("task-{ordinal}")));
        c.healthy_since = Some(t0() - chrono::Duration::minutes(30));
        c.generation = crate::Generation(1);
        c
    }

    fn deploying() -> ServiceRecord {
        let mut s = ServiceRecord::new("files", def("v1"));
        assert_eq!(s.deploy(def("v2"), DEFAULT_TIMEOUT, t0()), Ok(2));
        s
    }

    fn ecs(family: &str, revision: u32) -> TaskDefinition {
        TaskDefinition { family: family.into(), revision, ..def("image") }
    }

    #[test]
    fn revisions_registered_by_the_runtime_keep_their_numbers_and_deploy_once() {
        let mut s = ServiceRecord::registered("files", ecs("BerthTaskDef", 7));
        assert_eq!((s.active, s.active_definition().map(|d| d.family.as_str())), (7, Some("BerthTaskDef")));
        assert!(!s.in_progress());
        assert_eq!(s.follow(ecs("BerthTaskDef", 7), DEFAULT_TIMEOUT, t0()), Ok(None), "the same revision");

        // cdk deploy registered revision 9: a deployment 7 → 9, under ECS's number.
        assert_eq!(s.follow(ecs("BerthTaskDef", 9), DEFAULT_TIMEOUT, t0()), Ok(Some(9)));
        let d = s.deployment.clone().unwrap();
        assert_eq!((d.from, d.to, s.active), (7, 9, 9));
        assert_eq!(s.revision(9).map(|r| r.family.as_str()), Some("BerthTaskDef"));
        // Another during it waits; the same one changes nothing.
        assert!(matches!(
            s.follow(ecs("BerthTaskDef", 10), DEFAULT_TIMEOUT, t0()),
            Err(DeployError::InProgress { .. })
        ));
        assert_eq!(s.follow(ecs("BerthTaskDef", 9), DEFAULT_TIMEOUT, t0()), Ok(None));

        // Rolled back to 7: revision 9 still configured is not tried again.
        let d = s.deployment.as_mut().unwrap();
        d.state = RolloutState::RolledBack;
        s.active = 7;
        assert_eq!(s.follow(ecs("BerthTaskDef", 9), DEFAULT_TIMEOUT, t0()), Ok(None), "no deployment loop");
        assert_eq!(s.active, 7);
        // The next cdk deploy is the next attempt.
        assert_eq!(s.follow(ecs("BerthTaskDef", 10), DEFAULT_TIMEOUT, t0()), Ok(Some(10)));
        assert_eq!(s.deployment.as_ref().map(|d| (d.from, d.to)), Some((7, 10)));
    }

    /// Applies a plan to the in-memory claims and record.
    fn apply(service: &mut ServiceRecord, claims: &mut [ClaimRecord], plan: &RolloutPlan) {
        if let Some(s) = &plan.service {
            *service = s.clone();
        }
        for w in &plan.claims {
            let c = claims.iter_mut().find(|c| c.name == w.name).unwrap();
            *c = w.clone();
        }
    }

    /// One look at the deployment, applied.
    fn step(service: &mut ServiceRecord, claims: &mut [ClaimRecord], now: DateTime<Utc>) -> RolloutPlan {
        let plan = rollout(service, claims, now);
        apply(service, claims, &plan);
        plan
    }

    /// The reconciler's part, done by hand: the claim's task is replaced
    /// and becomes healthy at `at`.
    fn replace(c: &mut ClaimRecord, at: DateTime<Utc>) {
        c.generation = crate::Generation(c.generation.0 + 1);
        c.task = Some(TaskArn(format!("{}-g{}", c.name, c.generation)));
        c.healthy_since = Some(at);
    }

    #[test]
    fn deploy_registers_a_revision_and_refuses_a_second_or_a_no_op() {
        let mut s = ServiceRecord::new("files", def("v1"));
        assert_eq!(
            s.deploy(def("v1"), DEFAULT_TIMEOUT, t0()),
            Err(DeployError::Unchanged { service: "files".into(), revision: 1 })
        );
        assert_eq!(s.deploy(def("v2"), DEFAULT_TIMEOUT, t0()), Ok(2));
        assert_eq!((s.active, s.revision(2).unwrap().command[0].as_str()), (2, "v2"));
        assert!(s.in_progress());
        let again = s.deploy(def("v3"), DEFAULT_TIMEOUT, t0()).unwrap_err();
        assert_eq!(again, DeployError::InProgress { service: "files".into(), from: 1, to: 2 });
        assert!(again.to_string().contains("wait"), "{again}");
    }

    #[test]
    fn moves_one_claim_at_a_time_in_ordinal_order_then_completes() {
        let mut s = deploying();
        let mut claims = vec![claim(1, 1), claim(0, 1), claim(2, 1)];
        let mut parked = claim(3, 1);
        parked.desired = DesiredState::Parked;
        parked.task = None;
        claims.push(parked);
        let mut now = t0();
        for expect in ["files-0", "files-1", "files-2"] {
            let plan = rollout(&s, &claims, now);
            assert_eq!(plan.claims.len(), 1, "{plan:?}");
            assert_eq!(plan.claims[0].name.as_str(), expect);
            assert_eq!(plan.claims[0].revision, 2);
            apply(&mut s, &mut claims, &plan);
            // Not healthy on the new revision yet: wait, move no one else.
            let c = claims.iter_mut().find(|c| c.name.as_str() == expect).unwrap();
            c.handoff = Some(Handoff::begin(c, HandoffStep::Launched, StopIntent::Replace, "deploy", now));
            c.healthy_since = None;
            now += chrono::Duration::seconds(5);
            assert!(rollout(&s, &claims, now).is_empty(), "waits while {expect} is down");
            let c = claims.iter_mut().find(|c| c.name.as_str() == expect).unwrap();
            c.handoff = None;
            replace(c, now);
            let plan = rollout(&s, &claims, now);
            assert_eq!(plan.events[0].kind, "deploy-step-done");
            apply(&mut s, &mut claims, &plan);
        }
        let plan = rollout(&s, &claims, now);
        assert_eq!(plan.claims.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["files-3"], "parked follows");
        assert_eq!(plan.events[0].kind, "deploy-completed");
        apply(&mut s, &mut claims, &plan);
        let d = s.deployment.as_ref().unwrap();
        assert_eq!((d.state, s.active), (RolloutState::Completed, 2));
        assert_eq!(d.moved.len(), 3);
        assert!(claims.iter().all(|c| c.revision == 2));
        assert!(rollout(&s, &claims, now).is_empty(), "a finished deployment does nothing");
    }

    #[test]
    fn waits_while_any_claim_is_down() {
        let s = deploying();
        let mut claims = vec![claim(0, 1), claim(1, 1)];
        claims[1].healthy_since = None; // crashed, being replaced for its own reasons
        assert!(rollout(&s, &claims, t0()).is_empty());
    }

    #[test]
    fn a_crash_on_the_new_revision_rolls_back_every_moved_claim() {
        let mut s = deploying();
        let mut claims = vec![claim(0, 1), claim(1, 1)];
        let mut now = t0();
        // files-0 moves fine.
        step(&mut s, &mut claims, now);
        replace(&mut claims[0], now);
        step(&mut s, &mut claims, now);
        // files-1 moves and crashes on revision 2.
        let plan = rollout(&s, &claims, now);
        assert_eq!(plan.claims[0].name.as_str(), "files-1");
        apply(&mut s, &mut claims, &plan);
        now += chrono::Duration::seconds(20);
        claims[1].healthy_since = None;
        claims[1].backoff = CrashLoop { failures: 1, not_before: Some(now + chrono::Duration::seconds(10)) };
        let plan = rollout(&s, &claims, now);
        assert_eq!(plan.events[0].kind, "deploy-failed", "{plan:?}");
        assert!(plan.events[0].message.contains("files-1 failed on revision 2"), "{}", plan.events[0].message);
        let back = &plan.claims[0];
        assert_eq!((back.name.as_str(), back.revision), ("files-1", 1));
        assert_eq!(back.backoff, CrashLoop::default(), "the bad revision's crash loop is forgotten");
        apply(&mut s, &mut claims, &plan);
        assert_eq!((s.active, s.deployment.as_ref().unwrap().state), (1, RolloutState::RollingBack));
        // files-1 comes back on revision 1; then files-0 is moved back.
        replace(&mut claims[1], now);
        step(&mut s, &mut claims, now);
        let plan = rollout(&s, &claims, now);
        assert_eq!((plan.claims[0].name.as_str(), plan.claims[0].revision), ("files-0", 1));
        apply(&mut s, &mut claims, &plan);
        // A rollback has no breaker: a slow claim is waited for.
        now += chrono::Duration::hours(1);
        assert!(rollout(&s, &claims, now).is_empty());
        replace(&mut claims[0], now);
        step(&mut s, &mut claims, now);
        let plan = rollout(&s, &claims, now);
        assert_eq!(plan.events[0].kind, "deploy-rolled-back");
        apply(&mut s, &mut claims, &plan);
        assert_eq!(s.deployment.as_ref().unwrap().state, RolloutState::RolledBack);
        assert!(claims.iter().all(|c| c.revision == 1));
    }

    #[test]
    fn a_claim_not_healthy_in_time_rolls_back() {
        let mut s = deploying();
        let mut claims = vec![claim(0, 1)];
        step(&mut s, &mut claims, t0());
        claims[0].healthy_since = None;
        claims[0].handoff = Some(Handoff::begin(&claims[0], HandoffStep::Launched, StopIntent::Replace, "x", t0()));
        assert!(rollout(&s, &claims, t0() + chrono::Duration::minutes(9)).is_empty());
        let plan = rollout(&s, &claims, t0() + chrono::Duration::minutes(11));
        assert_eq!(plan.events[0].kind, "deploy-failed");
        assert!(plan.events[0].message.contains("within 600s"), "{}", plan.events[0].message);
    }

    #[test]
    fn a_lost_claim_write_is_made_again() {
        let mut s = deploying();
        let claims = vec![claim(0, 1)];
        let plan = rollout(&s, &claims, t0());
        // The service write landed, the claim write did not.
        s = plan.service.unwrap();
        let plan = rollout(&s, &claims, t0() + chrono::Duration::seconds(1));
        assert_eq!(plan.claims.len(), 1);
        assert_eq!(plan.claims[0].revision, 2);
        assert!(plan.service.is_none());
    }

    #[test]
    fn same_task_ignores_numbers_only() {
        let mut a = def("x");
        let mut b = def("x");
        b.revision = 9;
        assert!(same_task(&a, &b));
        a.env.insert("K".into(), "V".into());
        assert!(!same_task(&a, &b));
    }
}
