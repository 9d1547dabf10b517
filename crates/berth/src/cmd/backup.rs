//! `berth backup …`: scheduled backups of a running `berth up` — their
//! state per claim, a backup now, a restore verification now.

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::admin::{self, AdminArgs, Client};
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
    /// Every claim's newest snapshot, next backup, replicas (lag) and verification.
    Status,
    /// Take a scheduled (quiesced) snapshot of a running claim now, and replicate it.
    Now {
        /// The claim, e.g. files-0.
        claim: berth_core::ClaimName,
    },
    /// Restore the claim's newest snapshot into a scratch volume, check it
    /// and start a canary task on it; exits 1 if that fails.
    Verify {
        claim: berth_core::ClaimName,
        /// Verify the replica's copy instead of the primary's.
        #[arg(long, value_name = "REPLICA")]
        from: Option<String>,
    },
}

/// Long enough for a restore of many GiB and a canary's start period.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3600);

pub fn run(args: Args) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    match args.command {
        Command::Status => {
            let report: Vec<Value> = client.get("/v1/backups")?;
            if args.admin.json {
                return print_json(&report);
            }
            print_status(&report);
            Ok(())
        }
        Command::Now { claim } => {
            let path = format!("/v1/claims/{}/backup", admin::encode(claim.as_str()));
            let outcome: Value = client.post_slow(&path, &json!({}), CHECK_TIMEOUT)?;
            if args.admin.json {
                return print_json(&outcome);
            }
            let id = str_of(&outcome, "snapshot");
            let consistency = str_of(&outcome, "consistency");
            println!("claim {claim}: snapshot {} ({consistency}-consistent)", short(&id));
            if consistency == "crash" {
                let why = outcome["hook_error"].as_str().unwrap_or("no quiesce hook is configured");
                println!("  crash-consistent: the task was not quiesced ({why})");
            }
            Ok(())
        }
        Command::Verify { claim, from } => {
            let path = format!("/v1/claims/{}/verify", admin::encode(claim.as_str()));
            let report: Value = client.post_slow(&path, &json!({ "from": from }), CHECK_TIMEOUT)?;
            print_check(&report, args.admin.json)
        }
    }
}

fn print_status(report: &[Value]) {
    let mut t = Table::new(["CLAIM", "SCHEDULE", "NEWEST", "AGE", "CONSISTENCY", "NEXT", "REPLICAS", "VERIFIED"]);
    for c in report {
        let newest = &c["newest_snapshot"];
        let replicas: Vec<String> = c["replicas"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(name, r)| match r["error"].as_str() {
                        Some(_) => format!("{name}: error"),
                        None => format!("{name}: lag {}", secs(&r["state"]["lag"])),
                    })
                    .collect()
            })
            .unwrap_or_default();
        t.row([
            str_of(c, "claim"),
            str_of(c, "schedule"),
            short(newest["id"].as_str().unwrap_or("-")).to_owned(),
            secs(&newest["age_seconds"]),
            newest["consistency"].as_str().unwrap_or(newest["kind"].as_str().unwrap_or("-")).to_owned(),
            c["next_due"].as_str().map_or("-".into(), |t| t.chars().take(19).collect()),
            if replicas.is_empty() { "-".into() } else { replicas.join(", ") },
            c["verification"]["status"].as_str().unwrap_or("-").to_owned(),
        ]);
    }
    t.print();
    let problems = problems(report);
    for (claim, p) in &problems {
        println!("{claim}: {p}");
    }
}

/// Every claim's problems, as (claim, problem).
pub fn problems(report: &[Value]) -> Vec<(String, String)> {
    report
        .iter()
        .flat_map(|c| {
            c["problems"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |p| (str_of(c, "claim"), p.as_str().unwrap_or_default().to_owned()))
        })
        .collect()
}

/// Prints a verification or drill report; an error when it did not pass.
pub fn print_check(report: &Value, json: bool) -> Result<()> {
    if json {
        print_json(report)?;
    } else {
        let what = if report["kind"] == "drill" { "DR drill" } else { "restore verification" };
        let verdict = if report["passed"].as_bool() == Some(true) { "passed" } else { "FAILED" };
        println!("{what} of {} from {}: {verdict}", str_of(report, "claim"), str_of(report, "source"));
        if let Some(id) = report["snapshot"].as_str() {
            println!("  snapshot   {} taken {}", short(id), str_of(report, "snapshot_time"));
            println!(
                "  restored   {} files, {} bytes in {}",
                report["files"],
                report["bytes"],
                secs(&report["restore_seconds"])
            );
        }
        let objective = |k: &str| report["objectives"][k].as_f64().map(|o| format!(" (objective {o:.0} s)"));
        if report["rto_seconds"].is_number() {
            println!("  RTO        {}{}", secs(&report["rto_seconds"]), objective("rto").unwrap_or_default());
        }
        if report["rpo_seconds"].is_number() {
            println!("  RPO        {}{}", secs(&report["rpo_seconds"]), objective("rpo").unwrap_or_default());
        }
        if let Some(e) = report["error"].as_str() {
            println!("  error      {e}");
        }
    }
    if report["passed"].as_bool() != Some(true) {
        anyhow::bail!("{}", report["error"].as_str().unwrap_or("the check did not pass"));
    }
    Ok(())
}

pub fn str_of(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub fn secs(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |s| if s < 100.0 { format!("{s:.1} s") } else { format!("{s:.0} s") })
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}
