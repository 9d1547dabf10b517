//! `berth-aws`: the commands that call AWS, kept out of the `berth` CLI so
//! that it does not link the AWS SDK (`berth aws …` runs this binary).
//!
//! `berth-aws cleanup --cluster C [--stack S]` lists what the stack leaves
//! behind; `--delete` removes berth's own orphans; `--verify` exits 1 while
//! anything is left, for a script after `cdk destroy`.
//!
//! `berth-aws ledger get --ledger dynamodb://TABLE[?region=R] PATH` answers
//! a read of the admin API (`/v1/claims`, `/v1/claims/NAME`, `/v1/events?…`)
//! from the DynamoDB ledger, as JSON: `berth claims --ledger …` and the
//! other read-only commands run it and print it as they print berth up's.

use std::process::ExitCode;

use berth_aws::cleanup::{self, Scope};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth-aws", version, about = "berth's commands that call AWS")]
struct Cli {
    /// An AWS endpoint to use instead of AWS's (an emulator on loopback, for tests).
    #[arg(long, env = "BERTH_AWS_ENDPOINT", global = true)]
    endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Print the JSON the admin API would answer for PATH, read from the ledger.
    Get {
        /// dynamodb://TABLE[?region=REGION]
        #[arg(long)]
        ledger: berth_aws::ledger_url::LedgerUrl,
        /// /v1/claims, /v1/claims/NAME or /v1/events[?after=N&claim=NAME&limit=N]
        path: String,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Read the controller's DynamoDB ledger (read only).
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// List the volumes, snapshots and security groups a berth stack leaves
    /// behind, and delete berth's own orphans on request.
    Cleanup {
        /// The ECS cluster's name (the `berth:cluster` tag).
        #[arg(long)]
        cluster: String,
        /// The CloudFormation stack's name, to list its security groups too.
        #[arg(long)]
        stack: Option<String>,
        /// Delete unattached volumes and snapshots berth made (never a
        /// pinned snapshot without --include-pinned). This deletes data.
        #[arg(long)]
        delete: bool,
        /// With --delete, pinned snapshots too.
        #[arg(long, requires = "delete")]
        include_pinned: bool,
        /// Exit 1 while anything is left (after --delete: anything it could not remove).
        #[arg(long)]
        verify: bool,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Exit status of a read that found nothing at its path (a 404's).
const NOT_FOUND: u8 = 3;

async fn ledger_get(endpoint: Option<&str>, ledger: &berth_aws::ledger_url::LedgerUrl, path: &str) -> ExitCode {
    use berth_core::ledger::read::{self, ReadError};
    let config = berth_aws::sdk_config_in(endpoint, ledger.region.as_deref()).await;
    let store = berth_aws::DynamoLedger::new(aws_sdk_dynamodb::Client::new(&config), &ledger.table);
    match read::get(&store, path).await {
        Ok(json) => {
            println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-aws ledger get: {e}");
            match e {
                ReadError::NoClaim(_) | ReadError::NoView(_) => ExitCode::from(NOT_FOUND),
                _ => ExitCode::from(2),
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ledger(LedgerCommand::Get { ledger, path }) => {
            ledger_get(cli.endpoint.as_deref(), &ledger, &path).await
        }
        Command::Cleanup { cluster, stack, delete, include_pinned, verify, json } => {
            let config = berth_aws::sdk_config(cli.endpoint.as_deref()).await;
            let ec2 = aws_sdk_ec2::Client::new(&config);
            let scope = Scope { cluster, stack, include_pinned };
            let run = async {
                let found = cleanup::survey(&ec2, &scope).await?;
                let deleted = if delete { cleanup::delete(&ec2, &found).await? } else { Vec::new() };
                let left = if delete { cleanup::survey(&ec2, &scope).await? } else { found };
                Ok::<_, berth_core::PortError>((deleted, left))
            };
            let (deleted, left) = match run.await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("berth-aws cleanup: {e}");
                    return ExitCode::from(2);
                }
            };
            if json {
                let doc = serde_json::json!({ "deleted": deleted, "left": left });
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            } else {
                for id in &deleted {
                    println!("deleted {id}");
                }
                if left.is_empty() {
                    println!("nothing left of cluster {}", scope.cluster);
                } else {
                    println!("{:<15} {:<24} {:<12} {:>6}  {:<24} deletable", "KIND", "ID", "CLAIM", "GiB", "STATE");
                    for l in &left {
                        let size = l.size_gib.map_or_else(|| "-".to_owned(), |s| s.to_string());
                        let claim = l.claim.as_deref().unwrap_or("-");
                        let yes = if l.deletable { "yes" } else { "no" };
                        println!("{:<15} {:<24} {claim:<12} {size:>6}  {:<24} {yes}", l.kind, l.id, l.state);
                    }
                    if !delete && left.iter().any(|l| l.deletable) {
                        println!("(--delete removes the deletable ones; their data is gone for good)");
                    }
                }
            }
            if verify && !left.is_empty() {
                eprintln!("berth-aws cleanup: {} resource(s) left", left.len());
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
    }
}
