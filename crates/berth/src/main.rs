//! The `berth` command: parses arguments, sets up logging, runs one command,
//! and maps its outcome to an exit code. Each command lives in `cmd/`.

mod cmd;
mod logging;
mod malloc;
mod output;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Persistent volumes for ephemeral container tasks.
///
/// berth gives each task a dedicated volume and, whenever the task stops,
/// snapshots it and starts a replacement restored from the snapshot.
#[derive(Debug, Parser)]
#[command(name = "berth", version, propagate_version = true)]
struct Cli {
    /// Log format: `auto` is JSON when stderr is not a terminal, text otherwise.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = logging::Format::Auto,
        env = "BERTH_LOG_FORMAT",
        help_heading = "Output"
    )]
    log_format: logging::Format,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP file service on a volume (the task's workload).
    Serve(cmd::serve::Args),
    /// Create, list, restore, forget, prune, check and copy snapshots.
    Snapshot(cmd::snapshot::Args),
    /// Create, list, snapshot and delete local volumes.
    Volume(cmd::volume::Args),
    /// Run the platform on this machine: tasks with persistent volumes,
    /// snapshots, the controller, the HTTPS load balancer, auto scaling,
    /// rolling deployments and the admin API.
    Up(cmd::up::Args),
    /// Stop a running `berth up`, snapshotting every task, and wait until it has exited.
    Down(cmd::down::Args),
    /// List the tasks of a running `berth up`.
    Ps(cmd::ps::Args),
    /// Print a one-time login URL for the web console of a running `berth up`.
    Console(cmd::console::Args),
    /// List the claims of a running `berth up`.
    Claims(cmd::claims::ListArgs),
    /// Inspect one claim of a running `berth up`.
    Claim(cmd::claims::ClaimArgs),
    /// Print the event log of a running `berth up`.
    Events(cmd::events::Args),
    /// Stop one task, simulating a Spot interruption, failed health checks or a user stop.
    StopTask(cmd::stop_task::Args),
    /// Set the desired count of a service.
    Scale(cmd::scale::Args),
    /// Roll a service onto a new task definition, one claim at a time (rolls back on failure).
    Deploy(cmd::deploy::Args),
    /// Bring a claim back to an earlier snapshot (point-in-time recovery, from a replica too).
    Restore(cmd::claim_restore::Args),
    /// Start a new claim from a point in time of another, leaving the original running.
    Fork(cmd::fork::Args),
    /// Scheduled backups: their state per claim, a backup now, a restore verification.
    Backup(cmd::backup::Args),
    /// Disaster-recovery drills (measured RTO and RPO) and their report.
    Dr(cmd::dr::Args),
    /// Report claims whose backups, replicas or restore verifications need attention; exits 1 if any.
    Doctor(cmd::doctor::Args),
    /// Check the ledger against the volumes and snapshots, or rebuild a lost one from them (no `berth up` running).
    Ledger(cmd::ledger::Args),
    /// Show what the sweep deletes and keeps (orphaned volumes, snapshots of deleted claims), and delete it now.
    Sweep(cmd::sweep::Args),
    /// Print the output of a task (read from the state folder).
    Logs(cmd::logs::Args),
    /// What a deployment on AWS costs a month (the blog's estimate, recomputed from a dated price table).
    Cost(cmd::cost::Args),
    /// The AWS controller Lambda: `decide` replays one event offline.
    Lambda(cmd::lambda::Args),
    /// Commands that call AWS (`cleanup`), run by the `berth-aws` binary.
    Aws(cmd::aws::Args),
}

fn main() -> ExitCode {
    malloc::tune();
    let cli = Cli::parse();
    let level = match cli.command {
        Command::Serve(_) | Command::Up(_) => "info",
        _ => "warn",
    };
    logging::init(cli.log_format, level);
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Snapshot(args) => cmd::snapshot::run(args),
        Command::Volume(args) => cmd::volume::run(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Down(args) => cmd::down::run(args),
        Command::Console(args) => cmd::console::run(args),
        Command::Ps(args) => cmd::ps::run(args),
        Command::Claims(args) => cmd::claims::list(args),
        Command::Claim(args) => cmd::claims::run(args),
        Command::Events(args) => cmd::events::run(args),
        Command::StopTask(args) => cmd::stop_task::run(args),
        Command::Scale(args) => cmd::scale::run(args),
        Command::Deploy(args) => cmd::deploy::run(args),
        Command::Restore(args) => cmd::claim_restore::run(args),
        Command::Backup(args) => cmd::backup::run(args),
        Command::Fork(args) => cmd::fork::run(args),
        Command::Dr(args) => cmd::dr::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Ledger(args) => cmd::ledger::run(args),
        Command::Sweep(args) => cmd::sweep::run(args),
        Command::Logs(args) => cmd::logs::run(args),
        Command::Cost(args) => cmd::cost::run(args),
        Command::Lambda(args) => cmd::lambda::run(args),
        Command::Aws(args) => cmd::aws::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("berth: error: {}", output::error_line(&err));
            ExitCode::FAILURE
        }
    }
}
