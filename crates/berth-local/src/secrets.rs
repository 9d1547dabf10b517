//! The repository password: from `BERTH_PASSWORD`, from the file named by
//! `BERTH_PASSWORD_FILE` (as restic's `RESTIC_PASSWORD` and
//! `RESTIC_PASSWORD_FILE`), or from a key file in the state folder that berth
//! generates on first use. Never from a command-line argument, which `ps`
//! would show to every user of the machine.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::state::StateDir;

/// Where a password came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    Env,
    File(PathBuf),
    KeyFile(PathBuf),
    /// A new key file was generated.
    NewKeyFile(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the password file {path}: {source}; check BERTH_PASSWORD_FILE")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the password is empty; set BERTH_PASSWORD or fill {0}")]
    Empty(String),
    #[error(
        "the repository {repository} exists, but its key file {key} is missing: put the key file back, or set \
         BERTH_PASSWORD or BERTH_PASSWORD_FILE to the repository's password (no new key is made for a repository \
         that exists: it could not open it)"
    )]
    MissingKey { key: PathBuf, repository: PathBuf },
    #[error("cannot create the key file {path}: {source}")]
    CreateKey {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Finds the password: `env` is the value of `BERTH_PASSWORD`, `file` that of
/// `BERTH_PASSWORD_FILE`. With neither, the state folder's key file is read,
/// or created when `create` is set (a new repository) — with a random 256-bit
/// password, written to a temporary file and linked into place so a crash
/// never leaves a half-written key.
pub fn resolve_password(
    env: Option<String>,
    file: Option<PathBuf>,
    state: &StateDir,
    create: bool,
) -> Result<(String, PasswordSource), SecretError> {
    if let Some(p) = env {
        return non_empty(p, "BERTH_PASSWORD").map(|p| (p, PasswordSource::Env));
    }
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(&path).map_err(|source| SecretError::ReadFile { path: path.clone(), source })?;
        let p = non_empty(first_line(&text), &path.display().to_string())?;
        return Ok((p, PasswordSource::File(path)));
    }
    let key = state.key_file();
    match std::fs::read_to_string(&key) {
        Ok(text) => {
            let p = non_empty(first_line(&text), &key.display().to_string())?;
            Ok((p, PasswordSource::KeyFile(key)))
        }
        // A new key for a repository that exists would lock the repository
        // away behind a password it was never made with (issue 20, defect 5).
        Err(e) if e.kind() == io::ErrorKind::NotFound && state.repository().join("config").exists() => {
            Err(SecretError::MissingKey { key, repository: state.repository() })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
            let password = generate();
            write_key(&key, &password).map_err(|source| SecretError::CreateKey { path: key.clone(), source })?;
            Ok((password, PasswordSource::NewKeyFile(key)))
        }
        Err(source) => Err(SecretError::ReadFile { path: key, source }),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_owned()
}

fn non_empty(p: String, what: &str) -> Result<String, SecretError> {
    if p.is_empty() {
        Err(SecretError::Empty(what.to_owned()))
    } else {
        Ok(p)
    }
}

fn generate() -> String {
    let mut bytes = [0u8; 32];
    getrandom_fill(&mut bytes);
    hex::encode(bytes)
}

/// 32 bytes from the kernel's CSPRNG.
fn getrandom_fill(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf)).expect("/dev/urandom is readable");
}

fn write_key(path: &Path, password: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(".repository.key.{:016x}", fastrand::u64(..)));
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
    f.write_all(password.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    // hard_link fails if another process created the key meanwhile: then its
    // key wins and ours is discarded, so both use one password.
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why a task's secret cannot be had. The message names where the secret
/// comes from, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretSourceError {
    #[error(
        "{0:?} is not a place berth up reads a secret from: use env:NAME (a variable of berth up's \
         environment) or file:/absolute/path"
    )]
    Unknown(String),
    #[error("variable {0} is not set for berth up")]
    Unset(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Checks a secret's `valueFrom` as `berth up` reads it: `env:NAME` or
/// `file:PATH` (an absolute path).
pub fn check_value_from(value_from: &str) -> Result<(), SecretSourceError> {
    match value_from.split_once(':') {
        Some(("env", name)) if !name.is_empty() && !name.contains('=') => Ok(()),
        Some(("file", path)) if Path::new(path).is_absolute() => Ok(()),
        _ => Err(SecretSourceError::Unknown(value_from.to_owned())),
    }
}

/// Reads a secret from its `valueFrom` at a task's launch: the variable
/// of this process's environment, or the file's first line.
pub fn read_secret(value_from: &str) -> Result<String, SecretSourceError> {
    check_value_from(value_from)?;
    match value_from.split_once(':') {
        Some(("env", name)) => std::env::var(name).map_err(|_| SecretSourceError::Unset(name.to_owned())),
        Some(("file", path)) => std::fs::read_to_string(path)
            .map(|text| first_line(&text))
            .map_err(|source| SecretSourceError::Read { path: path.to_owned(), source }),
        _ => unreachable!("checked above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn order_env_file_keyfile() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let pw_file = dir.path().join("pw");
        std::fs::write(&pw_file, "from-file\nignored").unwrap();
        let (p, src) = resolve_password(Some("from-env".into()), Some(pw_file.clone()), &state, true).unwrap();
        assert_eq!((p.as_str(), src), ("from-env", PasswordSource::Env));
        let (p, _) = resolve_password(None, Some(pw_file), &state, true).unwrap();
        assert_eq!(p, "from-file");
        assert!(resolve_password(None, None, &state, false).is_err(), "no key file and create=false");
        let (p1, src) = resolve_password(None, None, &state, true).unwrap();
        assert!(matches!(src, PasswordSource::NewKeyFile(_)));
        assert_eq!(p1.len(), 64);
        let mode = std::fs::metadata(state.key_file()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (p2, src) = resolve_password(None, None, &state, true).unwrap();
        assert_eq!(p1, p2);
        assert!(matches!(src, PasswordSource::KeyFile(_)));
        assert!(matches!(resolve_password(Some(String::new()), None, &state, true), Err(SecretError::Empty(_))));
    }

    /// Issue 20, defect 5: `rm repository.key; berth up` wrote a new random
    /// key beside the existing repository, and every command after it
    /// failed with "wrong password".
    #[test]
    fn a_missing_key_file_of_an_existing_repository_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        std::fs::create_dir_all(state.repository()).unwrap();
        std::fs::write(state.repository().join("config"), b"a repository's config").unwrap();
        for create in [true, false] {
            let err = resolve_password(None, None, &state, create).unwrap_err();
            assert!(matches!(err, SecretError::MissingKey { .. }), "{err}");
            let line = err.to_string();
            assert!(line.contains("repository.key") && line.contains("BERTH_PASSWORD"), "{line}");
        }
        assert!(!state.key_file().exists(), "no key may be written");
        // A password from the environment still opens it.
        assert!(resolve_password(Some("pw".into()), None, &state, true).is_ok());
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file_and_errors_never_show_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\nignored").unwrap();
        assert_eq!(read_secret(&format!("file:{}", file.display())).unwrap(), "s3cret");
        assert_eq!(read_secret("env:PATH").unwrap(), std::env::var("PATH").unwrap());
        let err = read_secret("env:BERTH_NO_SUCH_VARIABLE_X").unwrap_err().to_string();
        assert!(err.contains("BERTH_NO_SUCH_VARIABLE_X"), "{err}");
        for bad in ["s3cret", "file:relative/path", "env:", "vault:x"] {
            assert!(check_value_from(bad).is_err(), "{bad}");
        }
    }
}
