//! End-to-end tests of the `berth` binary: real processes, real HTTP on
//! loopback, real files. One test binary; `util` has the setup helpers.

mod util;

mod admin_client;
mod backup;
mod console;
mod containers;
mod cost;
#[path = "../../../berth-local/tests/support/engine.rs"]
mod engine;
mod lambda;
mod ledger;
mod serve_api;
mod serve_cluster;
mod serve_lifecycle;
mod serve_safety;
mod site;
mod snapshot;
mod sweep;
mod up;
mod up_platform;
