//! Repositories in S3 (or an S3-compatible store such as MinIO or moto):
//! the off-machine copy `berth snapshot copy --to s3://…` writes for
//! disaster recovery.
//!
//! The location is `s3://BUCKET/PREFIX?endpoint=URL&region=REGION`; both
//! query parameters are optional on AWS itself. Credentials come from the
//! environment as for any AWS tool (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `~/.aws/config`), read by
//! opendal's s3 service; they never appear in the location.
//!
//! Objects are laid out exactly as restic lays out files (`config`,
//! `keys/ID`, `snapshots/ID`, `index/ID`, `data/XX/ID`) under the prefix,
//! so `restic -r s3:ENDPOINT/BUCKET/PREFIX` reads the same repository.
//! This is a backend of our own on opendal's s3 service only, because
//! `rustic_backend`'s `opendal` feature compiles every opendal service.

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use bytes::Bytes;
use opendal::{blocking, layers::RetryLayer, options::ListOptions, options::ReadOptions, services::S3};
use rustic_core::{BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend};
use tokio::runtime::Runtime;

use crate::error::RepoError;

/// Query parameters an S3 location may have.
const QUERY_KEYS: &[&str] = &["endpoint", "region"];

/// Region used with an explicit endpoint when none is given: S3-compatible
/// stores (MinIO, moto, Ceph) accept any region, but signing needs one.
const DEFAULT_REGION: &str = "us-east-1";

/// Retries of one request. S3 answers 500/503 (SlowDown) now and then by
/// design; a copy of many packs would otherwise fail on the first one.
const RETRIES: usize = 5;

/// A parsed `s3://` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Url {
    pub(crate) bucket: String,
    /// Object key prefix without leading or trailing `/`; empty for the
    /// bucket's root.
    pub(crate) prefix: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) region: Option<String>,
}

impl S3Url {
    /// Parses `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]`.
    pub(crate) fn parse(location: &str) -> Result<Self, RepoError> {
        let bad = |why: &str| {
            RepoError::invalid(format!(
                "{location} is not a valid S3 location ({why}); \
                 write s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=REGION"
            ))
        };
        let rest = location.strip_prefix("s3://").ok_or_else(|| bad("it must start with s3://"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
        if !bucket_ok {
            return Err(bad(&format!(
                "bucket name {bucket:?} must be 3 to 63 lowercase letters, digits, '.', '-' or '_'"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == "." || part == "..") || prefix.contains("//") {
            return Err(bad(&format!("prefix {prefix:?} has an empty, '.' or '..' part")));
        }

        let (mut endpoint, mut region) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| bad(&format!("{pair:?} has no '='")))?;
            let slot = match key {
                "endpoint" => &mut endpoint,
                "region" => &mut region,
                _ => return Err(bad(&format!("unknown parameter {key:?}; known: {}", QUERY_KEYS.join(", ")))),
            };
            if value.is_empty() {
                return Err(bad(&format!("{key} is empty")));
            }
            if slot.replace(value.to_string()).is_some() {
                return Err(bad(&format!("{key} is given twice")));
            }
        }
        if let Some(ep) = &endpoint {
            let host = ep.strip_prefix("http://").or_else(|| ep.strip_prefix("https://"));
            if host.is_none_or(|h| h.trim_end_matches('/').is_empty()) {
                return Err(bad(&format!("endpoint {ep:?} must be an http:// or https:// URL")));
            }
        }
        Ok(Self { bucket: bucket.to_string(), prefix: prefix.to_string(), endpoint, region })
    }
}

/// A restic-format repository in an S3 bucket, for `rustic_core`.
#[derive(Clone)]
pub(crate) struct S3Backend {
    op: blocking::Operator,
    /// `s3:BUCKET/PREFIX`, for rustic's messages.
    name: String,
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The runtime opendal's blocking calls run on. One per process: building
/// a runtime per repository handle would start threads for every command.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("berth-s3")
            .enable_all()
            .build()
            .expect("cannot start the S3 I/O runtime (threads exhausted?)")
    })
}

impl S3Backend {
    /// Connects to the bucket and checks that it answers, so a wrong
    /// endpoint, credentials or bucket name is reported as such here rather
    /// than as a failed read deep inside an operation.
    pub(crate) fn open(url: &S3Url, location: &str) -> Result<Self, RepoError> {
        // opendal is built without its auto-registration, so its HTTP
        // client is installed by hand (idempotent).
        opendal::install_default();

        let mut builder = S3::default().bucket(&url.bucket).root(&format!("/{}", url.prefix));
        match &url.endpoint {
            Some(endpoint) => {
                // S3-compatible stores need path-style addressing (moto and
                // MinIO have no wildcard DNS), and EC2 instance credentials
                // are for AWS only: asking 169.254.169.254 for them would
                // just wait for a timeout off EC2.
                builder = builder
                    .endpoint(endpoint)
                    .region(url.region.as_deref().unwrap_or(DEFAULT_REGION))
                    .disable_ec2_metadata();
            }
            None => {
                // AWS proper: virtual-hosted style, which new buckets need.
                builder = builder.enable_virtual_host_style();
                if let Some(region) = &url.region {
                    builder = builder.region(region);
                }
            }
        }
        let op = opendal::Operator::new(builder).map_err(|err| {
            let hint = if err.message().contains("region") {
                "; give region=REGION in the location or set AWS_REGION"
            } else {
                ""
            };
            RepoError::invalid(format!("cannot use {location}: {}{hint}", brief(&err)))
        })?;

        let _guard = runtime().enter();
        // The probe runs without retries: an endpoint that refuses the
        // connection should fail at once, not after the retry back-off.
        let probe = blocking::Operator::new(op.clone()).map_err(|err| other(location, &err))?;
        probe.check().map_err(|err| classify(location, &url.bucket, &err))?;

        let op = blocking::Operator::new(op.layer(RetryLayer::new().with_max_times(RETRIES).with_jitter()))
            .map_err(|err| other(location, &err))?;
        Ok(Self { op, name: format!("s3:{}/{}", url.bucket, url.prefix) })
    }

