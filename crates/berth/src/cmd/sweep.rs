//! `berth sweep`: the orphaned volumes and snapshots of a running `berth
//! up`, with the plan first.
//!
//! The sweep runs on its own at every resync; this shows its plan (what it
//! deletes, what it keeps and why, with sizes) and, without `--dry-run`,
//! carries that plan out now. Only volumes the ledger saw die are deleted:
//! their data is in a stop snapshot of them, or their claim is deleted.

use anyhow::Result;
use serde_json::Value;

use super::admin::{AdminArgs, Client};
use crate::output::{bytes, print_json, Table};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    /// Print the plan and delete nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: Args) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    let answer: Value =
        if args.dry_run { client.get("/v1/sweep")? } else { client.post("/v1/sweep", &serde_json::json!({}))? };
    if args.admin.json {
        return print_json(&answer);
    }
    let mut table = Table::new(["VOLUME", "CLAIM", "GEN", "SIZE", "PLAN"]);
    for v in answer["volumes"].as_array().into_iter().flatten() {
        let plan = match v["deletes"].as_bool() {
            Some(true) => format!("delete: {}", v["reason"].as_str().unwrap_or("")),
            _ => v["reason"].as_str().unwrap_or("kept").to_owned(),
        };
        table.row([
            v["id"].as_str().unwrap_or("").to_owned(),
            v["claim"].as_str().unwrap_or("-").to_owned(),
            v["generation"].as_u64().map_or("-".into(), |g| g.to_string()),
            bytes(v["bytes"].as_u64().unwrap_or(0)),
            plan,
        ]);
    }
    table.print();
    let t = &answer["totals"];
    let n = |k: &str| t[k].as_u64().unwrap_or(0);
    let verb = if args.dry_run { "would delete" } else { "deleted" };
    println!(
        "{verb} {} volume(s) ({}) and {} snapshot(s) of deleted claims; kept {} volume(s) ({}) the ledger has not seen die",
        n("volumes_deleted"),
        bytes(n("bytes_deleted")),
        n("snapshots_deleted"),
        n("volumes_kept"),
        bytes(n("bytes_kept")),
    );
    if args.dry_run {
        println!("dry run: nothing was deleted");
    }
    Ok(())
}
