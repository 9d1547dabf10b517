//! Replica repositories: where every snapshot of a claim is copied for
//! disaster recovery (another folder, or an S3 URL).
//!
//! A replica is opened once (opening derives the key, about half a second)
//! and kept. It takes the primary's password, so a restore from it needs
//! nothing the primary's owner does not already hold; a replica whose
//! folder does not exist yet is created on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_core::backup::Replica;
use berth_core::SnapshotRecord;
use berth_repo::{Progress, Repo, RepoError};

use crate::state::StateDir;
use crate::{resolve_password, to_record};

/// Open replica repositories, by location.
pub struct Replicas {
    state: StateDir,
    open: Mutex<HashMap<String, Arc<Repo>>>,
}

impl Replicas {
    pub fn new(state: StateDir) -> Self {
        Self { state, open: Mutex::new(HashMap::new()) }
    }

    /// Opens (or creates) the replica at `location`; blocking.
    pub fn open(&self, location: &str) -> Result<Arc<Repo>, RepoError> {
        if let Some(repo) = self.open.lock().expect("replica lock").get(location) {
            return Ok(Arc::clone(repo));
        }
        let password = self.password()?;
        let repo = Arc::new(Repo::open_or_init(location, &password, Progress::Hidden)?);
        self.open.lock().expect("replica lock").insert(location.to_owned(), Arc::clone(&repo));
        Ok(repo)
    }

    /// Forgets an open handle (after an error, so the next use reopens).
    pub fn close(&self, location: &str) {
        self.open.lock().expect("replica lock").remove(location);
    }

    fn password(&self) -> Result<String, RepoError> {
        resolve_password(
            std::env::var("BERTH_PASSWORD").ok(),
            std::env::var_os("BERTH_PASSWORD_FILE").map(std::path::PathBuf::from),
            &self.state,
            false,
        )
        .map(|(p, _)| p)
        .map_err(|e| RepoError::Unsupported { location: "replica".into(), reason: e.to_string() })
    }
}

/// What one replication pass did for one claim and replica.
#[derive(Debug, Default)]
pub struct Replicated {
    /// Snapshots copied now.
    pub copied: usize,
    /// Snapshots the replica's retention forgot now.
    pub forgotten: usize,
    /// The claim's snapshots in the replica afterwards.
    pub snapshots: Vec<SnapshotRecord>,
}

/// Copies `wanted` (ids of the primary) into `replica`, then applies the
/// replica's retention to `claim`'s snapshots there; blocking. Locked
/// snapshots stay (the lock tag travels with the copy).
pub fn replicate(
    primary: &Repo,
    replica: &Repo,
    policy: &Replica,
    claim: &berth_core::ClaimName,
    wanted: &[String],
) -> Result<Replicated, RepoError> {
    let copied = primary.copy_to(replica, wanted)?.len();
    let now = chrono::Utc::now();
    let mut snapshots: Vec<SnapshotRecord> =
        replica.list()?.iter().map(to_record).filter(|s| s.claim.as_ref() == Some(claim)).collect();
    let doomed: Vec<String> = if policy.retention.is_empty() {
        Vec::new()
    } else {
        berth_core::retention::forgotten(&snapshots, &policy.retention, now).into_iter().map(|id| id.0).collect()
    };
    if !doomed.is_empty() {
        replica.forget(&doomed)?;
        snapshots.retain(|s| !doomed.contains(&s.id.0));
    }
    Ok(Replicated { copied, forgotten: doomed.len(), snapshots })
}
