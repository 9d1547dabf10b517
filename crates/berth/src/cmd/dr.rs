//! `berth dr …`: disaster-recovery drills and their report.
//!
//! A drill recovers a claim as if its volume and the primary repository
//! were gone: the newest snapshot in a replica is restored into a new
//! volume, a task is started on it and must pass its health check. The
//! measured RTO (start to healthy) and RPO (age of the snapshot) are judged
//! against `[service.backup.objectives]`. The claim itself is untouched.

use anyhow::Result;
use serde_json::{json, Value};

use super::admin::{self, AdminArgs, Client};
use super::backup::{print_check, secs, str_of, CHECK_TIMEOUT};
use crate::output::{print_json, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Recover a claim from a replica into a scratch volume and measure RTO and RPO; exits 1 if it fails or misses an objective.
    Drill {
        claim: berth_core::ClaimName,
        /// The replica to recover from (default: the service's first; without replicas, the primary).
        #[arg(long, value_name = "REPLICA")]
        from: Option<String>,
    },
    /// Objectives and the last measured RTO and RPO of every claim.
    Report,
}

pub fn run(args: Args) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    match args.command {
        Command::Drill { claim, from } => {
            let path = format!("/v1/claims/{}/drill", admin::encode(claim.as_str()));
            let report: Value = client.post_slow(&path, &json!({ "from": from }), CHECK_TIMEOUT)?;
            print_check(&report, args.admin.json)
        }
        Command::Report => {
            let report: Vec<Value> = client.get("/v1/backups")?;
            if args.admin.json {
                let rows: Vec<Value> = report
                    .iter()
                    .map(|c| {
                        json!({ "claim": c["claim"], "objectives": c["objectives"], "last_drill": c["last_drill"],
                                     "last_verification": c["last_verification"], "replicas": c["replicas"] })
                    })
                    .collect();
                return print_json(&rows);
            }
            let mut t = Table::new(["CLAIM", "RPO OBJ", "RTO OBJ", "LAST DRILL", "FROM", "RPO", "RTO", "RESULT"]);
            for c in &report {
                let d = &c["last_drill"];
                t.row([
                    str_of(c, "claim"),
                    secs(&c["objectives"]["rpo"]),
                    secs(&c["objectives"]["rto"]),
                    d["started_at"].as_str().map_or("never".into(), |t| t.chars().take(19).collect()),
                    d["source"].as_str().unwrap_or("-").to_owned(),
                    secs(&d["rpo_seconds"]),
                    secs(&d["rto_seconds"]),
                    match d["passed"].as_bool() {
                        Some(true) => "passed".into(),
                        Some(false) => "FAILED".into(),
                        None => "-".into(),
                    },
                ]);
            }
            t.print();
            Ok(())
        }
    }
}
