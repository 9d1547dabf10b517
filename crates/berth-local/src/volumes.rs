//! Directory volumes: core's `Volumes` port on one machine.
//!
//! A local volume is a folder `<state>/volumes/<id>/` with a record beside it
//! (`<id>.json`: claim, generation, source snapshot, seal). Snapshots go to
//! the restic-format repository. A new volume is built in a hidden
//! `.creating-<id>` folder and renamed into place, so a crash never leaves a
//! half-restored volume under a real id; records are written to a temporary
//! file and renamed for the same reason.
//!
//! The *seal* makes the same-host fast path safe: when a snapshot is taken of
//! a quiescent volume, its fingerprint before and after the snapshot is
//! recorded with the snapshot id. A replacement asking to adopt the volume
//! gets it by rename only if the fingerprint still matches; otherwise (the
//! volume was touched, the seal is for another snapshot, or there is none) it
//! is restored from the snapshot, which stays the default path.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use berth_core::{
    ClaimName, Generation, PortError, SnapshotId, SnapshotRecord, SnapshotRequest, VolumeId, VolumeInfo, VolumeSource,
    Volumes,
};
use berth_repo::{Repo, RepoError, SnapshotMeta};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fingerprint::fingerprint;
use crate::records::to_record;
use crate::state::StateDir;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("no volume {0}")]
    NotFound(VolumeId),
    #[error("volume {id}: {source}")]
    Io {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("volume record {path} is unreadable: {detail}")]
    BadRecord { path: PathBuf, detail: String },
}

impl VolumeError {
    fn io(id: impl Into<String>, source: io::Error) -> Self {
        Self::Io { id: id.into(), source }
    }
}

impl From<VolumeError> for PortError {
    fn from(e: VolumeError) -> Self {
        let retryable = match &e {
            VolumeError::NotFound(_) | VolumeError::BadRecord { .. } => false,
            VolumeError::Io { .. } => true,
            VolumeError::Repo(r) => r.is_retryable(),
        };
        PortError { retryable, message: e.to_string() }
    }
}

/// A sealed volume: unchanged since `snapshot` if its fingerprint matches.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Seal {
    snapshot: SnapshotId,
    fingerprint: String,
}

/// The record beside each volume folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: VolumeId,
    claim: ClaimName,
    generation: Option<Generation>,
    created: DateTime<Utc>,
    source_snapshot: Option<SnapshotId>,
    adopted_from: Option<VolumeId>,
    seal: Option<Seal>,
    /// When it was restored from a snapshot: its next snapshot does not
    /// read again what the restore wrote and nothing changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restored: Option<berth_repo::Restored>,
}

/// Volumes as folders in the state folder, snapshots in a repository.
#[derive(Clone)]
pub struct LocalVolumes {
    inner: Arc<Inner>,
}

type Opener = Box<dyn Fn() -> Result<Repo, RepoError> + Send + Sync>;

struct Inner {
    dir: PathBuf,
    /// Opened on first use: opening derives the key (scrypt, about half a
    /// second), which the adopt path and volume listings never need.
    repo: OnceLock<Repo>,
    open: Opener,
}

impl LocalVolumes {
    /// Volumes in `state`, with the repository opened by `open` when first needed.
    pub fn new(
        state: &StateDir,
        open: impl Fn() -> Result<Repo, RepoError> + Send + Sync + 'static,
    ) -> io::Result<Self> {
        state.ensure()?;
        Ok(Self { inner: Arc::new(Inner { dir: state.volumes(), repo: OnceLock::new(), open: Box::new(open) }) })
    }

    /// Volumes in `state` with a repository already open.
    pub fn with_repo(state: &StateDir, repo: Repo) -> io::Result<Self> {
        let volumes = Self::new(state, || unreachable!("the repository is already open"))?;
        let _ = volumes.inner.repo.set(repo);
        Ok(volumes)
    }

    pub fn repo(&self) -> Result<&Repo, RepoError> {
        if let Some(repo) = self.inner.repo.get() {
            return Ok(repo);
        }
        let repo = (self.inner.open)()?;
        // A racing opener may have won; either handle is as good.
        let _ = self.inner.repo.set(repo);
        Ok(self.inner.repo.get().expect("set above"))
    }

    /// The folder of a volume.
    pub fn path(&self, id: &VolumeId) -> PathBuf {
        self.inner.dir.join(&id.0)
    }

    fn record_path(&self, id: &VolumeId) -> PathBuf {
        self.inner.dir.join(format!("{}.json", id.0))
    }

