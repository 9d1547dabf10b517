//! berth-local: the adapters of the embedded platform.
//!
//! Locally a *volume* is a folder in the state folder and a *snapshot* is a
//! snapshot in a restic-format repository (through `berth-repo`). This crate
//! lays out the state folder, finds the repository password, and implements
//! core's `Volumes` port on top of both.

pub mod admin;
pub mod backup;
pub mod fingerprint;
pub mod host;
pub mod lb;
pub mod ledger;
pub mod platform;
pub mod records;
pub mod secrets;
pub mod state;
pub mod supervisor;
pub mod usage;
pub mod volumes;

pub use host::HostRuntime;
pub use ledger::SqliteLedger;
pub use records::{snapshot_time, to_record};
pub use secrets::{resolve_password, PasswordSource};
pub use state::StateDir;
pub use supervisor::{LocalRuntime, SupervisorConfig};
pub use volumes::{LocalVolumes, VolumeError};
