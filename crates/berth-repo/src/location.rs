//! Where a repository lives, parsed from the string the user gives.
//!
//! A location is a plain folder path (optionally `local:PATH`) or, with the
//! `s3` feature, an `s3://BUCKET/PREFIX?endpoint=…&region=…` URL (see
//! [`crate::s3`]). Other backends are not built into this crate
//! (`rustic_backend` is compiled without features), so their URLs get an
//! error that says so instead of being taken for a folder whose name has a
//! colon in it.

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
    /// A prefix in an S3 bucket.
    #[cfg(feature = "s3")]
    S3(crate::s3::S3Url),
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
        #[cfg(feature = "s3")]
        if location.starts_with("s3://") {
            return Ok(Self::S3(crate::s3::S3Url::parse(location)?));
        }
        if location.starts_with("s3:") {
            return Err(if cfg!(feature = "s3") {
                // restic's `s3:HOST/BUCKET` form: the host cannot be told
                // from the bucket reliably, so ask for the explicit form.
                unsupported("write S3 locations as s3://BUCKET/PREFIX?endpoint=https://HOST")
            } else {
                unsupported("S3 repositories need the s3 feature; not built")
            });
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
    /// `name` is the location as the user gave it, for messages.
    #[cfg_attr(not(feature = "s3"), allow(unused_variables))]
    pub(crate) fn backends(&self, name: &str) -> Result<RepositoryBackends, RepoError> {
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
            #[cfg(feature = "s3")]
            Self::S3(url) => Ok(RepositoryBackends::new(crate::s3::backend(url, name)?, None)),
        }
    }

    /// The folder of a local repository; `None` for remote ones.
    pub(crate) fn local_path(&self) -> Option<&PathBuf> {
        match self {
            Self::Local(path) => Some(path),
            #[cfg(feature = "s3")]
            Self::S3(_) => None,
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
        assert!(relative.local_path().unwrap().is_absolute());
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_urls_are_s3_locations() {
        let loc = Location::parse("s3://bkt/berth?endpoint=http://127.0.0.1:9000").unwrap();
        assert!(matches!(&loc, Location::S3(url) if url.bucket == "bkt" && url.prefix == "berth"), "{loc:?}");
        assert!(loc.local_path().is_none());
        let err = Location::parse("s3:https://host/bucket").unwrap_err();
        assert!(err.to_string().contains("s3://BUCKET/PREFIX"), "{err}");
        let err = Location::parse("s3://Bad_Bucket").unwrap_err();
        assert!(matches!(err, RepoError::InvalidInput { .. }), "{err}");
    }

    #[cfg(not(feature = "s3"))]
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
