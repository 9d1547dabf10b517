//! The state folder: where berth keeps everything it owns on one machine.
//!
//! ```text
//! <state>/repository/      the default snapshot repository (restic format)
//! <state>/repository.key   its generated password, if none was given (0600)
//! <state>/volumes/<id>/    one folder per volume
//! <state>/volumes/<id>.json   the volume's record (claim, generation, seal)
//! <state>/ledger.sqlite    the ledger of `berth up`
//! <state>/logs/<task>.log  each task's output
//! <state>/admin.json       how the CLI reaches a running `berth up`
//! <state>/admin.token      the admin API's bearer token (0600)
//! <state>/up.lock          held by the running `berth up`
//! ```
//! The location is `--state`, else `BERTH_STATE`, else `./.berth`: one
//! folder per deployment, as `berth up` and the snapshot commands share it.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn repository(&self) -> PathBuf {
        self.root.join("repository")
    }

    pub fn key_file(&self) -> PathBuf {
        self.root.join("repository.key")
    }

    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    pub fn ledger(&self) -> PathBuf {
        self.root.join("ledger.sqlite")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The process groups of running tasks (see `supervisor::leftovers`).
    pub fn task_groups(&self) -> PathBuf {
        self.root.join("task-groups")
    }

    pub fn admin(&self) -> PathBuf {
        self.root.join("admin.json")
    }

    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin.token")
    }

    pub fn lock(&self) -> PathBuf {
        self.root.join("up.lock")
    }

    /// Creates the folders that must exist, and makes the state folder
    /// private (0700): it holds every claim's data, the ledger and the
    /// logs, which no other user of the machine may read (issue 20,
    /// defect 2). A folder made by an older berth is made private too.
    pub fn ensure(&self) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(self.volumes())?;
        let mode = std::fs::metadata(&self.root)?.permissions().mode() & 0o777;
        if mode != 0o700 {
            std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
}