    /// The key of a repository file, relative to the prefix.
    fn path(tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => "config".to_string(),
            // Packs are spread over 256 folders as restic does; S3 does not
            // need it, but restic looks for them there.
            FileType::Pack => format!("data/{}/{}", &hex[..2], &*hex),
            _ => format!("{}/{}", tpe.dirname(), &*hex),
        }
    }

    fn error(&self, what: &str, path: &str, err: opendal::Error) -> Box<RusticError> {
        RusticError::with_source(ErrorKind::Backend, "{what} {path} in {repo} failed", err)
            .attach_context("what", what)
            .attach_context("path", path)
            .attach_context("repo", self.name.clone())
    }
}

fn other(location: &str, err: &opendal::Error) -> RepoError {
    RepoError::Other { detail: format!("{location}: {err}") }
}

/// Turns the probe's failure into the error the user can act on.
fn classify(location: &str, bucket: &str, err: &opendal::Error) -> RepoError {
    let location = location.to_string();
    if err.message().contains("NoSuchBucket") {
        return RepoError::BucketNotFound { location, bucket: bucket.to_string() };
    }
    let detail = brief(err);
    match err.kind() {
        opendal::ErrorKind::PermissionDenied => RepoError::AccessDenied { location, detail },
        // Missing credentials surface as a failure to sign the request.
        _ if detail.contains("signing credential") => {
            RepoError::AccessDenied { location, detail: "no AWS credentials found in the environment".to_string() }
        }
        opendal::ErrorKind::ConfigInvalid => RepoError::invalid(format!("cannot use {location}: {detail}")),
        _ => RepoError::Unreachable { location, detail },
    }
}

/// The gist of an opendal error: S3's own code and message when the server
/// answered, else the message and its causes, without the request context
/// (URL, headers) opendal's `Display` adds.
fn brief(err: &opendal::Error) -> String {
    let msg = err.message();
    if let (Some(code), Some(text)) = (quoted_field(msg, "code"), quoted_field(msg, "message")) {
        return format!("{code}: {text}");
    }
    let mut out = msg.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        source = cause.source();
    }
    out
}

/// The value of `name: "…"` in a Debug-printed struct.
fn quoted_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("{name}: \""))? + name.len() + 3;
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

impl ReadBackend for S3Backend {
    fn location(&self) -> String {
        self.name.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            return match self.op.stat("config") {
                Ok(meta) => Ok(vec![(Id::default(), size_u32(meta.content_length(), "config")?)]),
                Err(err) if err.kind() == opendal::ErrorKind::NotFound => Ok(Vec::new()),
                Err(err) => Err(self.error("reading", "config", err)),
            };
        }
        let dir = format!("{}/", tpe.dirname());
        let entries = self
            .op
            .lister_options(&dir, ListOptions { recursive: true, ..Default::default() })
            .map_err(|err| self.error("listing", &dir, err))?;
        let mut found = Vec::new();
        for entry in entries {
            // A failed page is an error, not a shorter list: a missing index
            // or pack would make check and prune draw wrong conclusions.
            let entry = entry.map_err(|err| self.error("listing", &dir, err))?;
            if !entry.metadata().is_file() {
                continue;
            }
            // Objects that are not named by an id (restic's own leftovers,
            // folder markers) are not repository files.
            let Some(id) = Id::parse_some(entry.name(), tpe) else { continue };
            found.push((id, size_u32(entry.metadata().content_length(), entry.path())?));
        }
        Ok(found)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = Self::path(tpe, id);
        self.op.read(&path).map(|buf| buf.to_bytes()).map_err(|err| self.error("reading", &path, err))
    }

    fn read_partial(&self, tpe: FileType, id: &Id, _cacheable: bool, offset: u32, length: u32) -> RusticResult<Bytes> {
        let path = Self::path(tpe, id);
        let start = u64::from(offset);
        let range = (start..start + u64::from(length)).into();
        self.op
            .read_options(&path, ReadOptions { range, ..Default::default() })
            .map(|buf| buf.to_bytes())
            .map_err(|err| self.error("reading part of", &path, err))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        Self::path(tpe, id)
    }
}

