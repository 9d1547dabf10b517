//! Scope: which tasks berth may act on (rule 8 of DESIGN.md).
//!
//! A controller listening to a whole account's events must leave alone
//! every task it was not configured for, whatever its tags say.

use serde::{Deserialize, Serialize};

use crate::event::TaskDetail;

/// The clusters, services and task families berth manages; an empty list
/// places no limit on that dimension, except clusters, which must be named.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub clusters: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub families: Vec<String>,
}

fn last_segment(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

impl Scope {
    /// Whether an event's task is berth's to act on.
    pub fn admits(&self, task: &TaskDetail) -> bool {
        let cluster_ok = task
            .cluster_arn
            .as_deref()
            .is_some_and(|arn| self.clusters.iter().any(|c| c == arn || c == last_segment(arn)));
        let service_ok = self.services.is_empty()
            || task
                .group
                .as_deref()
                .and_then(|g| g.strip_prefix("service:"))
                .is_some_and(|s| self.services.iter().any(|x| x == s));
        let family_ok = self.families.is_empty()
            || task.task_definition_arn.as_deref().is_some_and(|arn| {
                let family = last_segment(arn).split(':').next().unwrap_or("");
                self.families.iter().any(|f| f == family)
            });
        cluster_ok && service_ok && family_ok
    }
}
