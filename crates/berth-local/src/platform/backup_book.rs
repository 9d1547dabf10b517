//! The backup book: what the backup loop, restore verification and DR
//! drills last did for each claim, kept in `<state>/backups.json` so
//! `berth doctor` and `berth dr report` answer the same after a restart.
//!
//! The history itself is in the event log (`backup-taken`,
//! `restore-verified`, `dr-drill`, …); this file holds only the latest of
//! each, which is what the reports and metrics need without scanning it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use berth_core::backup::ReplicaState;
use berth_core::{ClaimName, Consistency, SnapshotRecord};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::drill::DrillReport;

/// The outcome of one scheduled snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackupOutcome {
    pub time: DateTime<Utc>,
    pub snapshot: Option<String>,
    pub consistency: Option<Consistency>,
    /// Why the quiesce hook failed, when it did (the snapshot is then crash-consistent).
    pub hook_error: Option<String>,
    /// Why no snapshot was taken, when none was.
    pub error: Option<String>,
    pub seconds: f64,
}

/// One replica of one claim.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub location: String,
    pub state: ReplicaState,
    pub last_copy: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// The claim's snapshots there, as last listed (not persisted).
    #[serde(skip)]
    pub snapshots: Option<Vec<SnapshotRecord>>,
}

/// Everything the book holds about one claim.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClaimBackup {
    pub last_backup: Option<BackupOutcome>,
    #[serde(default)]
    pub replicas: BTreeMap<String, ReplicaReport>,
    pub last_verified: Option<DateTime<Utc>>,
    pub last_verify_failed: Option<DateTime<Utc>>,
    pub last_verification: Option<DrillReport>,
    pub last_drill: Option<DrillReport>,
}

pub struct BackupBook {
    path: PathBuf,
    claims: Mutex<BTreeMap<ClaimName, ClaimBackup>>,
}

impl BackupBook {
    /// Reads the book at `path`; a missing or unreadable one starts empty
    /// (it is a cache of the event log, not the only record).
    pub fn load(path: PathBuf) -> Self {
        let claims = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        Self { path, claims: Mutex::new(claims) }
    }

    pub fn get(&self, claim: &ClaimName) -> ClaimBackup {
        self.claims.lock().expect("backup book lock").get(claim).cloned().unwrap_or_default()
    }

    pub fn all(&self) -> BTreeMap<ClaimName, ClaimBackup> {
        self.claims.lock().expect("backup book lock").clone()
    }

    /// Changes one claim's entry and writes the book whole (temporary
    /// file, then rename): never half-written.
    pub fn update(&self, claim: &ClaimName, edit: impl FnOnce(&mut ClaimBackup)) {
        let text = {
            let mut claims = self.claims.lock().expect("backup book lock");
            edit(claims.entry(claim.clone()).or_default());
            serde_json::to_vec_pretty(&*claims).expect("the book serializes")
        };
        let tmp = self.path.with_extension(format!("json.{:08x}", fastrand::u32(..)));
        let written = std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(error = %e, path = %self.path.display(), "cannot write the backup book");
        }
    }
}