impl WriteBackend for S3Backend {
    // S3 has no folders, so there is nothing to create; the bucket itself
    // exists (the probe in `open` saw it).
    fn create(&self) -> RusticResult<()> {
        Ok(())
    }

    fn write_bytes(&self, tpe: FileType, id: &Id, _cacheable: bool, content: BytesList) -> RusticResult<()> {
        let path = Self::path(tpe, id);
        // A PUT is atomic: readers see the whole object or none, so there
        // is no temporary name to rename as on a local disk.
        self.op.write(&path, content.into_vec()).map(drop).map_err(|err| self.error("writing", &path, err))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = Self::path(tpe, id);
        self.op.delete(&path).map_err(|err| self.error("deleting", &path, err))
    }
}

/// Repository files are at most a pack's size; rustic counts in `u32`.
fn size_u32(len: u64, path: &str) -> RusticResult<u32> {
    u32::try_from(len).map_err(|err| {
        RusticError::with_source(ErrorKind::Backend, "{path} is {len} bytes, too large for a repository file", err)
            .attach_context("path", path)
            .attach_context("len", len.to_string())
    })
}

/// The backend as `rustic_core` takes it.
pub(crate) fn backend(url: &S3Url, location: &str) -> Result<Arc<dyn WriteBackend>, RepoError> {
    Ok(Arc::new(S3Backend::open(url, location)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_bucket_prefix_endpoint_and_region() {
        let url = S3Url::parse("s3://dr-bucket/berth/prod/?endpoint=http://127.0.0.1:9000&region=eu-west-1").unwrap();
        assert_eq!(url.bucket, "dr-bucket");
        assert_eq!(url.prefix, "berth/prod");
        assert_eq!(url.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(url.region.as_deref(), Some("eu-west-1"));

        let bare = S3Url::parse("s3://dr-bucket").unwrap();
        assert_eq!((bare.prefix.as_str(), bare.endpoint, bare.region), ("", None, None));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, why) in [
            ("s3://", "bucket name"),
            ("s3://Upper/x", "bucket name"),
            ("s3://bkt/x?endpoint=127.0.0.1:9000", "http:// or https://"),
            ("s3://bkt/x?token=abc", "unknown parameter"),
            ("s3://bkt/x?region=a&region=b", "given twice"),
            ("s3://bkt/x?region=", "is empty"),
            ("s3://bkt/a/../b", "'..'"),
        ] {
            let err = S3Url::parse(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
            assert!(err.contains("s3://BUCKET/PREFIX"), "{url}: {err}");
        }
    }

    #[test]
    fn s3_error_bodies_are_shortened_to_code_and_message() {
        let err = opendal::Error::new(
            opendal::ErrorKind::PermissionDenied,
            r#"S3Error { code: "InvalidAccessKeyId", message: "The key does not exist.", resource: "" }"#,
        )
        .with_context("response", "Parts { status: 403, headers: {} }");
        assert_eq!(brief(&err), "InvalidAccessKeyId: The key does not exist.");
        let refused = opendal::Error::new(opendal::ErrorKind::Unexpected, "send http request")
            .set_source(std::io::Error::other("connection refused"));
        assert_eq!(brief(&refused), "send http request: connection refused");
    }

    #[test]
    fn files_are_where_restic_puts_them() {
        let id: Id = "3f2a000000000000000000000000000000000000000000000000000000000001".parse().unwrap();
        assert_eq!(S3Backend::path(FileType::Config, &id), "config");
        assert_eq!(S3Backend::path(FileType::Pack, &id), format!("data/3f/{}", &*id.to_hex()));
        assert_eq!(S3Backend::path(FileType::Snapshot, &id), format!("snapshots/{}", &*id.to_hex()));
        assert_eq!(S3Backend::path(FileType::Key, &id), format!("keys/{}", &*id.to_hex()));
        assert_eq!(S3Backend::path(FileType::Index, &id), format!("index/{}", &*id.to_hex()));
    }
}
