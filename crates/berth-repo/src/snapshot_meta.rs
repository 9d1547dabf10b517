//! What berth records about a snapshot, and how it is written as tags.
//!
//! A snapshot's berth metadata lives only in its restic tags, so restic can
//! filter on it (`restic snapshots --tag claim=web-0`) and nothing is lost
//! when a snapshot is copied: `claim=NAME`, `generation=N` (when known),
//! `kind=on-stop|scheduled|manual`, `pin` when pinned, `lock=governance|
//! compliance` with `lock-until=<RFC 3339>` for a retention lock,
//! `consistency=application|crash` for scheduled snapshots, `volume=ID` for
//! the volume it copies (what tells apart two snapshots of one claim and
//! generation number made under different ledgers), then the caller's
//! extra tags. A lock is written when the snapshot is made and
//! never changed: rewriting a snapshot file would change its id, which the
//! ledger refers to. [`SnapshotInfo`] is the parsed view of a stored snapshot.

use rustic_core::repofile::{SnapshotFile, StringList};
use serde::Serialize;

use crate::error::RepoError;

const CLAIM: &str = "claim=";
const GENERATION: &str = "generation=";
const KIND: &str = "kind=";
const PIN: &str = "pin";
const LOCK: &str = "lock=";
const LOCK_UNTIL: &str = "lock-until=";
const CONSISTENCY: &str = "consistency=";
const VOLUME: &str = "volume=";

// The kind and the lock are core's: one vocabulary from the ledger to the tags.
pub use berth_core::{Consistency, LockMode, SnapshotKind, SnapshotLock};

/// What the caller says about a snapshot it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The claim (`<service>-<ordinal>`) whose volume this is.
    pub claim: String,
    /// The claim's generation whose volume this is, when known.
    pub generation: Option<u64>,
    /// Why the snapshot is taken.
    pub kind: SnapshotKind,
    /// Pinned snapshots are kept by retention (e.g. the last known good).
    pub pinned: bool,
    /// A retention lock from the moment the snapshot exists.
    pub lock: Option<SnapshotLock>,
    /// For scheduled snapshots: whether the workload was quiesced
    /// (`application`) or not (`crash`: as after a power cut).
    pub consistency: Option<Consistency>,
    /// The volume the snapshot copies (`vol-…`), when it is one.
    pub volume: Option<String>,
    /// Names left out of the snapshot, as gitignore-style globs (a glob
    /// without `/` matches a name in any folder): a workload's temporary
    /// files, which a restore must not bring back.
    pub exclude: Vec<String>,
    /// More tags, stored as given.
    pub extra_tags: Vec<String>,
}

impl SnapshotMeta {
    /// Metadata for a claim's snapshot with no generation, pin or extra tags.
    #[must_use]
    pub fn new(claim: impl Into<String>, kind: SnapshotKind) -> Self {
        Self {
            claim: claim.into(),
            generation: None,
            kind,
            pinned: false,
            lock: None,
            consistency: None,
            volume: None,
            exclude: Vec::new(),
            extra_tags: Vec::new(),
        }
    }

