//! The `berth` command: parses arguments, sets up logging, runs one command,
//! and maps its outcome to an exit code. Each command lives in `cmd/`.

mod cmd;
mod logging;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    logging::init(cli.log_format, level);
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Snapshot(args) => cmd::snapshot::run(args),
        Command::Volume(args) => cmd::volume::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("berth: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
