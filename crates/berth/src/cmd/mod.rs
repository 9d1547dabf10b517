//! One module per `berth` command.

pub mod admin;
pub mod aws;
pub mod backup;
pub mod claim_restore;
pub mod claims;
pub mod console;
pub mod cost;
pub mod deploy;
pub mod doctor;
pub mod down;
pub mod dr;
pub mod events;
pub mod fork;
pub mod lambda;
pub mod ledger;
pub mod logs;
pub mod ps;
pub mod repo;
pub mod scale;
pub mod serve;
pub mod snapshot;
pub mod stop_task;
pub mod sweep;
pub mod up;
pub mod volume;