    /// The tags to store, after checking that each survives restic's
    /// comma-separated tag lists and that extra tags cannot pose as berth's.
    pub(crate) fn to_tags(&self) -> Result<StringList, RepoError> {
        validate_claim(&self.claim)?;
        let mut tags = StringList::default();
        tags.add(claim_tag(&self.claim));
        if let Some(generation) = self.generation {
            tags.add(format!("{GENERATION}{generation}"));
        }
        tags.add(format!("{KIND}{}", self.kind));
        if self.pinned {
            tags.add(PIN.to_string());
        }
        if let Some(lock) = &self.lock {
            tags.add(format!("{LOCK}{}", lock.mode));
            tags.add(format!("{LOCK_UNTIL}{}", lock.until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        }
        if let Some(c) = self.consistency {
            tags.add(format!("{CONSISTENCY}{}", c.as_str()));
        }
        if let Some(volume) = &self.volume {
            if volume.is_empty() || volume.contains(',') || volume.chars().any(char::is_control) {
                return Err(RepoError::invalid(format!("volume id {volume:?} must be non-empty without commas")));
            }
            tags.add(format!("{VOLUME}{volume}"));
        }
        for tag in &self.extra_tags {
            if tag.is_empty() || tag.contains(',') || tag.chars().any(char::is_control) {
                return Err(RepoError::invalid(format!(
                    "tag {tag:?} must be non-empty without commas or control characters"
                )));
            }
            if tag == PIN
                || [CLAIM, GENERATION, KIND, LOCK, LOCK_UNTIL, CONSISTENCY, VOLUME].iter().any(|p| tag.starts_with(p))
            {
                return Err(RepoError::invalid(format!(
                    "tag {tag:?} is reserved for berth; set the field of SnapshotMeta instead"
                )));
            }
            tags.add(tag.clone());
        }
        Ok(tags)
    }
}

/// The tag naming a claim, as in `claim=web-0`.
pub(crate) fn claim_tag(claim: &str) -> String {
    format!("{CLAIM}{claim}")
}

fn validate_claim(claim: &str) -> Result<(), RepoError> {
    let ok = !claim.is_empty()
        && claim.len() <= 128
        && claim.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(RepoError::invalid(format!("claim {claim:?} must be 1-128 ASCII letters, digits, '-', '_' or '.'")))
    }
}

/// A stored snapshot as berth sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotInfo {
    /// The full snapshot id (64 hex digits).
    pub id: String,
    /// When the snapshot was taken, RFC 3339 in UTC.
    pub time: String,
    /// The same instant in seconds since the Unix epoch.
    pub unix_time: i64,
    /// From the `claim=` tag; `None` for snapshots not written by berth.
    pub claim: Option<String>,
    /// From the `generation=` tag.
    pub generation: Option<u64>,
    /// From the `kind=` tag, as written (`on-stop`, `scheduled`, `manual`).
    pub kind: Option<String>,
    /// Whether the `pin` tag is present.
    pub pinned: bool,
    /// From the `lock=` and `lock-until=` tags. A lock tag whose date does
    /// not parse counts as a compliance lock that never ends: a damaged
    /// lock must not make a snapshot deletable.
    pub lock: Option<SnapshotLock>,
    /// From the `consistency=` tag.
    pub consistency: Option<Consistency>,
    /// From the `volume=` tag: the volume it copies.
    pub volume: Option<String>,
    /// Every tag, sorted (berth's own included).
    pub tags: Vec<String>,
    /// The paths stored (`/volume` for berth's snapshots).
    pub paths: Vec<String>,
    /// The snapshot this one was taken relative to, if any.
    pub parent: Option<String>,
    /// Files in the snapshot (0 for snapshots without a summary).
    pub files: u64,
    /// Bytes of all files in the snapshot.
    pub bytes: u64,
    /// Files found unchanged since the parent, so not read again.
    pub files_unmodified: u64,
    /// Uncompressed bytes this snapshot added to the repository.
    pub data_added: u64,
    /// Bytes (compressed, encrypted) this snapshot added to the repository.
    pub data_added_packed: u64,
    /// How long taking the snapshot took.
    pub duration_secs: f64,
}

