//! The tags berth puts on EBS volumes and snapshots. Tags scope every
//! EC2 query to one stack (`berth:cluster`) and name a resource's claim and
//! generation, which is how a snapshot for (claim, generation) is found
//! before another is made (CreateSnapshot has no client token).

use std::collections::BTreeMap;

use berth_core::{ClaimName, Generation, SnapshotKind};

pub const CLUSTER: &str = "berth:cluster";
pub const CLAIM: &str = "berth:claim";
pub const GENERATION: &str = "berth:generation";
pub const KIND: &str = "berth:kind";
pub const PIN: &str = "berth:pin";

/// A volume's tags (RunTask's `tagSpecifications`).
pub fn volume(cluster: &str, claim: &ClaimName, generation: Generation) -> Vec<(&'static str, String)> {
    vec![(CLUSTER, cluster.to_owned()), (CLAIM, claim.to_string()), (GENERATION, generation.0.to_string())]
}

/// A snapshot's tags.
pub fn snapshot(
    cluster: &str,
    claim: &ClaimName,
    generation: Option<Generation>,
    kind: SnapshotKind,
    pinned: bool,
) -> Vec<(&'static str, String)> {
    let mut tags = vec![(CLUSTER, cluster.to_owned()), (CLAIM, claim.to_string()), (KIND, kind.as_str().to_owned())];
    if let Some(g) = generation {
        tags.push((GENERATION, g.0.to_string()));
    }
    if pinned {
        tags.push((PIN, "true".into()));
    }
    tags
}

/// Tags as a map, from EC2's key/value pairs.
pub fn map<'a>(pairs: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>) -> BTreeMap<String, String> {
    pairs.into_iter().filter_map(|(k, v)| Some((k?.to_owned(), v.unwrap_or_default().to_owned()))).collect()
}