    fn read_record(&self, id: &VolumeId) -> Result<Record, VolumeError> {
        let path = self.record_path(id);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(VolumeError::NotFound(id.clone())),
            Err(e) => return Err(VolumeError::io(&id.0, e)),
        };
        serde_json::from_str(&text).map_err(|e| VolumeError::BadRecord { path, detail: e.to_string() })
    }

    fn write_record(&self, record: &Record) -> Result<(), VolumeError> {
        let path = self.record_path(&record.id);
        let temp = self.inner.dir.join(format!(".{}.json.{:08x}", record.id.0, fastrand::u32(..)));
        let text = serde_json::to_vec_pretty(record).expect("records serialize");
        let write = || -> io::Result<()> {
            fs::write(&temp, &text)?;
            fs::File::open(&temp)?.sync_all()?;
            fs::rename(&temp, &path)?;
            fs::File::open(&self.inner.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            VolumeError::io(&record.id.0, e)
        })
    }

    fn info(&self, r: &Record) -> VolumeInfo {
        VolumeInfo {
            id: r.id.clone(),
            claim: r.claim.clone(),
            generation: r.generation,
            created: r.created,
            source_snapshot: r.source_snapshot.clone(),
            adopted_from: r.adopted_from.clone(),
            location: self.path(&r.id).display().to_string(),
        }
    }

    /// Creates a volume (see [`VolumeSource`]); blocking.
    pub fn create_blocking(
        &self,
        claim: &ClaimName,
        generation: Option<Generation>,
        source: &VolumeSource,
    ) -> Result<VolumeInfo, VolumeError> {
        let id = VolumeId(format!("vol-{:016x}", fastrand::u64(..)));
        let staging = self.inner.dir.join(format!(".creating-{}", id.0));
        let mut record = Record {
            id: id.clone(),
            claim: claim.clone(),
            generation,
            created: Utc::now(),
            source_snapshot: None,
            adopted_from: None,
            seal: None,
            restored: None,
        };
        let result = (|| {
            match source {
                VolumeSource::Empty => fs::create_dir(&staging).map_err(|e| VolumeError::io(&id.0, e))?,
                VolumeSource::Snapshot(snap) => {
                    record.restored = Some(self.restore_into(snap, &staging)?);
                    record.source_snapshot = Some(snap.clone());
                }
                VolumeSource::AdoptOrRestore { volume, snapshot } => {
                    record.source_snapshot = Some(snapshot.clone());
                    if self.try_adopt(volume, snapshot, &staging)? {
                        record.adopted_from = Some(volume.clone());
                    } else {
                        record.restored = Some(self.restore_into(snapshot, &staging)?);
                    }
                }
            }
            fs::rename(&staging, self.path(&id)).map_err(|e| VolumeError::io(&id.0, e))?;
            self.write_record(&record)
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        if let Some(old) = &record.adopted_from {
            // The old volume's folder is now this one; its record goes.
            let _ = fs::remove_file(self.record_path(old));
        }
        tracing::info!(volume = %id, claim = %claim, adopted = record.adopted_from.is_some(), "volume created");
        Ok(self.info(&record))
    }

    fn restore_into(&self, snapshot: &SnapshotId, target: &Path) -> Result<berth_repo::Restored, VolumeError> {
        fs::create_dir(target).map_err(|e| VolumeError::io(target.display().to_string(), e))?;
        self.repo()?.restore(&snapshot.0, target)?;
        Ok(berth_repo::Restored::of(&snapshot.0, target)?)
    }

    /// Moves `volume` to `target` if it is sealed by `snapshot` and unchanged.
    fn try_adopt(&self, volume: &VolumeId, snapshot: &SnapshotId, target: &Path) -> Result<bool, VolumeError> {
        let record = match self.read_record(volume) {
            Ok(r) => r,
            Err(VolumeError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(seal) = record.seal.filter(|s| &s.snapshot == snapshot) else {
            tracing::info!(volume = %volume, "not adopted: not sealed by this snapshot");
            return Ok(false);
        };
        let path = self.path(volume);
        match fingerprint(&path) {
            Ok(f) if f == seal.fingerprint => {}
            Ok(_) => {
                tracing::warn!(volume = %volume, "not adopted: changed since its snapshot; restoring instead");
                return Ok(false);
            }
            Err(e) => {
                tracing::warn!(volume = %volume, error = %e, "not adopted: cannot read it; restoring instead");
                return Ok(false);
            }
        }
        fs::rename(&path, target).map_err(|e| VolumeError::io(&volume.0, e))?;
        Ok(true)
    }

    /// Snapshots a volume whose task has stopped; blocking. A scheduled
    /// snapshot (of a running task's volume) leaves the volume's seal
    /// alone: the task writes on, so only a stop snapshot can vouch for
    /// the volume being unchanged at the next handoff.
    pub fn snapshot_blocking(&self, id: &VolumeId, request: &SnapshotRequest) -> Result<SnapshotRecord, VolumeError> {
        let mut record = self.read_record(id)?;
        let path = self.path(id);
        let meta = SnapshotMeta {
            generation: request.generation.map(|g| g.0),
            // Only a stop snapshot may be pinned: a running volume's is no last known good.
            pinned: request.pinned && request.consistency.is_none(),
            lock: request.lock.clone(),
            consistency: request.consistency,
            volume: Some(id.0.clone()),
            exclude: left_out(),
            ..SnapshotMeta::new(request.claim.to_string(), request.kind)
        };
        let restored = record.restored.clone();
        if request.consistency.is_some() {
            return Ok(to_record(&self.repo()?.snapshot_restored(&path, &meta, restored.as_ref())?));
        }
        let before = fingerprint(&path).map_err(|e| VolumeError::io(&id.0, e))?;
        let info = self.repo()?.snapshot_restored(&path, &meta, restored.as_ref())?;
        let after = fingerprint(&path).map_err(|e| VolumeError::io(&id.0, e))?;
        // Sealed only if nothing moved while the snapshot read it.
        record.seal = (before == after).then(|| Seal { snapshot: SnapshotId(info.id.clone()), fingerprint: after });
        if record.seal.is_none() {
            tracing::warn!(volume = %id, "volume changed during its snapshot; it will be restored, not adopted");
        }
        self.write_record(&record)?;
        Ok(to_record(&info))
    }

    /// Deletes a volume; blocking. Deleting a missing volume succeeds.
    pub fn delete_blocking(&self, id: &VolumeId) -> Result<(), VolumeError> {
        let path = self.path(id);
        match fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(VolumeError::io(&id.0, e)),
        }
        match fs::remove_file(self.record_path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VolumeError::io(&id.0, e)),
        }
    }

    /// Every volume with a record; blocking.
    pub fn list_blocking(&self) -> Result<Vec<VolumeInfo>, VolumeError> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.inner.dir).map_err(|e| VolumeError::io("volumes", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| VolumeError::io("volumes", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json").filter(|n| n.starts_with("vol-")) else { continue };
            match self.read_record(&VolumeId(id.to_owned())) {
                Ok(r) => out.push(self.info(&r)),
                Err(VolumeError::NotFound(_)) => {} // deleted meanwhile
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(LocalVolumes) -> Result<T, VolumeError> + Send + 'static,
    ) -> Result<T, PortError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(this))
            .await
            .map_err(|e| PortError::retryable(format!("volume task failed: {e}")))?
            .map_err(PortError::from)
    }
}

impl Volumes for LocalVolumes {
    async fn create(
        &self,
        claim: &ClaimName,
        generation: Option<Generation>,
        source: &VolumeSource,
    ) -> Result<VolumeInfo, PortError> {
        let (claim, source) = (claim.clone(), source.clone());
        self.run(move |v| v.create_blocking(&claim, generation, &source)).await
    }

    async fn snapshot(&self, volume: &VolumeId, request: &SnapshotRequest) -> Result<SnapshotRecord, PortError> {
        let (volume, request) = (volume.clone(), request.clone());
        self.run(move |v| v.snapshot_blocking(&volume, &request)).await
    }

    async fn delete(&self, volume: &VolumeId) -> Result<(), PortError> {
        let volume = volume.clone();
        self.run(move |v| v.delete_blocking(&volume)).await
    }

    async fn list(&self) -> Result<Vec<VolumeInfo>, PortError> {
        self.run(|v| v.list_blocking()).await
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotRecord>, PortError> {
        self.run(|v| Ok(v.repo()?.list()?.iter().map(to_record).collect())).await
    }

    /// Forgets the snapshots still there: deleting one that is gone
    /// succeeds, as the port promises (the volumes contract found that it
    /// failed with 'not found').
    async fn delete_snapshots(&self, ids: &[SnapshotId]) -> Result<(), PortError> {
        let ids: Vec<String> = ids.iter().map(|i| i.0.clone()).collect();
        self.run(move |v| {
            let repo = v.repo()?;
            let present: std::collections::HashSet<String> = repo.list()?.into_iter().map(|s| s.id).collect();
            let ids: Vec<String> = ids.into_iter().filter(|i| present.contains(i)).collect();
            if ids.is_empty() {
                return Ok(());
            }
            Ok(repo.forget(&ids)?)
        })
        .await
    }
}

/// What no snapshot of a volume keeps (core's rule).
fn left_out() -> Vec<String> {
    berth_core::snapshot::LEFT_OUT.iter().map(|g| (*g).to_owned()).collect()
}
