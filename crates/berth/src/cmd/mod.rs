//! One module per `berth` command.

pub mod serve;
