//! `berth ledger …`: the ledger of a state folder, while no `berth up` runs.
//!
//! `check` says whether the ledger is in step with the volumes and
//! snapshots; `rebuild` writes back the claims a deleted, emptied or older
//! ledger lost, from those volumes and snapshots (plan first: `--dry-run`
//! prints the plan and writes nothing).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use berth_core::continuity::{self, LedgerBehind};
use berth_core::ledger::Ledger;
use berth_core::rebuild::{self, RebuildPlan, ServiceRevision};
use berth_core::{SnapshotRecord, Volumes};
use berth_local::platform::offline::Offline;
use berth_local::platform::Config;
use berth_local::{LocalVolumes, StateDir};
use berth_repo::{Progress, Repo};
use chrono::Utc;
use serde_json::json;

use super::repo::RepoArgs;
use crate::output::print_json;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Settings file: its services are the ones whose claims are rebuilt.
    #[arg(long, short, env = "BERTH_CONFIG", default_value = "berth.toml", value_name = "FILE", global = true)]
    config: PathBuf,

    /// State folder: ledger, volumes, snapshot repository.
    #[arg(long, env = "BERTH_STATE", default_value = ".berth", value_name = "DIR", global = true)]
    state: PathBuf,

    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Say whether the ledger knows every claim its volumes and snapshots
    /// show, as far as they go; exits 1 if it does not.
    Check,
    /// Write back the claims the ledger lost, from the volumes and
    /// snapshots: each parked at its newest generation on its newest
    /// volume (snapshotted first if no snapshot holds its data) or its
    /// newest snapshot; `berth up` then resumes them.
    Rebuild {
        /// Print the plan and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(args: Args) -> Result<()> {
    let explicit =
        args.config.as_path() != std::path::Path::new("berth.toml") || std::env::var_os("BERTH_CONFIG").is_some();
    let config = Config::load(&args.config, explicit)?;
    let root = std::path::absolute(&args.state).with_context(|| format!("state folder {}", args.state.display()))?;
    let state = StateDir::new(root);
    if !state.root().is_dir() {
        bail!("no state folder at {}: nothing to check or rebuild", state.root().display());
    }
    let location = state.repository().display().to_string();
    let password = RepoArgs::password(&state, false)?;
    let volumes = LocalVolumes::new(&state, move || Repo::open(&location, &password, Progress::Hidden))
        .context("cannot open the volumes folder")?;
    let held = Offline::open(&state, volumes)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        held.clear_containers(&state).await;
        let claims = held.ledger.claims().await?;
        let vols = held.volumes.list().await?;
        let snaps = snapshots(&state, &held.volumes).await?;
        let behind = match continuity::check(&claims, &vols, &snaps) {
            Ok(()) => {
                if args.json {
                    print_json(&json!({ "in_step": true, "claims": claims.len() }))?;
                } else {
                    println!(
                        "the ledger is in step with the volumes and snapshots ({} claim(s)): nothing to rebuild",
                        claims.len()
                    );
                }
                return Ok(());
            }
            Err(behind) => behind,
        };
        match args.command {
            Command::Check => {
                if args.json {
                    print_json(&json!({ "in_step": false, "behind": behind_json(&behind) }))?;
                } else {
                    println!("{behind}");
                }
                bail!("the ledger is behind; `berth ledger rebuild --dry-run` shows what a rebuild would write")
            }
            Command::Rebuild { dry_run } => {
                let mut services = Vec::new();
                for s in &config.services {
                    let revision = held.ledger.service(&s.name).await?.map_or(1, |r| r.active);
                    services.push(ServiceRevision { name: s.name.clone(), revision });
                }
                let plan = rebuild::plan(&behind, &services, &claims, &vols, &snaps, Utc::now());
                if dry_run {
                    return show(&plan, args.json, true);
                }
                let written = rebuild::apply(&plan, &held.volumes, &*held.ledger, Utc::now()).await?;
                let mut done = plan.clone();
                for (c, w) in done.claims.iter_mut().zip(written) {
                    c.record = w;
                }
                show(&done, args.json, false)
            }
        }
    })
}

/// Every snapshot of the repository; none when there is no repository yet.
async fn snapshots(state: &StateDir, volumes: &LocalVolumes) -> Result<Vec<SnapshotRecord>> {
    if !state.repository().join("config").exists() {
        return Ok(Vec::new());
    }
    volumes.snapshots().await.context("cannot list the repository's snapshots")
}

fn behind_json(b: &LedgerBehind) -> serde_json::Value {
    let claims: Vec<_> = b
        .claims
        .iter()
        .map(|c| json!({ "claim": c.claim, "ledger_generation": c.ledger.map(|g| g.0), "stored_generation": c.stores.0 }))
        .collect();
    json!({ "empty": b.empty, "claims": claims })
}

fn show(plan: &RebuildPlan, json: bool, dry_run: bool) -> Result<()> {
    if json {
        let claims: Vec<_> = plan
            .claims
            .iter()
            .map(|c| {
                json!({
                    "claim": c.record.name,
                    "service": c.record.service,
                    "generation": c.record.generation.0,
                    "desired": c.record.desired,
                    "volume": c.record.volume,
                    "head_snapshot": c.record.head_snapshot,
                    "last_good_snapshot": c.record.last_good_snapshot,
                    "snapshot_first": c.snapshot_first,
                    "generations": c.generations.len(),
                    "replaces_version": c.replaces,
                })
            })
            .collect();
        let skipped: Vec<_> = plan.skipped.iter().map(|s| json!({ "claim": s.claim, "reason": s.reason })).collect();
        return print_json(&json!({ "dry_run": dry_run, "claims": claims, "skipped": skipped }));
    }
    let verb = if dry_run { "would rebuild" } else { "rebuilt" };
    for c in &plan.claims {
        let r = &c.record;
        let volume = r.volume.as_ref().map_or("no volume".to_owned(), |v| format!("volume {v}"));
        let head = match (&c.snapshot_first, &r.head_snapshot) {
            (Some(_), None) => "a stop snapshot taken of it first".to_owned(),
            (_, Some(s)) => format!("snapshot {}", &s.0[..s.0.len().min(8)]),
            (None, None) => "no snapshot".to_owned(),
        };
        println!(
            "{verb} {}: parked at generation {} on {volume}, head {head}, {} generation(s) of history",
            r.name,
            r.generation,
            c.generations.len()
        );
    }
    for s in &plan.skipped {
        println!("left out {}: {}", s.claim, s.reason);
    }
    if dry_run {
        println!("dry run: nothing was written; run without --dry-run to write it");
    } else if !plan.claims.is_empty() {
        println!("`berth up` now resumes them");
    }
    Ok(())
}
