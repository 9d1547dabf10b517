//! `berth doctor`: what needs attention in a running `berth up`'s backups.
//!
//! Lists, per claim, a failed scheduled snapshot, a failing or lagging
//! replica, and a restore not verified inside the policy's window, and
//! exits 1 while there is any, so a cron job or a CI step can alert on it.

use anyhow::{bail, Result};
use serde_json::Value;

use super::admin::{AdminArgs, Client};
use super::backup::problems;
use crate::output::print_json;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
}

pub fn run(args: Args) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    let report: Vec<Value> = client.get("/v1/backups")?;
    let problems = problems(&report);
    if args.admin.json {
        let rows: Vec<Value> = report
            .iter()
            .map(|c| serde_json::json!({ "claim": c["claim"], "problems": c["problems"], "verification": c["verification"] }))
            .collect();
        print_json(&rows)?;
    } else if report.is_empty() {
        println!("no service has a [service.backup] policy: nothing to check");
    } else {
        for (claim, p) in &problems {
            println!("{claim}: {p}");
        }
        if problems.is_empty() {
            println!("{} claim(s): every backup, replica and verification is in order", report.len());
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} problem(s) in {} claim(s)",
            problems.len(),
            report.iter().filter(|c| c["problems"].as_array().is_some_and(|a| !a.is_empty())).count()
        );
    }
    Ok(())
}
