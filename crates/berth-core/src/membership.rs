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
    let forks: BTreeSet<_> = claims.iter().filter(|c| c.fork_of.is_some()).map(|c| &c.name).collect();
    let members: BTreeSet<String> = tasks
        .iter()
        .filter(|t| t.service.as_deref() == Some(service) && t.last_status == TaskStatus::Running)
        .filter(|t| t.claim.as_ref().is_none_or(|c| !forks.contains(c)))
        .filter_map(|t| t.endpoint.clone())
        .collect();
    // Other services' targets are no members, so every claim can be asked.
    let staying = crate::targets::wanted(claims, tasks);
    Membership {
        leaving: members.difference(&staying).cloned().collect(),
        members: members.into_iter().collect(),
        expected: claims
            .iter()
            .filter(|c| c.service == service && c.fork_of.is_none() && c.desired == DesiredState::Running)
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::ClaimName;
    use crate::targets::tests::{claim, task};

    /// A running task of `claim` at `ip`, asked to run or to stop.
    fn member(arn: &str, claim: &str, ip: &str, desired: TaskStatus) -> TaskInfo {
        let mut t = task(arn, ip, TaskStatus::Running, desired);
        t.claim = Some(ClaimName::parse(claim).unwrap());
        t
    }

    #[test]
    fn parking_and_stopping_members_serve_reads_but_take_no_new_files() {
        let mut fork = claim("files-9", "t-fork", DesiredState::Running);
        fork.fork_of = Some(ClaimName::parse("files-0").unwrap());
        let mut starting = claim("files-3", "", DesiredState::Running);
        starting.task = None;
        let claims = [
            claim("files-0", "t0", DesiredState::Running),
            claim("files-1", "t1", DesiredState::Parked),
            claim("files-2", "t2-new", DesiredState::Running),
            starting,
            fork,
        ];
        let tasks = [
            member("t0", "files-0", "10.0.0.1", TaskStatus::Running),
            member("t1", "files-1", "10.0.0.2", TaskStatus::Running),
            member("t2-old", "files-2", "10.0.0.3", TaskStatus::Stopped),
            member("t2-new", "files-2", "10.0.0.4", TaskStatus::Running),
            member("t-fork", "files-9", "10.0.0.9", TaskStatus::Running),
        ];
        let m = membership("files", &claims, &tasks);
        let eps = |ips: &[u8]| ips.iter().map(|i| format!("10.0.0.{i}:5000")).collect::<Vec<_>>();
        assert_eq!(m.members, eps(&[1, 2, 3, 4]), "the fork is not a member");
        assert_eq!(m.leaving, eps(&[2, 3]), "the parking claim's task and the old generation's");
        assert_eq!(m.expected, 3, "files-0, files-2 and files-3 (being started); not the parked one or the fork");
        assert_eq!(membership("other", &claims, &tasks), Membership::default());
    }
}
