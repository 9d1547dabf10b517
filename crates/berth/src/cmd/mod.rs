//! One module per `berth` command.

pub mod repo;
pub mod serve;
pub mod snapshot;
pub mod volume;
