//! `berth deploy SERVICE`: roll a service of a running `berth up` onto a
//! new task definition, one claim at a time.
//!
//! The new revision is the active one with the changes given here: a new
//! command (after `--`), variables set (`--env K=V`) or removed
//! (`--unset-env K`), an image tag (`--image`, recorded for the AWS path).
//! Each claim in turn is drained, stopped, snapshotted and started on the
//! new revision from its snapshot; the next follows once it is healthy. A
//! claim that fails on the new revision rolls the whole service back (the
//! deployment circuit breaker). `--wait` follows the rollout to its end and
//! fails if it rolled back; `--status` only shows the last deployment.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_core::deploy::{RolloutState, ServiceRecord};
use serde_json::json;

use super::admin::{self, AdminArgs, Client};
use crate::output::print_json;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    /// The service, as named in berth.toml.
    service: String,
    /// Set a variable of the task's environment (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Remove a variable from the task's environment (repeatable).
    #[arg(long = "unset-env", value_name = "KEY")]
    unset_env: Vec<String>,
    /// The container image: a service with an `image` in berth.toml runs it (rolling, like ECS); a
    /// process service records it as BERTH_IMAGE (the AWS path runs it).
    #[arg(long, value_name = "TAG")]
    image: Option<String>,
    /// Run the default workload (`berth serve`) instead of a command.
    #[arg(long, conflicts_with = "command")]
    default_command: bool,
    /// Follow the rollout until it completes or rolls back (exit 1 on a rollback).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this long (e.g. 30m).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Show the service's revisions and last deployment; change nothing.
    #[arg(long, conflicts_with_all = ["env", "unset_env", "image", "default_command", "command", "wait"])]
    status: bool,
    /// The new command, after `--` (e.g. `-- sh -c 'exec my-server'`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

pub fn run(args: Args) -> Result<()> {
    let client = Client::connect(&args.admin)?;
    let path = format!("/v1/services/{}", admin::encode(&args.service));
    if args.status {
        let record: ServiceRecord = client.get(&path)?;
        return show(&args, &record);
    }
    let command =
        if args.default_command { Some(Vec::new()) } else { (!args.command.is_empty()).then(|| args.command.clone()) };
    if command.is_none() && args.env.is_empty() && args.unset_env.is_empty() && args.image.is_none() {
        bail!("nothing to deploy: give a command after --, --env, --unset-env, --image or --default-command");
    }
    let env: BTreeMap<String, String> = args.env.iter().cloned().collect();
    let body = json!({ "command": command, "env": env, "unset_env": args.unset_env, "image": args.image });
    let record: ServiceRecord = client.post(&format!("{path}/deploy"), &body)?;
    let d = record.deployment.as_ref().context("berth up answered without a deployment")?;
    if !args.admin.json {
        println!("service {}: deploying revision {} (from {})", record.name, d.to, d.from);
    }
    if !args.wait {
        return if args.admin.json { print_json(&record) } else { Ok(()) };
    }
    let deadline = Instant::now() + args.timeout;
    let mut seen = 0usize;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let record: ServiceRecord = client.get(&path)?;
        let Some(d) = record.deployment.as_ref() else { bail!("the deployment disappeared from the ledger") };
        if !args.admin.json && d.moved.len() != seen {
            seen = d.moved.len();
            println!("  {} claim(s) on revision {} ({})", seen, d.target(), d.state.as_str());
        }
        if d.state.is_finished() {
            if args.admin.json {
                print_json(&record)?;
            } else {
                show(&args, &record)?;
            }
            if d.state == RolloutState::RolledBack {
                bail!(
                    "the deployment of revision {} rolled back: {}",
                    d.to,
                    d.reason.as_deref().unwrap_or("circuit breaker")
                );
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "revision {} is still {} after {}; `berth deploy {} --status` follows it",
                d.to,
                d.state.as_str(),
                humantime::format_duration(args.timeout),
                record.name
            );
        }
    }
}

fn show(args: &Args, record: &ServiceRecord) -> Result<()> {
    if args.admin.json {
        return print_json(record);
    }
    println!("service {}: active revision {}", record.name, record.active);
    for d in &record.revisions {
        let command = if d.command.is_empty() { "berth serve".to_owned() } else { d.command.join(" ") };
        let mark = if d.revision == record.active { "*" } else { " " };
        println!(" {mark} revision {}: {command}", d.revision);
    }
    match &record.deployment {
        None => println!("no deployment yet"),
        Some(d) => {
            println!(
                "last deployment: {} → {}, {}, started {}{}",
                d.from,
                d.to,
                d.state.as_str(),
                admin::time(d.started_at),
                d.finished_at.map(|t| format!(", finished {}", admin::time(t))).unwrap_or_default()
            );
            if let Some(step) = &d.current {
                println!("  moving {} since {}", step.claim, admin::time(step.since));
            }
            if let Some(reason) = &d.reason {
                println!("  rolled back: {reason}");
            }
        }
    }
    Ok(())
}