impl SnapshotInfo {
    pub(crate) fn from_file(snap: &SnapshotFile) -> Self {
        let mut claim = None;
        let mut generation = None;
        let mut kind = None;
        let mut pinned = false;
        let mut lock_mode = None;
        let mut lock_until = None;
        let mut consistency = None;
        let mut volume = None;
        for tag in &snap.tags {
            if let Some(value) = tag.strip_prefix(CLAIM) {
                claim = Some(value.to_string());
            } else if let Some(value) = tag.strip_prefix(GENERATION) {
                generation = value.parse().ok();
            } else if let Some(value) = tag.strip_prefix(KIND) {
                kind = Some(value.to_string());
            } else if tag == PIN {
                pinned = true;
            } else if let Some(value) = tag.strip_prefix(LOCK_UNTIL) {
                lock_until = Some(value.to_string());
            } else if let Some(value) = tag.strip_prefix(LOCK) {
                lock_mode = Some(LockMode::parse(value).unwrap_or(LockMode::Compliance));
            } else if let Some(value) = tag.strip_prefix(CONSISTENCY) {
                consistency = match value {
                    "application" => Some(Consistency::Application),
                    _ => Some(Consistency::Crash),
                };
            } else if let Some(value) = tag.strip_prefix(VOLUME) {
                volume = Some(value.to_string());
            }
        }
        let lock = lock_mode.map(|mode| match lock_until.as_deref().map(chrono::DateTime::parse_from_rfc3339) {
            Some(Ok(until)) => SnapshotLock { mode, until: until.with_timezone(&chrono::Utc) },
            _ => SnapshotLock { mode: LockMode::Compliance, until: chrono::DateTime::<chrono::Utc>::MAX_UTC },
        });
        let summary = snap.summary.as_ref();
        let timestamp = snap.time.timestamp();
        Self {
            id: snap.id.to_hex().to_string(),
            time: timestamp.to_string(),
            unix_time: timestamp.as_second(),
            claim,
            generation,
            kind,
            pinned,
            lock,
            consistency,
            volume,
            tags: snap.tags.iter().cloned().collect(),
            paths: snap.paths.iter().cloned().collect(),
            parent: snap.parent.map(|p| p.to_hex().to_string()),
            files: summary.map_or(0, |s| s.total_files_processed),
            bytes: summary.map_or(0, |s| s.total_bytes_processed),
            files_unmodified: summary.map_or(0, |s| s.files_unmodified),
            data_added: summary.map_or(0, |s| s.data_added),
            data_added_packed: summary.map_or(0, |s| s.data_added_packed),
            duration_secs: summary.map_or(0.0, |s| s.backup_duration),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_a_snapshot_file() {
        let meta = SnapshotMeta {
            claim: "web-0".into(),
            generation: Some(7),
            kind: SnapshotKind::OnStop,
            pinned: true,
            lock: Some(SnapshotLock {
                mode: LockMode::Governance,
                until: chrono::DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z").unwrap().into(),
            }),
            consistency: Some(Consistency::Application),
            volume: Some("vol-00000000000000ab".into()),
            exclude: Vec::new(),
            extra_tags: vec!["reason=spot".into()],
        };
        let snap = SnapshotFile { tags: meta.to_tags().unwrap(), ..SnapshotFile::default() };
        let info = SnapshotInfo::from_file(&snap);
        assert_eq!(info.claim.as_deref(), Some("web-0"));
        assert_eq!(info.generation, Some(7));
        assert_eq!(info.kind.as_deref(), Some("on-stop"));
        assert!(info.pinned);
        assert_eq!(
            info.lock.as_ref().map(|l| (l.mode, l.until.to_rfc3339())),
            Some((LockMode::Governance, "2030-01-02T03:04:05+00:00".into()))
        );
        assert_eq!(info.consistency, Some(Consistency::Application));
        assert_eq!(info.volume.as_deref(), Some("vol-00000000000000ab"));
        assert_eq!(
            info.tags,
            [
                "claim=web-0",
                "consistency=application",
                "generation=7",
                "kind=on-stop",
                "lock-until=2030-01-02T03:04:05Z",
                "lock=governance",
                "pin",
                "reason=spot",
                "volume=vol-00000000000000ab"
            ]
        );
        assert!(info.time.ends_with('Z'), "{}", info.time);
    }

    #[test]
    fn minimal_meta_has_claim_and_kind_only() {
        let tags = SnapshotMeta::new("db-1", SnapshotKind::Manual).to_tags().unwrap();
        let tags: Vec<_> = tags.iter().cloned().collect();
        assert_eq!(tags, ["claim=db-1", "kind=manual"]);
    }

    #[test]
    fn bad_claims_and_tags_are_refused() {
        for claim in ["", "a,b", "a b", "web/0", &"x".repeat(129)] {
            let meta = SnapshotMeta::new(claim, SnapshotKind::Manual);
            assert!(meta.to_tags().is_err(), "{claim:?} accepted");
        }
        for tag in [
            "",
            "a,b",
            "claim=other",
            "pin",
            "generation=1",
            "kind=manual",
            "a\nb",
            "lock=governance",
            "lock-until=x",
            "volume=vol-1",
        ] {
            let mut meta = SnapshotMeta::new("web-0", SnapshotKind::Manual);
            meta.extra_tags.push(tag.into());
            assert!(meta.to_tags().is_err(), "{tag:?} accepted");
        }
    }

    #[test]
    fn a_damaged_lock_tag_still_locks() {
        let mut tags = StringList::default();
        tags.add("claim=web-0".into());
        tags.add("lock=governance".into());
        tags.add("lock-until=soon".into());
        let info = SnapshotInfo::from_file(&SnapshotFile { tags, ..SnapshotFile::default() });
        let lock = info.lock.unwrap();
        assert_eq!(lock.mode, LockMode::Compliance);
        assert!(lock.holds_at(chrono::Utc::now()));
    }

    #[test]
    fn kinds_parse_from_their_tag_text() {
        for kind in [SnapshotKind::OnStop, SnapshotKind::Scheduled, SnapshotKind::Manual, SnapshotKind::Background] {
            assert_eq!(SnapshotKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(SnapshotKind::parse("weekly"), None);
    }
}
