//! Errors of the snapshot repository.
//!
//! A `RepoError` says what went wrong in berth's words and what the user can
//! do about it; `rustic_core`'s own error text is kept as the detail (or the
//! source) so nothing is lost. [`RepoError::is_retryable`] is the only
//! classification callers need: berth's error policy lives in core.

use std::{io, path::PathBuf};

use rustic_core::RusticError;

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// There is no repository at the location (no `config` file).
    #[error("no snapshot repository at {location}; check the path and BERTH_REPOSITORY; a first `berth snapshot create` creates it")]
    NotFound { location: String },

    /// The location exists, has other files in it and no repository.
    #[error("{location} is not empty and holds no snapshot repository; choose an empty or new folder")]
    NotARepository { location: String },

    /// No key of the repository opens with the given password.
    #[error("wrong password for the snapshot repository at {location}; check the repository password")]
    WrongPassword { location: String },

    /// The location names a backend this build cannot use.
    #[error("{location}: {reason}")]
    Unsupported { location: String, reason: String },

    /// A remote repository's endpoint does not answer.
    #[error("cannot reach {location}: {detail}; check the endpoint and the network, then retry")]
    Unreachable { location: String, detail: String },

    /// A remote repository refused the credentials.
    #[error(
        "access to {location} denied: {detail}; check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and the bucket's permissions"
    )]
    AccessDenied { location: String, detail: String },

    /// The bucket of an S3 location does not exist.
    #[error("bucket {bucket} of {location} does not exist; create it first (berth does not create buckets)")]
    BucketNotFound { location: String, bucket: String },

    /// No snapshot has this id (or id prefix).
    #[error("snapshot {id} not found; list the snapshots to see which exist")]
    SnapshotNotFound { id: String },

    /// More than one snapshot starts with this prefix.
    #[error("snapshot id prefix {id} matches more than one snapshot; give more characters")]
    Ambiguous { id: String },

    /// The snapshot exists but has no volume in it: it was not written by berth.
    #[error("snapshot {id} holds no {path} tree, so it was not written by berth; restore it with restic instead")]
    NotAVolume { id: String, path: String },

    /// Repository data is damaged: a pack, tree, index or snapshot file does
    /// not decrypt or does not hash to its id.
    #[error(
        "snapshot repository is damaged{}: {detail}; run check with read_data to see the extent, and restore from another snapshot or a replica",
        snapshot.as_ref().map(|s| format!(" (snapshot {s})")).unwrap_or_default()
    )]
    Corrupt { snapshot: Option<String>, detail: String },

    /// The repository's config file does not decrypt with the key that
    /// opened (a wrong password fails at the key, before): the file is
    /// damaged, and no retry reads it.
    #[error(
        "the config file of the snapshot repository at {location} is damaged ({detail}): restore that file from a \
         copy of the repository, or recover the data from a replica (berth dr)"
    )]
    DamagedConfig { location: String, detail: String },

    /// A disk (the repository's or the restore target's) is full.
    #[error("no space left: {detail}; free space on the repository or the target disk, then retry")]
    NoSpace { detail: String },

    /// Some entries of the volume could not be read, so the snapshot would
    /// have been incomplete; it was not kept.
    #[error(
        "could not read {} entries of the volume at {} (first: {}); fix their permissions or stop whatever removes them, then retry",
        errors.len(), path.display(), errors.first().map(String::as_str).unwrap_or("?")
    )]
    SourceUnreadable { path: PathBuf, errors: Vec<String> },

    /// The restore target is missing, not a directory, or not empty.
    #[error("restore target {} must be an existing empty directory; create or empty it, then retry", path.display())]
    TargetNotEmpty { path: PathBuf },

    /// A retention lock forbids deleting the snapshot now.
    #[error(
        "snapshot {id} is under a {mode} lock until {until}; {}",
        if *mode == berth_core::LockMode::Governance {
            "pass --bypass-governance to forget it anyway"
        } else {
            "a compliance lock cannot be lifted: wait for its date"
        }
    )]
    Locked { id: String, mode: berth_core::LockMode, until: String },

    /// A caller-supplied value (claim, tag, id, path) is not acceptable.
    #[error("invalid input: {detail}")]
    InvalidInput { detail: String },

    /// A local file operation failed.
    #[error("{} failed on {}: {source}; check the path and its permissions, then retry", op, path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Anything else `rustic_core` reported. Its error is kept as text
    /// only: `RusticError`'s `Display` is a multi-line report with a
    /// backtrace, which a `{:#}` chain would print whole.
    #[error("snapshot repository operation failed: {detail}; retry, and run check if it persists")]
    Other { detail: String },
}

impl RepoError {
    /// Whether the same call may succeed if retried later without a change
    /// by the user (a full disk may be freed by retention, a racing writer
    /// may finish). Damage, bad input and wrong passwords never heal.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::NoSpace { .. }
                | Self::Io { .. }
                | Self::Other { .. }
                | Self::SourceUnreadable { .. }
                | Self::Unreachable { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        if is_no_space(&source) {
            return Self::NoSpace { detail: format!("{op} {}: {source}", path.into().display()) };
        }
        Self::Io { op, path: path.into(), source }
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        Self::InvalidInput { detail: detail.into() }
    }

