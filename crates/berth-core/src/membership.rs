//! A service's file namespace as its members read it from the platform
//! (the peer list `berth serve` fetches): which tasks serve reads, which of
//! them take no new files, and how many members the service should have.
//!
//! Every running task serves reads of the files on its volume, even while it
//! stops. New files go only where traffic goes ([`crate::targets::wanted`]):
//! a file placed on a task whose claim is being parked would go offline with
//! its volume moments after the upload was acknowledged, and an older
//! generation's task is on its way out.

use std::collections::BTreeSet;

use crate::event::TaskStatus;
use crate::intent::DesiredState;
use crate::ledger::ClaimRecord;
use crate::task::TaskInfo;

/// The peer list of one service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Endpoints of the service's running tasks, sorted.
    pub members: Vec<String>,
    /// The members that take no new files, sorted: their claim is being
    /// parked or replaced, or they are asked to stop.
    pub leaving: Vec<String>,
    /// How many members the service should have: a claim that wants to run
    /// but has no running task is being started or replaced, and its files
    /// are not gone.
    pub expected: usize,
}

/// The peer list of `service`. A fork is a copy on the side: it neither
/// joins nor serves the service's namespace.
pub fn membership(service: &str, claims: &[ClaimRecord], tasks: &[TaskInfo]) -> Membership {
    let own: Vec<ClaimRecord> =
        claims.iter().filter(|c| c.service == service && c.fork_of.is_none()).cloned().collect();
    let forks: BTreeSet<_> = claims.iter().filter(|c| c.fork_of.is_some()).map(|c| &c.name).collect();
    let members: BTreeSet<String> = tasks
        .iter()
        .filter(|t| t.service.as_deref() == Some(service) && t.last_status == TaskStatus::Running)
        .filter(|t| t.claim.as_ref().is_none_or(|c| !forks.contains(c)))
        .filter_map(|t| t.endpoint.clone())
        .collect();
    let staying = crate::targets::wanted(&own, tasks);
    Membership {
        leaving: members.difference(&staying).cloned().collect(),
        members: members.into_iter().collect(),
        expected: own.iter().filter(|c| c.desired == DesiredState::Running).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::{ClaimName, Generation};
    use crate::task::{Health, TaskArn};
    use chrono::Utc;

    fn task(arn: &str, claim: &str, port: u16, desired: TaskStatus) -> TaskInfo {
        TaskInfo {
            arn: TaskArn(arn.into()),
            service: Some("files".into()),
            claim: Some(ClaimName::parse(claim).unwrap()),
            generation: Some(Generation(1)),
            last_status: TaskStatus::Running,
            desired_status: desired,
            health: Health::Healthy,
            has_health_check: true,
            stop_code: None,
            stopped_reason: None,
            created_at: Utc::now(),
            started_at: None,
            stopped_at: None,
            version: 1,
            endpoint: Some(format!("127.0.0.1:{port}")),
            pid: None,
            definition: None,
        }
    }

    fn claim(name: &str, task: Option<&str>, desired: DesiredState) -> ClaimRecord {
        let mut c = ClaimRecord::new(ClaimName::parse(name).unwrap(), "files", 0, 1, Utc::now());
        c.task = task.map(|t| TaskArn(t.into()));
        c.desired = desired;
        c
    }

    #[test]
    fn parking_and_stopping_members_serve_reads_but_take_no_new_files() {
        let mut fork = claim("files-9", Some("t-fork"), DesiredState::Running);
        fork.fork_of = Some(ClaimName::parse("files-0").unwrap());
        let claims = [
            claim("files-0", Some("t0"), DesiredState::Running),
            claim("files-1", Some("t1"), DesiredState::Parked),
            claim("files-2", Some("t2-new"), DesiredState::Running),
            claim("files-3", None, DesiredState::Running),
            fork,
        ];
        let tasks = [
            task("t0", "files-0", 5000, TaskStatus::Running),
            task("t1", "files-1", 5001, TaskStatus::Running),
            task("t2-old", "files-2", 5002, TaskStatus::Stopped),
            task("t2-new", "files-2", 5003, TaskStatus::Running),
            task("t-fork", "files-9", 5009, TaskStatus::Running),
        ];
        let m = membership("files", &claims, &tasks);
        let eps = |ports: &[u16]| ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>();
        assert_eq!(m.members, eps(&[5000, 5001, 5002, 5003]), "the fork is not a member");
        assert_eq!(m.leaving, eps(&[5001, 5002]), "the parking claim's task and the old generation's");
        assert_eq!(m.expected, 3, "files-0, files-2 and files-3 (being started); not the parked one or the fork");
        assert_eq!(membership("other", &claims, &tasks), Membership::default());
    }
}
