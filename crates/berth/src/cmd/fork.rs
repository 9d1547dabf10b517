//! `berth fork CLAIM --at TIME NEW`: start a new claim from a point in time
//! of another, leaving the original running (to inspect last week's data,
//! or to test a migration on a copy).
//!
//! The fork belongs to the same service and runs its task definition, but
//! stands outside its desired count and load balancer; `berth down` parks
//! it with a snapshot like any claim, and scaling never resumes it.

use anyhow::Result;
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use super::admin::{self, AdminArgs, Client};
use super::backup::{short, str_of, CHECK_TIMEOUT};
use super::claim_restore::parse_at;
use crate::output::print_json;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    /// The claim to fork, e.g. files-0.
    claim: berth_core::ClaimName,
    /// Its newest snapshot at this time: RFC 3339 or a span ago (10m, 2h30m).
    #[arg(long, value_name = "TIME")]
    at: String,
    /// The new claim's name, e.g. files-0-monday.
    new: berth_core::ClaimName,
    /// Take the snapshot from this replica of the service's backup policy.
    #[arg(long, value_name = "REPLICA")]
    from: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let at = parse_at(&args.at, Utc::now()).map_err(anyhow::Error::msg)?;
    let client = Client::connect(&args.admin)?;
    let path = format!("/v1/claims/{}/fork", admin::encode(args.claim.as_str()));
    let body = json!({ "new": args.new, "at": at.to_rfc3339_opts(SecondsFormat::AutoSi, true), "from": args.from });
    let forked: Value = client.post_slow(&path, &body, CHECK_TIMEOUT)?;
    if args.admin.json {
        return print_json(&forked);
    }
    println!(
        "claim {} forked from {} at snapshot {}; it starts now (`berth claims` shows it)",
        args.new,
        args.claim,
        short(&str_of(&forked, "snapshot"))
    );
    Ok(())
}