    /// Classifies a `rustic_core` error that has no better meaning in its
    /// context: a full disk and a wrong password are recognised anywhere.
    pub(crate) fn from_rustic(location: &str, err: &RusticError) -> Self {
        if err.is_incorrect_password() {
            return Self::WrongPassword { location: location.to_string() };
        }
        if chain_has_no_space(err) {
            return Self::NoSpace { detail: describe(err) };
        }
        Self::Other { detail: describe(err) }
    }

    /// Classifies a `rustic_core` error of opening a repository: past the
    /// password, a config that does not decrypt or parse is damage.
    pub(crate) fn from_rustic_open(location: &str, err: &RusticError) -> Self {
        match Self::from_rustic(location, err) {
            Self::Other { detail } if is_damaged_config(err, &detail) => {
                Self::DamagedConfig { location: location.to_string(), detail }
            }
            other => other,
        }
    }

    /// Classifies a `rustic_core` error met while reading data that should
    /// be there: anything but a full disk counts as damage (an unreadable
    /// pack is as lost as a garbled one).
    pub(crate) fn corrupt_from_rustic(snapshot: Option<&str>, err: &RusticError) -> Self {
        if chain_has_no_space(err) {
            return Self::NoSpace { detail: describe(err) };
        }
        Self::Corrupt { snapshot: snapshot.map(str::to_string), detail: describe(err) }
    }
}

/// One line for a `rustic_core` error and its causes. `RusticError`'s
/// `Display` is a multi-line report with a backtrace, and `display_log`
/// embeds its cause in that form; this keeps each error's own message.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        // Causes are often boxed once more (`Box<RusticError>` as the error).
        let rustic = e.downcast_ref::<RusticError>().or_else(|| e.downcast_ref::<Box<RusticError>>().map(|b| &**b));
        let text = match rustic {
            Some(r) => {
                let log = r.display_log();
                let own = log.split_once(": caused by: ").map_or(log.as_str(), |(own, _)| own);
                own.strip_prefix("Error: ").unwrap_or(own).to_string()
            }
            None => e.to_string().lines().next().unwrap_or_default().to_string(),
        };
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// A config file read with the right key that does not decrypt or parse.
/// `RusticError` keeps its kind private, so its text tells: rustic_core
/// names the file it processed (`Config:…`) and the kind of the failure.
fn is_damaged_config(err: &RusticError, detail: &str) -> bool {
    let log = err.display_log();
    let about_config = detail.contains("Config") || log.contains("Config");
    let unreadable = ["cryptographic", "decrypt", "deserializ", "parsing", "JSON"]
        .iter()
        .any(|w| detail.contains(w) || log.contains(w));
    about_config && unreadable
}

fn is_no_space(err: &io::Error) -> bool {
    // EDQUOT counts too: for the user a quota is a full disk.
    err.kind() == io::ErrorKind::StorageFull
        || err.kind() == io::ErrorKind::QuotaExceeded
        || err.raw_os_error() == Some(28)
}

/// `rustic_core` wraps I/O errors (sometimes twice); a full disk is
/// recognised by walking the source chain.
fn chain_has_no_space(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if is_no_space(io) {
                return true;
            }
        }
        current = e.source();
    }
    // Some paths flatten the I/O error into text only.
    let text = err.to_string();
    text.contains("No space left on device") || text.contains("Disk quota exceeded")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_core::ErrorKind;

    #[test]
    fn no_space_is_found_in_the_source_chain() {
        let io = io::Error::from_raw_os_error(28);
        let err = RusticError::with_source(ErrorKind::InputOutput, "writing pack", io);
        let mapped = RepoError::from_rustic("/r", &err);
        assert!(matches!(mapped, RepoError::NoSpace { .. }), "{mapped:?}");
        assert!(mapped.is_retryable());
    }

    #[test]
    fn described_errors_are_one_line_with_their_causes() {
        let inner = RusticError::with_source(ErrorKind::Cryptography, "MAC check failed", io::Error::other("aead"));
        // `inner` is a `Box<RusticError>`, passed on as rustic_core does.
        let outer = RusticError::with_source(ErrorKind::Cryptography, "reading pack {id}", inner)
            .attach_context("id", "73540f5b");
        let text = describe(&*outer);
        assert!(!text.contains('\n'), "{text}");
        assert!(text.starts_with("reading pack 73540f5b"), "{text}");
        assert!(text.contains("MAC check failed"), "{text}");
        assert!(text.ends_with("aead"), "{text}");
    }

    #[test]
    fn messages_are_lowercase_and_say_what_to_do() {
        let errors = [
            RepoError::NotFound { location: "/r".into() },
            RepoError::WrongPassword { location: "/r".into() },
            RepoError::SnapshotNotFound { id: "ab".into() },
            RepoError::Ambiguous { id: "a".into() },
            RepoError::Corrupt { snapshot: Some("ab".into()), detail: "x".into() },
            RepoError::NoSpace { detail: "x".into() },
        ];
        for err in errors {
            let text = err.to_string();
            assert!(text.chars().next().unwrap().is_lowercase(), "{text}");
            assert!(text.contains(';'), "no advice in {text}");
        }
        let corrupt = RepoError::Corrupt { snapshot: Some("abc".into()), detail: "x".into() };
        assert!(corrupt.to_string().contains("snapshot abc"));
        assert!(!corrupt.is_retryable());
    }
}
