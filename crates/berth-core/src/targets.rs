//! Which task addresses a load balancer's target group should hold: the
//! rule behind ELBv2 registration on AWS, where claims run as standalone
//! tasks and nothing registers them but berth.
//!
//! A claim's current task is registered once it runs (the balancer's own
//! health check then decides when it gets traffic, as locally); every
//! other address is deregistered: tasks stopping or stopped, tasks of an
//! older generation, and addresses no task of berth's has.

use std::collections::BTreeSet;

use crate::event::TaskStatus;
use crate::intent::DesiredState;
use crate::ledger::ClaimRecord;
use crate::task::TaskInfo;

/// Addresses to add to and remove from a target group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetPlan {
    pub register: Vec<String>,
    pub deregister: Vec<String>,
}

impl TargetPlan {
    pub fn is_empty(&self) -> bool {
        self.register.is_empty() && self.deregister.is_empty()
    }
}

/// The addresses that should receive traffic now.
pub fn wanted(claims: &[ClaimRecord], tasks: &[TaskInfo]) -> BTreeSet<String> {
    claims
        .iter()
        .filter(|c| c.desired == DesiredState::Running)
        .filter_map(|c| tasks.iter().find(|t| Some(&t.arn) == c.task.as_ref()))
        .filter(|t| t.last_status == TaskStatus::Running && t.desired_status == TaskStatus::Running)
        .filter_map(|t| t.endpoint.clone())
        .collect()
}

/// What to change so that `registered` becomes what `wanted` says.
pub fn plan(claims: &[ClaimRecord], tasks: &[TaskInfo], registered: &BTreeSet<String>) -> TargetPlan {
    let wanted = wanted(claims, tasks);
    TargetPlan {
        register: wanted.difference(registered).cloned().collect(),
        deregister: registered.difference(&wanted).cloned().collect(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::claim::{ClaimName, Generation};
    use crate::task::{Health, TaskArn};
    use chrono::Utc;

    pub(crate) fn task(arn: &str, ip: &str, last: TaskStatus, desired: TaskStatus) -> TaskInfo {
        TaskInfo {
            arn: TaskArn(arn.into()),
            service: Some("files".into()),
            claim: None,
            generation: Some(Generation(1)),
            last_status: last,
            desired_status: desired,
            health: Health::Unknown,
            has_health_check: false,
            stop_code: None,
            stopped_reason: None,
            created_at: Utc::now(),
            started_at: None,
            stopped_at: None,
            version: 1,
            endpoint: Some(format!("{ip}:5000")),
            definition: None,
        }
    }

    pub(crate) fn claim(name: &str, task: &str, desired: DesiredState) -> ClaimRecord {
        let mut c = ClaimRecord::new(ClaimName::parse(name).unwrap(), "files", 0, 1, Utc::now());
        c.task = Some(TaskArn(task.into()));
        c.desired = desired;
        c
    }

    #[test]
    fn the_current_running_task_of_each_running_claim_and_nothing_else() {
        let claims = [
            claim("files-0", "t-new", DesiredState::Running),
            claim("files-1", "t-parked", DesiredState::Parked),
            claim("files-2", "t-starting", DesiredState::Running),
        ];
        let tasks = [
            task("t-old", "10.0.0.1", TaskStatus::Running, TaskStatus::Stopped),
            task("t-new", "10.0.0.2", TaskStatus::Running, TaskStatus::Running),
            task("t-parked", "10.0.0.3", TaskStatus::Running, TaskStatus::Running),
            task("t-starting", "10.0.0.4", TaskStatus::Pending, TaskStatus::Running),
        ];
        let registered: BTreeSet<String> = ["10.0.0.1:5000", "10.0.0.3:5000", "10.0.0.9:5000"].map(String::from).into();
        let p = plan(&claims, &tasks, &registered);
        assert_eq!(p.register, vec!["10.0.0.2:5000".to_string()]);
        assert_eq!(p.deregister, ["10.0.0.1:5000", "10.0.0.3:5000", "10.0.0.9:5000"].map(String::from).to_vec());
        let after: BTreeSet<String> = ["10.0.0.2:5000".to_string()].into();
        assert!(plan(&claims, &tasks, &after).is_empty());
    }
}
