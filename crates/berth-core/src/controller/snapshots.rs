//! The snapshots taken outside a handoff (scheduled and background
//! backups, with their retention), and the controller's reads of the
//! snapshot cache ([`crate::snapshot_cache::Cached`], behind the port).

use super::*;

impl<R: Runtime, V: Volumes, L: Ledger> Controller<R, V, L> {
    /// The snapshots of one claim as this controller knows them.
    pub fn snapshots_of(&self, claim: &ClaimName) -> Vec<SnapshotRecord> {
        self.volumes.of(claim)
    }

    /// The volumes port as it was given (the cache is this controller's).
    pub fn volumes(&self) -> &V {
        self.volumes.inner()
    }

    /// Takes a snapshot (a handoff's, or a scheduled backup of a running
    /// claim's volume), keeps it in the cache and catalogues it.
    pub async fn take_snapshot(
        &self,
        volume: &crate::ports::VolumeId,
        request: &crate::snapshot::SnapshotRequest,
    ) -> Result<SnapshotRecord, ControllerError> {
        // The cache (behind the port) has it at once: it is what the next
        // pass finds the snapshot by, so a failed catalogue write must not
        // cause a second snapshot.
        let record = self.volumes.snapshot(volume, request).await?;
        if let Err(e) = self.ledger.catalogue(std::slice::from_ref(&record)).await {
            tracing::warn!(error = %e, snapshot = %record.id, "could not catalogue a snapshot; the next resync does");
        }
        Ok(record)
    }

    /// The volume of a claim that is due a scheduled snapshot now: a claim
    /// running its own task, with no handoff open, whose newest snapshot of
    /// any kind is older than the schedule allows. The caller quiesces the
    /// task, calls [`Controller::back_up`], and resumes it.
    pub async fn due_backup(
        &self,
        name: &ClaimName,
        schedule: &crate::backup::Schedule,
    ) -> Result<Option<crate::ports::VolumeId>, ControllerError> {
        let Some(claim) = self.ledger.claim(name).await? else { return Ok(None) };
        if claim.handoff.is_some() || claim.desired != crate::intent::DesiredState::Running {
            return Ok(None);
        }
        let Some(task) = claim.task.as_ref() else { return Ok(None) };
        let tasks = self.runtime.tasks().await?;
        let running = tasks.iter().any(|t| {
            &t.arn == task
                && t.last_status == crate::event::TaskStatus::Running
                && t.desired_status == crate::event::TaskStatus::Running
        });
        // Background snapshots are no backups: they are crash-consistent and
        // replaced within minutes, so they must not put the next one off.
        let mut snapshots = self.snapshots_of(name);
        snapshots.retain(|s| s.kind != Some(crate::snapshot::SnapshotKind::Background));
        if !running || !crate::backup::due(schedule, &snapshots, self.now()) {
            return Ok(None);
        }
        Ok(claim.volume.clone())
    }

    /// Takes a scheduled snapshot of a running claim's volume: backup
    /// retention first (cleanup before create, so a full store is relieved
    /// before it is written to), then the snapshot with the policy's lock
    /// and the consistency the caller's quiesce hook achieved.
    pub async fn back_up(
        &self,
        name: &ClaimName,
        volume: &crate::ports::VolumeId,
        policy: &crate::backup::Policy,
        consistency: crate::snapshot::Consistency,
    ) -> Result<SnapshotRecord, ControllerError> {
        let claim = self.ledger.claim(name).await?;
        let now = self.now();
        let doomed =
            crate::backup::forgettable_scheduled(claim.as_ref(), &self.snapshots_of(name), &policy.retention, now);
        if !doomed.is_empty() {
            self.forget_snapshots(name, &doomed).await?;
            let message = format!("forgot {} scheduled snapshot(s) by backup retention", doomed.len());
            self.log(EventRecord::new(now, Some(name), "retention", message)).await;
        }
        let generation = claim.map(|c| c.generation);
        let request = crate::snapshot::SnapshotRequest {
            lock: policy.lock.map(|l| l.lock_from(now)),
            consistency: Some(consistency),
            ..crate::snapshot::SnapshotRequest::new(name.clone(), generation, crate::snapshot::SnapshotKind::Scheduled)
        };
        self.take_snapshot(volume, &request).await
    }

    /// Takes a background snapshot of a running claim's volume (see
    /// [`crate::snapshot::SnapshotKind::Background`]), crash-consistent, and
    /// forgets the background snapshots it replaces.
    pub async fn back_up_in_background(
        &self,
        name: &ClaimName,
        volume: &crate::ports::VolumeId,
    ) -> Result<SnapshotRecord, ControllerError> {
        let generation = self.ledger.claim(name).await?.map(|c| c.generation);
        let request = crate::snapshot::SnapshotRequest {
            consistency: Some(crate::snapshot::Consistency::Crash),
            ..crate::snapshot::SnapshotRequest::new(name.clone(), generation, crate::snapshot::SnapshotKind::Background)
        };
        let record = self.take_snapshot(volume, &request).await?;
        let superseded = crate::backup::superseded_background(&self.snapshots_of(name));
        self.forget_snapshots(name, &superseded).await?;
        Ok(record)
    }

    /// Deletes snapshots of one claim outside a handoff (backup retention).
    pub async fn forget_snapshots(
        &self,
        claim: &ClaimName,
        ids: &[crate::snapshot::SnapshotId],
    ) -> Result<(), ControllerError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.execute(Some(claim), Action::DeleteSnapshots(ids.to_vec())).await
    }

    /// Reads every snapshot from the store into the cache.
    pub async fn refresh_snapshots(&self) -> Result<(), ControllerError> {
        Ok(self.volumes.refresh().await?)
    }
}
