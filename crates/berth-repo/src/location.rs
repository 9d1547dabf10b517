//! Where a repository lives, parsed from the string the user gives.
//!
//! A location is a plain folder path (optionally `local:PATH`). Other
//! backends are not built into this crate (`rustic_backend` is compiled
//! without features), so their URLs get an error that says so instead of
//! being taken for a folder whose name has a colon in it.

use std::{path::PathBuf, sync::Arc};

use rustic_backend::LocalBackend;
use rustic_core::{RepositoryBackends, WriteBackend};

use crate::error::RepoError;

/// A parsed repository location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A folder on this machine, made absolute so a later change of the
    /// working directory cannot move the repository.
    Local(PathBuf),
}

/// URL schemes of backends other tools know; named so the error is clear.
const REMOTE_SCHEMES: &[&str] = &["rest", "rclone", "sftp", "b2", "azure", "gs", "swift", "opendal"];

impl Location {
    pub(crate) fn parse(location: &str) -> Result<Self, RepoError> {
        let unsupported =
            |reason: &str| RepoError::Unsupported { location: location.to_string(), reason: reason.to_string() };
        if location.trim().is_empty() {
            return Err(RepoError::invalid("the repository location is empty"));
        }
        if location.starts_with("s3:") {
            return Err(unsupported("S3 repositories need the s3 feature; not built"));
        }
        if let Some((scheme, _)) = location.split_once(':') {
            if REMOTE_SCHEMES.contains(&scheme) || location.contains("://") {
                return Err(unsupported(&format!(
                    "{scheme} repositories are not supported by this build; use a local folder"
                )));
            }
        }
        let path = location.strip_prefix("local:").unwrap_or(location);
        let path = std::path::absolute(path).map_err(|err| RepoError::io("resolve repository path", path, err))?;
        Ok(Self::Local(path))
    }

    /// The backends `rustic_core` opens the repository on.
    pub(crate) fn backends(&self) -> Result<RepositoryBackends, RepoError> {
        match self {
            Self::Local(path) => {
                let path_str = path.to_str().ok_or_else(|| {
                    RepoError::invalid(format!("repository path {} is not valid UTF-8", path.display()))
                })?;
                let be = LocalBackend::new(path_str, std::iter::empty())
                    .map_err(|err| RepoError::from_rustic(path_str, &err))?;
                let be: Arc<dyn WriteBackend> = Arc::new(be);
                Ok(RepositoryBackends::new(be, None))
            }
        }
    }

    /// The folder of a local repository.
    pub(crate) fn local_path(&self) -> &PathBuf {
        match self {
            Self::Local(path) => path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_local_paths_are_folders() {
        assert_eq!(Location::parse("/srv/repo").unwrap(), Location::Local("/srv/repo".into()));
        assert_eq!(Location::parse("local:/srv/repo").unwrap(), Location::Local("/srv/repo".into()));
        // A colon inside a folder name is not a scheme.
        assert_eq!(Location::parse("/srv/a:b").unwrap(), Location::Local("/srv/a:b".into()));
        let relative = Location::parse("repo").unwrap();
        assert!(relative.local_path().is_absolute());
    }

    #[test]
    fn s3_needs_the_s3_feature() {
        for url in ["s3://bucket/x", "s3:https://host/bucket"] {
            let err = Location::parse(url).unwrap_err();
            assert!(err.to_string().contains("S3 repositories need the s3 feature; not built"), "{err}");
        }
        let err = Location::parse("sftp:host:/x").unwrap_err();
        assert!(matches!(err, RepoError::Unsupported { .. }), "{err}");
    }
}
