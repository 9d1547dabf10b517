//! The tags berth puts on EBS volumes and snapshots. Tags scope every
//! EC2 query to one stack (`berth:cluster`) and name a resource's claim and
//! generation, which is how a snapshot for (claim, generation) is found
//! before another is made (CreateSnapshot has no client token).

use std::collections::BTreeMap;

use berth_core::{ClaimName, Generation, SnapshotRequest};

pub const CLUSTER: &str = "berth:cluster";
pub const CLAIM: &str = "berth:claim";
pub const GENERATION: &str = "berth:generation";
pub const KIND: &str = "berth:kind";
pub const PIN: &str = "berth:pin";
/// `application` or `crash`, on scheduled snapshots.
pub const CONSISTENCY: &str = "berth:consistency";
/// A retention lock berth honours (`governance`/`compliance`) and its end.
pub const LOCK: &str = "berth:lock";
pub const LOCK_UNTIL: &str = "berth:lock-until";
/// On a replica's copy: the snapshot it was copied from.
pub const SOURCE: &str = "berth:source-snapshot";

/// A volume's tags (RunTask's `tagSpecifications`).
pub fn volume(cluster: &str, claim: &ClaimName, generation: Generation) -> Vec<(&'static str, String)> {
    vec![(CLUSTER, cluster.to_owned()), (CLAIM, claim.to_string()), (GENERATION, generation.0.to_string())]
}

/// A snapshot's tags.
pub fn snapshot(cluster: &str, request: &SnapshotRequest) -> Vec<(&'static str, String)> {
    let mut tags = vec![
        (CLUSTER, cluster.to_owned()),
        (CLAIM, request.claim.to_string()),
        (KIND, request.kind.as_str().to_owned()),
    ];
    if let Some(g) = request.generation {
        tags.push((GENERATION, g.0.to_string()));
    }
    if request.pinned {
        tags.push((PIN, "true".into()));
    }
    if let Some(c) = request.consistency {
        tags.push((CONSISTENCY, c.as_str().to_owned()));
    }
    if let Some(l) = &request.lock {
        tags.push((LOCK, l.mode.as_str().to_owned()));
        tags.push((LOCK_UNTIL, l.until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
    }
    tags
}

/// The lock a snapshot's tags hold; an unreadable date locks for ever (a
/// damaged tag must not make a snapshot deletable).
pub fn lock(tags: &BTreeMap<String, String>) -> Option<berth_core::SnapshotLock> {
    let mode = berth_core::LockMode::parse(tags.get(LOCK)?).unwrap_or(berth_core::LockMode::Compliance);
    match tags.get(LOCK_UNTIL).map(|u| chrono::DateTime::parse_from_rfc3339(u)) {
        Some(Ok(until)) => Some(berth_core::SnapshotLock { mode, until: until.with_timezone(&chrono::Utc) }),
        _ => Some(berth_core::SnapshotLock {
            mode: berth_core::LockMode::Compliance,
            until: chrono::DateTime::<chrono::Utc>::MAX_UTC,
        }),
    }
}

/// The consistency a snapshot's tags record.
pub fn consistency(tags: &BTreeMap<String, String>) -> Option<berth_core::Consistency> {
    tags.get(CONSISTENCY).map(|c| match c.as_str() {
        "application" => berth_core::Consistency::Application,
        _ => berth_core::Consistency::Crash,
    })
}

/// Tags as a map, from EC2's key/value pairs.
pub fn map<'a>(pairs: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>) -> BTreeMap<String, String> {
    pairs.into_iter().filter_map(|(k, v)| Some((k?.to_owned(), v.unwrap_or_default().to_owned()))).collect()
}
