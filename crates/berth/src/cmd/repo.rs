//! Options shared by the commands that use the snapshot repository and the
//! state folder, and opening the repository from them.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_local::{resolve_password, StateDir};
use berth_repo::{Progress, Repo, RepoError};

/// Where the repository is and how to open it.
#[derive(Debug, clap::Args)]
pub struct RepoArgs {
    /// Repository: a folder, or s3://BUCKET/PREFIX?region=…[&endpoint=URL] with AWS_*
    /// credentials from the environment; created on first use. Default: <state>/repository.
    #[arg(long, global = true, env = "BERTH_REPOSITORY", value_name = "LOCATION", help_heading = "Repository")]
    repo: Option<String>,

    /// State folder, shared with `berth up` (its repository and key file are used).
    #[arg(
        long,
        global = true,
        env = "BERTH_STATE",
        default_value = ".berth",
        value_name = "DIR",
        help_heading = "Repository"
    )]
    state: PathBuf,

    /// Print one JSON document instead of a table.
    #[arg(long, global = true, help_heading = "Output")]
    pub json: bool,
}

impl RepoArgs {
    pub fn state(&self) -> Result<StateDir> {
        Ok(StateDir::new(self.state.clone()))
    }

    pub fn location(&self, state: &StateDir) -> String {
        self.repo.clone().unwrap_or_else(|| state.repository().display().to_string())
    }

    pub fn progress(&self) -> Progress {
        if !self.json && std::io::stderr().is_terminal() {
            Progress::Terminal
        } else {
            Progress::Hidden
        }
    }

    /// Opens the repository, creating it (and a key file) when `create` is set.
    pub fn open(&self, create: bool) -> Result<Repo> {
        let location = self.location(&self.state()?);
        (self.opener(create)?)().with_context(|| format!("repository {location}"))
    }

    /// The repository password from `BERTH_PASSWORD`, `BERTH_PASSWORD_FILE`
    /// or the state folder's key file (created when `create` is set).
    pub fn password(state: &StateDir, create: bool) -> Result<String> {
        let (password, _) = resolve_password(
            std::env::var("BERTH_PASSWORD").ok(),
            std::env::var_os("BERTH_PASSWORD_FILE").map(PathBuf::from),
            state,
            create,
        )?;
        Ok(password)
    }

    /// A function that opens the repository when called: the password is
    /// found now, the (slow) key derivation happens only if it is called.
    pub fn opener(&self, create: bool) -> Result<impl Fn() -> Result<Repo, RepoError> + Send + Sync + 'static> {
        let state = self.state()?;
        let location = self.location(&state);
        let password = Self::password(&state, create)?;
        let progress = self.progress();
        Ok(move || {
            if create {
                Repo::open_or_init(&location, &password, progress)
            } else {
                Repo::open(&location, &password, progress)
            }
        })
    }
}
