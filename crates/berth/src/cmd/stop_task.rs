//! `berth stop-task`: stop one task of a running `berth up`, simulating
//! why a task stops in the cloud.
//!
//! What happens next is the controller's decision from the stop intent
//! (DESIGN.md rule 4): the claim's volume is snapshotted in every case, and
//! the claim is then replaced (Spot interruption, failed health checks) or
//! parked (a user stop). `berth events --follow` shows the handoff.

use anyhow::{bail, Result};
use berth_core::TaskInfo;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::admin::{self, AdminArgs, Client};
use crate::output::print_json;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    /// The task: its 32-hex id (as `berth ps` shows it), a unique prefix of
    /// it, or its full ARN.
    task: String,
    /// Why it stops, which decides what berth does next.
    #[arg(long, value_enum, default_value_t = Reason::User)]
    reason: Reason,
}

/// The stop reasons the local runtime can simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Reason {
    /// A Spot interruption (stop code SpotInterruption): snapshot, then replace.
    Spot,
    /// Failed container health checks: snapshot, then replace.
    Health,
    /// A user stop (stop code UserInitiated): snapshot, then park the claim.
    User,
}

/// The answer of `POST /v1/tasks/{task}/stop`.
#[derive(Debug, Serialize, Deserialize)]
struct Stopped {
    task: String,
    stop_code: String,
}

pub fn run(args: Args) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    let task = resolve(&client, &args.task)?;
    let path = format!("/v1/tasks/{}/stop", admin::encode(&task));
    let stopped: Stopped = client.post(&path, &json!({ "reason": args.reason }))?;
    if args.admin.json {
        return print_json(&stopped);
    }
    let next = match args.reason {
        Reason::Spot | Reason::Health => "berth snapshots its volume and starts a replacement",
        Reason::User => "berth snapshots its volume and parks its claim",
    };
    println!("stopping task {} ({}): {next}", admin::short_id(&stopped.task), stopped.stop_code);
    Ok(())
}

/// The task as the server takes it: an ARN or a full id as given, a shorter
/// hex prefix as the one task id it starts.
fn resolve(client: &Client, given: &str) -> Result<String> {
    if !is_prefix(given) {
        return Ok(given.to_owned());
    }
    let tasks: Vec<TaskInfo> = client.get("/v1/tasks")?;
    let matches: Vec<&str> = tasks
        .iter()
        .filter(|t| !t.is_stopped())
        .map(|t| admin::short_id(&t.arn.0))
        .filter(|id| id.starts_with(given))
        .collect();
    match matches.as_slice() {
        [id] => Ok((*id).to_owned()),
        [] => bail!("no running task id starts with '{given}' (see `berth ps`)"),
        _ => bail!("'{given}' is the start of {} task ids; give more of it", matches.len()),
    }
}

/// Whether `text` is a shortened task id (some, but fewer than 32, hex digits).
fn is_prefix(text: &str) -> bool {
    (1..32).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_short_hex() {
        assert!(is_prefix("0a1b"));
        assert!(!is_prefix("0123456789abcdef0123456789abcdef"));
        assert!(!is_prefix("arn:aws:ecs:local:000000000000:task/berth/0a1b"));
        assert!(!is_prefix("nope"));
        assert!(!is_prefix(""));
    }

    #[test]
    fn reasons_go_out_in_lowercase() {
        assert_eq!(json!({ "reason": Reason::Spot }).to_string(), r#"{"reason":"spot"}"#);
        assert_eq!(json!({ "reason": Reason::Health }).to_string(), r#"{"reason":"health"}"#);
    }
}
