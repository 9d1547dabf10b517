//! Backups beyond stop snapshots: quiesce hooks for consistent snapshots of
//! running tasks, and replica repositories for disaster recovery. The
//! rules (when a snapshot is due, what retention forgets, how far a
//! replica lags) are core's (`berth_core::backup`); the platform's backup
//! loop (`platform::backup`) puts them to work.

pub mod hook;
pub mod replicas;

pub use hook::{Hook, HookError, HookTarget};
pub use replicas::{replicate, Replicas};
